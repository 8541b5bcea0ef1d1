-- Budget threshold crossings: one row per (budget, scope value, window, threshold), written by any collector.
-- The event_id is derived from that identity, so two collectors (or a restarted one) writing the same crossing
-- collapse into one row (ReplacingMergeTree; read with FINAL).
CREATE TABLE IF NOT EXISTS {database:Identifier}.budget_events
(
    event_id             String,
    created_at           DateTime64(3, 'UTC'),
    budget               LowCardinality(String),
    scope_value          String,
    window_start         DateTime64(3, 'UTC'),
    window_end           DateTime64(3, 'UTC'),
    threshold_percent    UInt16,
    spend_usd            Decimal(38, 12),
    limit_usd            Decimal(38, 12),
    action               LowCardinality(String),
    collector_id         LowCardinality(String)
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (budget, scope_value, window_start, threshold_percent)
