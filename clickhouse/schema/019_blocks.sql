-- The kill switch (`spanmeter block` / `unblock`, /v1/budgets/blocks): an append-only log of blocks raised and
-- lifted, who did it (a key id or an OS user), when, why and until when. It is its own audit trail: nothing is
-- updated or merged away. A scope is blocked while its newest row is a `block` whose `until` (if any) is ahead.
-- `scope_key` is the scope in a canonical form (`provider=openai,user=u-1`), what `unblock --scope` names.
CREATE TABLE IF NOT EXISTS {database:Identifier}.budget_blocks
(
    scope_key            String,
    scope                Map(String, String),
    action               LowCardinality(String),
    reason               String,
    until                Nullable(DateTime64(3, 'UTC')),
    actor                String,
    at                   DateTime64(3, 'UTC'),
    version              UInt64
)
ENGINE = MergeTree
ORDER BY (scope_key, version)
