-- genai_latency_hourly (023) by blocks of three hours: `hour` is a block's first hour (a multiple of 3 hours since
-- the epoch, as `toStartOfInterval(hour, INTERVAL 10800 second)` rounds a panel's buckets). A time series whose
-- buckets are multiples of 3 hours (Grafana's for a range of 19 days or more) reads its whole blocks here and the
-- hours either side from the hourly table, so each bucket merges a third of the digests: a digest holds a few
-- hundred centroids however many calls it holds, and merging them is the query's cost (median latency by model
-- over 30 days: ~30,000 hourly digests). The same columns as genai_latency_hourly, so a query reads both as one.
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_latency_3h
(
    hour                 DateTime('UTC'),
    project              LowCardinality(String),
    environment          LowCardinality(String),
    provider             LowCardinality(String),
    model                LowCardinality(String),
    spans                SimpleAggregateFunction(sum, UInt64),
    first_ingested       SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    duration_digest      AggregateFunction(quantileTDigest, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project, hour, environment, provider, model)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_latency_3h_mv
TO {database:Identifier}.genai_latency_3h
AS SELECT
    toStartOfInterval(toStartOfHour(timestamp), INTERVAL 10800 second) AS hour,
    project,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    count() AS spans,
    min(ingested_at) AS first_ingested,
    quantileTDigestState(duration_ns) AS duration_digest
FROM {database:Identifier}.genai_spans
GROUP BY hour, project, environment, provider, model;

-- Backfill, as in 012: the rows stored before the view wrote its first; adds nothing when run again.
INSERT INTO {database:Identifier}.genai_latency_3h
SELECT
    toStartOfInterval(toStartOfHour(timestamp), INTERVAL 10800 second) AS hour,
    project,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    count() AS spans,
    min(ingested_at) AS first_ingested,
    quantileTDigestState(duration_ns) AS duration_digest
FROM {database:Identifier}.genai_spans
WHERE ingested_at < (
    SELECT if(count() = 0, toDateTime64('2299-12-31 00:00:00', 3, 'UTC'), min(first_ingested))
    FROM {database:Identifier}.genai_latency_3h
)
GROUP BY hour, project, environment, provider, model
