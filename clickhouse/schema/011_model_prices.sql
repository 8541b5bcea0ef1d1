-- Every model genai-prices knows, with its prices per million tokens by kind, one row per price period: what
-- `spanmeter report --what-if` and the Models dashboard price traffic on, also for a model that never ran.
-- Written by each collector at start for its genai-prices `version` (collector/prices.py); read with FINAL.
-- A row applies to calls with valid_from <= timestamp < valid_to whose time of day (UTC, milliseconds after
-- midnight) is in [day_from_ms, day_to_ms). `input_mtok` prices input tokens other than cache reads and writes;
-- a call whose input tokens (cache included) exceed tier_starts[i] is priced at the i-th entry of the
-- *_tier_mtok arrays instead (the highest passed wins). reasoning_mtok is NULL when reasoning is priced as output.
CREATE TABLE IF NOT EXISTS {database:Identifier}.model_prices
(
    version              LowCardinality(String),
    provider             LowCardinality(String),
    model                String,
    name                 String,
    valid_from           DateTime64(3, 'UTC'),
    valid_to             DateTime64(3, 'UTC'),
    day_from_ms          UInt32,
    day_to_ms            UInt32,
    input_mtok           Decimal(38, 18),
    cache_read_mtok      Decimal(38, 18),
    cache_write_mtok     Decimal(38, 18),
    output_mtok          Decimal(38, 18),
    reasoning_mtok       Nullable(Decimal(38, 18)),
    tier_starts          Array(UInt64),
    input_tier_mtok      Array(Decimal(38, 18)),
    cache_read_tier_mtok Array(Decimal(38, 18)),
    cache_write_tier_mtok Array(Decimal(38, 18)),
    output_tier_mtok     Array(Decimal(38, 18)),
    other_units          Array(LowCardinality(String)),
    refreshed_at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(refreshed_at)
ORDER BY (version, provider, model, valid_from, day_from_ms)
-- Collectors starting together insert the same rows under the same insert_deduplication_token: stored once.
SETTINGS non_replicated_deduplication_window = 1000
