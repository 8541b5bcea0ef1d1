-- Latency per model, hourly, keyed by project, environment, provider and model only: what the latency panels read
-- when no service or feature is chosen. genai_spans_hourly_stats' quantile states keep every value up to 8,192,
-- and its hour groups hold ~40 calls each, so merging a month of them handled as many values as there are rows;
-- here an hour's group holds every call to a model, kept as a t-digest (bounded: a few hundred centroids). Its
-- quantiles are approximate (close near the median and tails; the raw rows' `quantile` is itself a sample past
-- 8,192 values): tests/grafana/test_rollups.py checks them against the raw rows within a stated tolerance.
-- Granules of 1,024 rows, not 8,192: a row holds a digest of up to a few KiB, and a range's hours either side of
-- its whole days are a few thousand rows, which larger granules would read with most of the table around them.
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_latency_hourly
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

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_latency_hourly_mv
TO {database:Identifier}.genai_latency_hourly
AS SELECT
    toStartOfHour(timestamp) AS hour,
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
INSERT INTO {database:Identifier}.genai_latency_hourly
SELECT
    toStartOfHour(timestamp) AS hour,
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
    FROM {database:Identifier}.genai_latency_hourly
)
GROUP BY hour, project, environment, provider, model
;

-- The same by the UTC day: tables and stats read it for the whole days of their range, and the hourly one for the
-- hours either side (a day's group holds ~24 times the calls in a digest of about the same size).
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_latency_daily
(
    day                  DateTime('UTC'),
    project              LowCardinality(String),
    environment          LowCardinality(String),
    provider             LowCardinality(String),
    model                LowCardinality(String),
    spans                SimpleAggregateFunction(sum, UInt64),
    first_ingested       SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    duration_digest      AggregateFunction(quantileTDigest, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project, day, environment, provider, model)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_latency_daily_mv
TO {database:Identifier}.genai_latency_daily
AS SELECT
    toStartOfDay(timestamp, 'UTC') AS day,
    project,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    count() AS spans,
    min(ingested_at) AS first_ingested,
    quantileTDigestState(duration_ns) AS duration_digest
FROM {database:Identifier}.genai_spans
GROUP BY day, project, environment, provider, model;

-- Backfill, as in 012.
INSERT INTO {database:Identifier}.genai_latency_daily
SELECT
    toStartOfDay(timestamp, 'UTC') AS day,
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
    FROM {database:Identifier}.genai_latency_daily
)
GROUP BY day, project, environment, provider, model
