-- One row per GenAI span: the source of truth. Column names and types are the contract in README.md ("The genai_spans table").
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_spans
(
    timestamp            DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    trace_id             String CODEC(ZSTD(1)),
    span_id              String CODEC(ZSTD(1)),
    parent_span_id       String CODEC(ZSTD(1)),
    project              LowCardinality(String),
    service_name         LowCardinality(String),
    environment          LowCardinality(String),
    operation            LowCardinality(String),
    provider             LowCardinality(String),
    request_model        LowCardinality(String),
    response_model       LowCardinality(String),
    input_tokens         UInt64,
    output_tokens        UInt64,
    cache_read_tokens    UInt64,
    cache_write_tokens   UInt64,
    reasoning_tokens     UInt64,
    input_cost           Decimal(18, 12),
    cache_read_cost      Decimal(18, 12),
    cache_write_cost     Decimal(18, 12),
    output_cost          Decimal(18, 12),
    total_cost           Decimal(18, 12),
    price_status         LowCardinality(String),
    price_source         LowCardinality(String),
    duration_ns          UInt64,
    status_code          LowCardinality(String),
    error_type           LowCardinality(String),
    finish_reasons       Array(LowCardinality(String)),
    user_id              String CODEC(ZSTD(1)),
    session_id           String CODEC(ZSTD(1)),
    conversation_id      String CODEC(ZSTD(1)),
    feature              LowCardinality(String),
    tags                 Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    convention           LowCardinality(String),
    span_attributes      Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    resource_attributes  Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ingested_at          DateTime64(3, 'UTC') DEFAULT now64(3),

    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project, service_name, toStartOfHour(timestamp), request_model, timestamp)
-- Retries of a batch carry the same insert_deduplication_token: a retried insert is stored once.
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 8192
