-- Budget notifications: each delivery attempt's outcome, one row per event and channel.
CREATE TABLE IF NOT EXISTS {database:Identifier}.budget_deliveries
(
    delivered_at         DateTime64(3, 'UTC'),
    event_id             String,
    budget               LowCardinality(String),
    scope_value          String,
    threshold_percent    UInt16,
    channel              LowCardinality(String),
    channel_type         LowCardinality(String),
    outcome              LowCardinality(String),
    attempts             UInt8,
    detail               String,
    collector_id         LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (budget, event_id, delivered_at);

-- A crossing is claimed by inserting its row with insert_deduplication_token = event_id: ClickHouse keeps
-- the first insert and drops the others, so exactly one collector finds its own collector_id on the row
-- and notifies (MergeTree tables deduplicate inserts only with this window set).
ALTER TABLE {database:Identifier}.budget_events MODIFY SETTING non_replicated_deduplication_window = 100000
