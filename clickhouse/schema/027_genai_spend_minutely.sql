-- Spend per project and minute: what the "LLM spend spike" alert reads. Its windows are the last 60 whole minutes
-- and the same 60 minutes on each of the 7 days before, so each spans two clock hours: from the hourly rollups a
-- window would be up to an hour longer or shorter, and from the raw rows it read the 16 partial hours at their
-- ends through granules that each hold ~12 hours of one service (~250 ms at 30 M rows). Here the 8 windows are
-- 480 rows per project. A sum per group (a SummingMergeTree's sums as SimpleAggregateFunction columns, so that
-- `first_ingested` can be a min for the backfill below).
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_spend_minutely
(
    minute               DateTime('UTC'),
    project              LowCardinality(String),
    spans                SimpleAggregateFunction(sum, UInt64),
    total_cost           SimpleAggregateFunction(sum, Decimal(38, 12)),
    first_ingested       SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (project, minute)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_spend_minutely_mv
TO {database:Identifier}.genai_spend_minutely
AS SELECT
    toStartOfMinute(timestamp) AS minute,
    project,
    count() AS spans,
    sum(total_cost) AS total_cost,
    min(ingested_at) AS first_ingested
FROM {database:Identifier}.genai_spans
GROUP BY minute, project;

-- Backfill, as in 012: the rows stored before the view wrote its first; adds nothing when run again.
INSERT INTO {database:Identifier}.genai_spend_minutely
SELECT
    toStartOfMinute(timestamp) AS minute,
    project,
    count() AS spans,
    sum(total_cost) AS total_cost,
    min(ingested_at) AS first_ingested
FROM {database:Identifier}.genai_spans
WHERE ingested_at < (
    SELECT if(count() = 0, toDateTime64('2299-12-31 00:00:00', 3, 'UTC'), min(first_ingested))
    FROM {database:Identifier}.genai_spend_minutely
)
GROUP BY minute, project
