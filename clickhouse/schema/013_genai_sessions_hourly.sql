-- Per user and session, hourly: what the Attribution dashboard's top users and top sessions read. A session's
-- calls in one hour make one row per (service, model, feature...), so a session of 300 calls over two hours is
-- a handful of rows; uniqExact(session_id) over these rows is the raw rows' count of sessions.
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_sessions_hourly
(
    hour                 DateTime('UTC'),
    project              LowCardinality(String),
    service_name         LowCardinality(String),
    environment          LowCardinality(String),
    provider             LowCardinality(String),
    model                LowCardinality(String),
    feature              LowCardinality(String),
    user_id              String CODEC(ZSTD(1)),
    session_id           String CODEC(ZSTD(1)),
    spans                SimpleAggregateFunction(sum, UInt64),
    total_cost           SimpleAggregateFunction(sum, Decimal(38, 12)),
    first_call           SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    last_call            SimpleAggregateFunction(max, DateTime64(9, 'UTC')),
    first_ingested       SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project, hour, user_id, session_id, service_name, environment, provider, model, feature)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_sessions_hourly_mv
TO {database:Identifier}.genai_sessions_hourly
AS SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    user_id,
    session_id,
    count() AS spans,
    sum(total_cost) AS total_cost,
    min(timestamp) AS first_call,
    max(timestamp) AS last_call,
    min(ingested_at) AS first_ingested
FROM {database:Identifier}.genai_spans
GROUP BY hour, project, service_name, environment, provider, model, feature, user_id, session_id;

-- Backfill, as in 012: the rows stored before the view wrote its first; adds nothing when run again.
INSERT INTO {database:Identifier}.genai_sessions_hourly
SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
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
    FROM {database:Identifier}.genai_sessions_hourly
)
GROUP BY hour, project, service_name, environment, provider, model, feature, user_id, session_id
