-- genai_input_tokens_hourly (024) by blocks of three hours, as 028 does for latency: the Trends dashboard's input
-- tokens per call p50 / p95 over 30 days are 120 series in 240 buckets of 3 hours, ~86,000 hourly digests to
-- merge; here each bucket of 3 hours is one digest per series. The same columns as genai_input_tokens_hourly.
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_input_tokens_3h
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

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_input_tokens_3h_mv
TO {database:Identifier}.genai_input_tokens_3h
AS SELECT
    toStartOfInterval(toStartOfHour(timestamp), INTERVAL 10800 second) AS hour,
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
INSERT INTO {database:Identifier}.genai_input_tokens_3h
SELECT
    toStartOfInterval(toStartOfHour(timestamp), INTERVAL 10800 second) AS hour,
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
    FROM {database:Identifier}.genai_input_tokens_3h
)
GROUP BY hour, project, environment, service_name, operation, feature
