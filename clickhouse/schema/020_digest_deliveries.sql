-- Spend digests: a `claimed` row per digest and period (the collector that wrote the kept row sends it), then
-- one row per channel with the delivery's outcome.
CREATE TABLE IF NOT EXISTS {database:Identifier}.digest_deliveries
(
    digest_key           String,
    digest               LowCardinality(String),
    project              String,
    period_start         DateTime64(3, 'UTC'),
    period_end           DateTime64(3, 'UTC'),
    recorded_at          DateTime64(3, 'UTC'),
    channel              LowCardinality(String),
    channel_type         LowCardinality(String),
    outcome              LowCardinality(String),
    attempts             UInt8,
    detail               String,
    collector_id         LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (digest, period_start, digest_key, recorded_at)
TTL toDateTime(recorded_at) + INTERVAL 400 DAY
-- A claim is deduplicated by its insert token (the digest and period): of several collectors, one row is kept.
SETTINGS non_replicated_deduplication_window = 10000
