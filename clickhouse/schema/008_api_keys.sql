-- Project keys: who may send spans to a collector or read its reports. Only a SHA-256 of each key's secret is
-- stored; every collector on this store reads the same table, so a key created or revoked on one is honoured by
-- all within their refresh interval. A revocation is a newer version of the key's row (ReplacingMergeTree).
CREATE TABLE IF NOT EXISTS {database:Identifier}.api_keys
(
    key_id               String,
    name                 String,
    project              LowCardinality(String),
    role                 LowCardinality(String),
    secret_sha256        String,
    created_at           DateTime64(3, 'UTC'),
    revoked_at           Nullable(DateTime64(3, 'UTC')),
    version              UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key_id
