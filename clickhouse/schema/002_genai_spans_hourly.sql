-- Hourly rollup by (project, service, provider, model, feature): what dashboards and reports read for long ranges.
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_spans_hourly
(
    hour                 DateTime('UTC'),
    project              LowCardinality(String),
    service_name         LowCardinality(String),
    environment          LowCardinality(String),
    provider             LowCardinality(String),
    model                LowCardinality(String),
    feature              LowCardinality(String),
    requests             UInt64,
    errors               UInt64,
    unpriced_requests    UInt64,
    input_tokens         UInt64,
    output_tokens        UInt64,
    cache_read_tokens    UInt64,
    cache_write_tokens   UInt64,
    reasoning_tokens     UInt64,
    input_cost           Decimal(38, 12),
    cache_read_cost      Decimal(38, 12),
    cache_write_cost     Decimal(38, 12),
    output_cost          Decimal(38, 12),
    total_cost           Decimal(38, 12),
    duration_ns          UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project, hour, service_name, environment, provider, model, feature)
-- A retried insert into genai_spans is deduplicated here too (deduplicate_blocks_in_dependent_materialized_views).
SETTINGS non_replicated_deduplication_window = 10000
