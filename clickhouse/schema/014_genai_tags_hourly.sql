-- Spend per tag key and value, hourly: the Attribution dashboard's "Tag" variable and its spend by tag value.
-- A call counts once under each of its tag keys; under a key it lacks, `spend by tag` shows it with an empty
-- value, which this rollup answers as the calls of the range less those with the key.
CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_tags_hourly
(
    hour                 DateTime('UTC'),
    project              LowCardinality(String),
    service_name         LowCardinality(String),
    environment          LowCardinality(String),
    provider             LowCardinality(String),
    model                LowCardinality(String),
    feature              LowCardinality(String),
    tag_key              LowCardinality(String),
    tag_value            String CODEC(ZSTD(1)),
    spans                SimpleAggregateFunction(sum, UInt64),
    total_cost           SimpleAggregateFunction(sum, Decimal(38, 12)),
    first_ingested       SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project, tag_key, hour, tag_value, service_name, environment, provider, model, feature)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_tags_hourly_mv
TO {database:Identifier}.genai_tags_hourly
AS SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    tag.1 AS tag_key,
    tag.2 AS tag_value,
    count() AS spans,
    sum(total_cost) AS total_cost,
    min(ingested_at) AS first_ingested
FROM {database:Identifier}.genai_spans
ARRAY JOIN arrayZip(mapKeys(tags), mapValues(tags)) AS tag
GROUP BY hour, project, service_name, environment, provider, model, feature, tag_key, tag_value;

-- Backfill, as in 012: the rows stored before the view wrote its first; adds nothing when run again.
INSERT INTO {database:Identifier}.genai_tags_hourly
SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    tag.1 AS tag_key,
    tag.2 AS tag_value,
    count() AS spans,
    sum(total_cost) AS total_cost,
    min(ingested_at) AS first_ingested
FROM {database:Identifier}.genai_spans
ARRAY JOIN arrayZip(mapKeys(tags), mapValues(tags)) AS tag
WHERE ingested_at < (
    SELECT if(count() = 0, toDateTime64('2299-12-31 00:00:00', 3, 'UTC'), min(first_ingested))
    FROM {database:Identifier}.genai_tags_hourly
)
GROUP BY hour, project, service_name, environment, provider, model, feature, tag_key, tag_value
