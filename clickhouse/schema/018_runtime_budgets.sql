-- Budgets set at runtime (`spanmeter budget set|remove`, POST/DELETE /v1/budgets/definitions), beside those of
-- pipelines.yaml. One row per change, keyed by budget name: the newest version wins (ReplacingMergeTree; read with
-- FINAL), so every collector on this store reads the same budgets at its next reconcile. A removal is a newer row
-- with `deleted = 1` (a tombstone): an older `set` arriving late on a replica cannot bring the budget back.
-- `config` is the budget as JSON, the same fields as a budget of pipelines.yaml.
CREATE TABLE IF NOT EXISTS {database:Identifier}.runtime_budgets
(
    name                 String,
    config               String,
    deleted              UInt8,
    updated_at           DateTime64(3, 'UTC'),
    updated_by           String,
    version              UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY name
