-- The lag from span start to stored, by the hour stored, keyed by project and environment only: what the Ingestion
-- dashboard's lag panel reads when no service, provider, model or feature is chosen. A t-digest per group, as in
-- 023 (approximate; tests/grafana/test_rollups.py states the tolerance); the max is exact.
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_lag_hourly
(
    hour                 DateTime('UTC'),
    project              LowCardinality(String),
    environment          LowCardinality(String),
    spans                SimpleAggregateFunction(sum, UInt64),
    max_lag_ms           SimpleAggregateFunction(max, Int64),
    first_ingested       SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    lag_ms_digest        AggregateFunction(quantileTDigest, Int64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project, hour, environment)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_lag_hourly_mv
TO {database:Identifier}.genai_lag_hourly
AS SELECT
    toStartOfHour(ingested_at) AS hour,
    project,
    environment,
    count() AS spans,
    max(dateDiff('millisecond', timestamp, ingested_at)) AS max_lag_ms,
    min(ingested_at) AS first_ingested,
    quantileTDigestState(dateDiff('millisecond', timestamp, ingested_at)) AS lag_ms_digest
FROM {database:Identifier}.genai_spans
GROUP BY hour, project, environment;

-- Backfill, as in 012: the rows stored before the view wrote its first; adds nothing when run again.
INSERT INTO {database:Identifier}.genai_lag_hourly
SELECT
    toStartOfHour(ingested_at) AS hour,
    project,
    environment,
    count() AS spans,
    max(dateDiff('millisecond', timestamp, ingested_at)) AS max_lag_ms,
    min(ingested_at) AS first_ingested,
    quantileTDigestState(dateDiff('millisecond', timestamp, ingested_at)) AS lag_ms_digest
FROM {database:Identifier}.genai_spans
WHERE ingested_at < (
    SELECT if(count() = 0, toDateTime64('2299-12-31 00:00:00', 3, 'UTC'), min(first_ingested))
    FROM {database:Identifier}.genai_lag_hourly
)
GROUP BY hour, project, environment
