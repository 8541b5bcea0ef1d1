-- Input tokens per call, hourly, keyed by project, environment, service, operation and feature only: what the
-- Trends dashboard's tokens-per-call quantiles and the prompt drift table and alert read when no provider or model
-- is chosen. A t-digest per group, as in 023 (approximate; tests/grafana/test_rollups.py states the tolerance).
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_input_tokens_hourly
(
    hour                 DateTime('UTC'),
    project              LowCardinality(String),
    environment          LowCardinality(String),
    service_name         LowCardinality(String),
    operation            LowCardinality(String),
    feature              LowCardinality(String),
    spans                SimpleAggregateFunction(sum, UInt64),
    first_ingested       SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    input_tokens_digest  AggregateFunction(quantileTDigest, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project, hour, environment, service_name, operation, feature)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_input_tokens_hourly_mv
TO {database:Identifier}.genai_input_tokens_hourly
AS SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    environment,
    service_name,
    operation,
    feature,
    count() AS spans,
    min(ingested_at) AS first_ingested,
    quantileTDigestState(span.input_tokens) AS input_tokens_digest
FROM {database:Identifier}.genai_spans AS span
GROUP BY hour, project, environment, service_name, operation, feature;

-- Backfill, as in 012: the rows stored before the view wrote its first; adds nothing when run again.
INSERT INTO {database:Identifier}.genai_input_tokens_hourly
SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    environment,
    service_name,
    operation,
    feature,
    count() AS spans,
    min(ingested_at) AS first_ingested,
    quantileTDigestState(span.input_tokens) AS input_tokens_digest
FROM {database:Identifier}.genai_spans AS span
WHERE ingested_at < (
    SELECT if(count() = 0, toDateTime64('2299-12-31 00:00:00', 3, 'UTC'), min(first_ingested))
    FROM {database:Identifier}.genai_input_tokens_hourly
)
GROUP BY hour, project, environment, service_name, operation, feature
;

-- The same by the UTC day, as in 023: the prompt drift table and alert read it for whole days.
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_input_tokens_daily
(
    day                  DateTime('UTC'),
    project              LowCardinality(String),
    environment          LowCardinality(String),
    service_name         LowCardinality(String),
    operation            LowCardinality(String),
    feature              LowCardinality(String),
    spans                SimpleAggregateFunction(sum, UInt64),
    first_ingested       SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    input_tokens_digest  AggregateFunction(quantileTDigest, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project, day, environment, service_name, operation, feature)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_input_tokens_daily_mv
TO {database:Identifier}.genai_input_tokens_daily
AS SELECT
    toStartOfDay(timestamp, 'UTC') AS day,
    project,
    environment,
    service_name,
    operation,
    feature,
    count() AS spans,
    min(ingested_at) AS first_ingested,
    quantileTDigestState(span.input_tokens) AS input_tokens_digest
FROM {database:Identifier}.genai_spans AS span
GROUP BY day, project, environment, service_name, operation, feature;

-- Backfill, as in 012.
INSERT INTO {database:Identifier}.genai_input_tokens_daily
SELECT
    toStartOfDay(timestamp, 'UTC') AS day,
    project,
    environment,
    service_name,
    operation,
    feature,
    count() AS spans,
    min(ingested_at) AS first_ingested,
    quantileTDigestState(span.input_tokens) AS input_tokens_digest
FROM {database:Identifier}.genai_spans AS span
WHERE ingested_at < (
    SELECT if(count() = 0, toDateTime64('2299-12-31 00:00:00', 3, 'UTC'), min(first_ingested))
    FROM {database:Identifier}.genai_input_tokens_daily
)
GROUP BY day, project, environment, service_name, operation, feature
