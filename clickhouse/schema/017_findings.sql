-- Findings as the collector computes them every findings.interval (collector/findings/store.py), for the Findings
-- dashboard: Grafana runs only SQL, and some rules price what-ifs with genai-prices in Python. One run is the
-- findings over findings.since ending at run_at; collectors on one store write a run once (run_at is the
-- interval's start and the insert's deduplication token).
CREATE TABLE IF NOT EXISTS {database:Identifier}.findings
(
    run_at                 DateTime('UTC'),
    kind                   LowCardinality(String),
    project                LowCardinality(String),
    scope                  Map(LowCardinality(String), String),
    scope_text             String,
    period_start           DateTime('UTC'),
    period_end             DateTime('UTC'),
    savings_usd_per_month  Decimal(18, 6),
    action                 String,
    evidence               String,
    trace_ids              Array(String)
)
ENGINE = MergeTree
ORDER BY (run_at, kind, project)
TTL run_at + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000
