-- Budget history expires on its own: crossings and deliveries 400 days after their window or attempt (a year
-- of history, and any month or rolling window long over), the per-window state 90 days after the window.
-- ingest_rejections already keeps 90 days (007); genai_spans and its rollup follow
-- exporters.clickhouse.retention (set at start, retention.py).
ALTER TABLE {database:Identifier}.budget_events MODIFY TTL toDateTime(window_end) + INTERVAL 400 DAY;

ALTER TABLE {database:Identifier}.budget_deliveries MODIFY TTL toDateTime(delivered_at) + INTERVAL 400 DAY;

ALTER TABLE {database:Identifier}.budget_status MODIFY TTL toDateTime(window_end) + INTERVAL 90 DAY
