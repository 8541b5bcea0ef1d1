-- What each numbered migration of clickhouse/schema/ did to this database: one row per step (claimed,
-- applied, adopted, failed). A migration is claimed by inserting its `claimed` row with
-- insert_deduplication_token = "migration-VERSION-ATTEMPT": of several collectors starting together, the
-- store keeps the first insert, and only the collector named on the kept row applies the migration; the
-- others wait for its `applied` row. A claim whose collector died is taken over with the next attempt.
CREATE TABLE IF NOT EXISTS {database:Identifier}.schema_migrations
(
    version              UInt32,
    name                 String,
    checksum             String,
    state                LowCardinality(String),
    attempt              UInt32,
    applied_at           DateTime64(3, 'UTC'),
    collector            String,
    detail               String
)
ENGINE = MergeTree
ORDER BY (version, attempt)
SETTINGS non_replicated_deduplication_window = 10000
