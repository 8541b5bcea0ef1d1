-- Per user and session, daily, without service, model or feature: what the Attribution dashboard's top users and
-- top sessions read for the whole days of their range when none of those is chosen (the hours at either end
-- from genai_sessions_hourly). A session is one user's, about two hours long, so a day holds one row per
-- session where genai_sessions_hourly holds one per hour, service, model and feature.
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_sessions_daily
(
    day                  DateTime('UTC'),
    project              LowCardinality(String),
    user_id              String CODEC(ZSTD(1)),
    session_id           String CODEC(ZSTD(1)),
    spans                SimpleAggregateFunction(sum, UInt64),
    total_cost           SimpleAggregateFunction(sum, Decimal(38, 12)),
    first_call           SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    last_call            SimpleAggregateFunction(max, DateTime64(9, 'UTC')),
    first_ingested       SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project, day, user_id, session_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_sessions_daily_mv
TO {database:Identifier}.genai_sessions_daily
AS SELECT
    toStartOfDay(timestamp, 'UTC') AS day,
    project,
    user_id,
    session_id,
    count() AS spans,
    sum(total_cost) AS total_cost,
    min(timestamp) AS first_call,
    max(timestamp) AS last_call,
    min(ingested_at) AS first_ingested
FROM {database:Identifier}.genai_spans
GROUP BY day, project, user_id, session_id;

-- Backfill, as in 012: the rows stored before the view wrote its first; adds nothing when run again.
INSERT INTO {database:Identifier}.genai_sessions_daily
SELECT
    toStartOfDay(timestamp, 'UTC') AS day,
    project,
    user_id,
    session_id,
    count() AS spans,
    sum(total_cost) AS total_cost,
    min(timestamp) AS first_call,
    max(timestamp) AS last_call,
    min(ingested_at) AS first_ingested
FROM {database:Identifier}.genai_spans
WHERE ingested_at < (
    SELECT if(count() = 0, toDateTime64('2299-12-31 00:00:00', 3, 'UTC'), min(first_ingested))
    FROM {database:Identifier}.genai_sessions_daily
)
GROUP BY day, project, user_id, session_id
