-- `spanmeter tail` and `GET /v1/calls?after=` ask for the calls stored after a moment, every second or so. ingested_at
-- is not in the sort key; a minmax index on it lets ClickHouse skip every granule stored before that moment instead
-- of reading a day of rows per poll (2M rows: 220 -> 50 ms a poll on chDB).
--
-- 015 adds the same index (and builds it for older parts), so on every store this statement finds it there and does
-- nothing. It stays because it shipped: a store that applied it has 022 recorded, and without this file that store
-- would warn at every start of a migration it does not know, and a later file numbered 022 would never run there.
ALTER TABLE {database:Identifier}.genai_spans
    ADD INDEX IF NOT EXISTS idx_ingested_at ingested_at TYPE minmax GRANULARITY 1
