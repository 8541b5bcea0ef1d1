-- Rows ClickHouse refused for their values, set aside by the exporter (the rows themselves are kept as
-- files in the write-ahead log's rejected/ folder: `spanmeter rejected list`, `spanmeter rejected retry`).
-- One row per set-aside group, for the Ingestion dashboard.
CREATE TABLE IF NOT EXISTS {database:Identifier}.ingest_rejections
(
    rejected_at          DateTime64(3, 'UTC') DEFAULT now64(3),
    letter_id            String,
    rows                 UInt64,
    error                String,
    span_ids             Array(String)
)
ENGINE = MergeTree
ORDER BY rejected_at
TTL toDateTime(rejected_at) + INTERVAL 90 DAY
