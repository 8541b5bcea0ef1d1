-- The coarser rollups read their hourly rollup, not every inserted span. Each view on genai_spans runs its GROUP
-- BY over every inserted block (50,000 rows: ~0.25-0.7 µs a row each, beside ~6.4 for the insert itself and ~6.5
-- for all fourteen views); a view on an hourly rollup's table runs over the block that rollup's view writes, a few
-- hundred rows. The sums, mins and maxes are the same (sums of sums; Decimal sums are exact); a t-digest merged
-- from the hourly digests is another approximation of the same quantiles, within the tolerance the rollup tests
-- state for digests. ClickHouse runs a view on a view's target at each insert into it (a cascade); a retried
-- insert (same insert_deduplication_token) is dropped at each level as before.
--
-- MODIFY QUERY moves each view to its new source in one statement: no moment without a view and none with two.
-- An insert into genai_spans already running when the statement runs may still use the old query and so reach
-- the coarse rollup twice (directly and through the hourly one): migrations run before a collector inserts, so
-- only another collector writing meanwhile could, as with 030's swap. On a cluster each shard cascades its own
-- local tables.

ALTER TABLE {database:Identifier}.genai_latency_daily_mv MODIFY QUERY
SELECT
    toStartOfDay(hourly.hour, 'UTC') AS day,
    project,
    environment,
    provider,
    model,
    sum(hourly.spans) AS spans,
    min(hourly.first_ingested) AS first_ingested,
    quantileTDigestMergeState(hourly.duration_digest) AS duration_digest
FROM {database:Identifier}.genai_latency_hourly AS hourly
GROUP BY day, project, environment, provider, model;

ALTER TABLE {database:Identifier}.genai_latency_3h_mv MODIFY QUERY
SELECT
    toStartOfInterval(hourly.hour, INTERVAL 10800 second) AS hour,
    project,
    environment,
    provider,
    model,
    sum(hourly.spans) AS spans,
    min(hourly.first_ingested) AS first_ingested,
    quantileTDigestMergeState(hourly.duration_digest) AS duration_digest
FROM {database:Identifier}.genai_latency_hourly AS hourly
GROUP BY hour, project, environment, provider, model;

ALTER TABLE {database:Identifier}.genai_input_tokens_daily_mv MODIFY QUERY
SELECT
    toStartOfDay(hourly.hour, 'UTC') AS day,
    project,
    environment,
    service_name,
    operation,
    feature,
    sum(hourly.spans) AS spans,
    min(hourly.first_ingested) AS first_ingested,
    quantileTDigestMergeState(hourly.input_tokens_digest) AS input_tokens_digest
FROM {database:Identifier}.genai_input_tokens_hourly AS hourly
GROUP BY day, project, environment, service_name, operation, feature;

ALTER TABLE {database:Identifier}.genai_input_tokens_3h_mv MODIFY QUERY
SELECT
    toStartOfInterval(hourly.hour, INTERVAL 10800 second) AS hour,
    project,
    environment,
    service_name,
    operation,
    feature,
    sum(hourly.spans) AS spans,
    min(hourly.first_ingested) AS first_ingested,
    quantileTDigestMergeState(hourly.input_tokens_digest) AS input_tokens_digest
FROM {database:Identifier}.genai_input_tokens_hourly AS hourly
GROUP BY hour, project, environment, service_name, operation, feature;

ALTER TABLE {database:Identifier}.genai_sessions_daily_mv MODIFY QUERY
SELECT
    toStartOfDay(hourly.hour, 'UTC') AS day,
    project,
    user_id,
    session_id,
    sum(hourly.spans) AS spans,
    sum(hourly.total_cost) AS total_cost,
    min(hourly.first_call) AS first_call,
    max(hourly.last_call) AS last_call,
    min(hourly.first_ingested) AS first_ingested,
    sum(hourly.estimated_spans) AS estimated_spans,
    sum(hourly.estimated_cost) AS estimated_cost,
    min(hourly.estimated_from) AS estimated_from
FROM {database:Identifier}.genai_sessions_hourly AS hourly
GROUP BY day, project, user_id, session_id
