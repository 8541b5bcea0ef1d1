-- Hourly rollup with mergeable states: what the dashboards read instead of genai_spans for any range of hours or
-- more. Keyed like genai_spans_hourly plus operation and price_status; every span counted (`spans`, agent and
-- tool spans too), quantiles kept as states (quantileMerge(level) of them is the raw rows' quantile(level)
-- while an hour's group holds up to 8,192 values, a sample of them past that, as quantile itself does). `span.`
-- names the stored column where an output column has the same name.
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_spans_hourly_stats
(
    hour                   DateTime('UTC'),
    project                LowCardinality(String),
    service_name           LowCardinality(String),
    environment            LowCardinality(String),
    provider               LowCardinality(String),
    model                  LowCardinality(String),
    feature                LowCardinality(String),
    operation              LowCardinality(String),
    price_status           LowCardinality(String),
    spans                  SimpleAggregateFunction(sum, UInt64),
    errors                 SimpleAggregateFunction(sum, UInt64),
    input_tokens           SimpleAggregateFunction(sum, UInt64),
    output_tokens          SimpleAggregateFunction(sum, UInt64),
    cache_read_tokens      SimpleAggregateFunction(sum, UInt64),
    cache_write_tokens     SimpleAggregateFunction(sum, UInt64),
    input_cost             SimpleAggregateFunction(sum, Decimal(38, 12)),
    cache_read_cost        SimpleAggregateFunction(sum, Decimal(38, 12)),
    cache_write_cost       SimpleAggregateFunction(sum, Decimal(38, 12)),
    output_cost            SimpleAggregateFunction(sum, Decimal(38, 12)),
    total_cost             SimpleAggregateFunction(sum, Decimal(38, 12)),
    last_seen              SimpleAggregateFunction(max, DateTime64(9, 'UTC')),
    first_ingested         SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    duration_quantiles     AggregateFunction(quantile, UInt64),
    input_tokens_quantiles AggregateFunction(quantile, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project, hour, service_name, environment, provider, model, feature, operation, price_status)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_spans_hourly_stats_mv
TO {database:Identifier}.genai_spans_hourly_stats
AS SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    operation,
    price_status,
    count() AS spans,
    countIf(status_code = 'ERROR') AS errors,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(input_cost) AS input_cost,
    sum(cache_read_cost) AS cache_read_cost,
    sum(cache_write_cost) AS cache_write_cost,
    sum(output_cost) AS output_cost,
    sum(total_cost) AS total_cost,
    max(timestamp) AS last_seen,
    min(ingested_at) AS first_ingested,
    quantileState(duration_ns) AS duration_quantiles,
    quantileState(span.input_tokens) AS input_tokens_quantiles
FROM {database:Identifier}.genai_spans AS span
GROUP BY hour, project, service_name, environment, provider, model, feature, operation, price_status;

-- Backfill: the rows stored before the view existed, i.e. stored before the first row the view wrote (all rows
-- while it wrote none). Run again, it finds the backfilled rows themselves the first and adds nothing.
-- Reads every stored row once (30 M rows: about a minute on 2 cores, see bench/README.md).
INSERT INTO {database:Identifier}.genai_spans_hourly_stats
SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    operation,
    price_status,
    count() AS spans,
    countIf(status_code = 'ERROR') AS errors,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(input_cost) AS input_cost,
    sum(cache_read_cost) AS cache_read_cost,
    sum(cache_write_cost) AS cache_write_cost,
    sum(output_cost) AS output_cost,
    sum(total_cost) AS total_cost,
    max(timestamp) AS last_seen,
    min(ingested_at) AS first_ingested,
    quantileState(duration_ns) AS duration_quantiles,
    quantileState(span.input_tokens) AS input_tokens_quantiles
FROM {database:Identifier}.genai_spans AS span
WHERE ingested_at < (
    SELECT if(count() = 0, toDateTime64('2299-12-31 00:00:00', 3, 'UTC'), min(first_ingested))
    FROM {database:Identifier}.genai_spans_hourly_stats
)
GROUP BY hour, project, service_name, environment, provider, model, feature, operation, price_status
