-- Each budget's latest state per scope value and window, refreshed by the collector: what Grafana shows.
-- Read with FINAL (or argMax by updated_at).
CREATE TABLE IF NOT EXISTS {database:Identifier}.budget_status
(
    budget               LowCardinality(String),
    scope_value          String,
    window_start         DateTime64(3, 'UTC'),
    window_end           DateTime64(3, 'UTC'),
    spend_usd            Decimal(38, 12),
    limit_usd            Decimal(38, 12),
    percent              Float64,
    state                LowCardinality(String),
    projected_usd        Decimal(38, 12),
    action               LowCardinality(String),
    updated_at           DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (budget, scope_value, window_start)
