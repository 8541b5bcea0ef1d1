-- The Ingestion dashboard reads by the time rows were stored (ingested_at), which genai_spans' key does not
-- order: an hourly rollup by ingested_at for ranges of hours or more, and a minmax index on ingested_at so that
-- shorter ranges read only the granules stored in them (ingested_at follows timestamp closely).
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_spans_ingested_hourly
(
    hour                 DateTime('UTC'),
    project              LowCardinality(String),
    service_name         LowCardinality(String),
    environment          LowCardinality(String),
    provider             LowCardinality(String),
    model                LowCardinality(String),
    feature              LowCardinality(String),
    convention           LowCardinality(String),
    price_status         LowCardinality(String),
    spans                SimpleAggregateFunction(sum, UInt64),
    max_lag_ms           SimpleAggregateFunction(max, Int64),
    first_ingested       SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    lag_ms_quantiles     AggregateFunction(quantile, Int64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project, hour, service_name, environment, provider, model, feature, convention, price_status)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_spans_ingested_hourly_mv
TO {database:Identifier}.genai_spans_ingested_hourly
AS SELECT
    toStartOfHour(ingested_at) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    convention,
    price_status,
    count() AS spans,
    max(dateDiff('millisecond', timestamp, ingested_at)) AS max_lag_ms,
    min(ingested_at) AS first_ingested,
    quantileState(dateDiff('millisecond', timestamp, ingested_at)) AS lag_ms_quantiles
FROM {database:Identifier}.genai_spans
GROUP BY hour, project, service_name, environment, provider, model, feature, convention, price_status;

-- Backfill, as in 012: the rows stored before the view wrote its first; adds nothing when run again.
INSERT INTO {database:Identifier}.genai_spans_ingested_hourly
SELECT
    toStartOfHour(ingested_at) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    convention,
    price_status,
    count() AS spans,
    max(dateDiff('millisecond', timestamp, ingested_at)) AS max_lag_ms,
    min(ingested_at) AS first_ingested,
    quantileState(dateDiff('millisecond', timestamp, ingested_at)) AS lag_ms_quantiles
FROM {database:Identifier}.genai_spans
WHERE ingested_at < (
    SELECT if(count() = 0, toDateTime64('2299-12-31 00:00:00', 3, 'UTC'), min(first_ingested))
    FROM {database:Identifier}.genai_spans_ingested_hourly
)
GROUP BY hour, project, service_name, environment, provider, model, feature, convention, price_status;

ALTER TABLE {database:Identifier}.genai_spans ADD INDEX IF NOT EXISTS idx_ingested_at ingested_at TYPE minmax GRANULARITY 1;

-- The same index as 022's (tail's polls use it too; whichever runs first adds it). Built here for the parts
-- stored before it as well (a mutation that reads ingested_at only), or those would be read whole until merged.
ALTER TABLE {database:Identifier}.genai_spans MATERIALIZE INDEX idx_ingested_at
