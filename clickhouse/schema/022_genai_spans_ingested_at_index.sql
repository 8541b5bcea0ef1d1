-- `spanmeter tail` and `GET /v1/calls?after=` ask for the calls stored after a moment, every second or so. ingested_at
-- is not in the sort key; a minmax index on it lets ClickHouse skip every granule stored before that moment instead
-- of reading a day of rows per poll (2M rows: 220 -> 50 ms a poll on chDB). Parts stored before this migration have
-- no index and are read as before until merged.
ALTER TABLE {database:Identifier}.genai_spans
    ADD INDEX IF NOT EXISTS idx_ingested_at ingested_at TYPE minmax GRANULARITY 1
