-- Three hourly rollups read genai_spans_hourly_stats, not every inserted span, as 031's coarse rollups read their
-- hourly ones. genai_spans_hourly (002), genai_latency_hourly (023) and genai_input_tokens_hourly (024) are keyed
-- by a subset of genai_spans_hourly_stats' keys (hour, project, service, environment, provider, model, feature,
-- operation, price_status), so each can be summed from it: their views then run over the few hundred rows the
-- stats view writes for an insert, not over its 50,000 spans (three GROUP BYs of string keys on every span,
-- ~50 of an insert's ~205 ms, bench/README.md). What they need and the stats rollup lacked is added to it: the
-- reasoning tokens, the durations' sum, three more estimates and a t-digest each of durations and input tokens
-- (computed once, where the three views computed theirs). The sums and estimates are the same (sums of sums;
-- Decimal sums are exact); a t-digest merged from the stats groups' digests is another approximation of the same
-- quantiles, within the tolerance the rollup tests state for digests, as 031's are. `requests` and
-- `unpriced_requests` are the stats rows' spans of the operations and price status they count.
--
-- Four steps, each safe to run again:
-- 1. ADD COLUMN to genai_spans_hourly_stats, with `detail_from`: the first ingested_at behind a row whose added
--    columns were computed from the rows (a time after every row's on the rows rolled up before).
-- 2. MODIFY QUERY: its view writes the added columns from now on.
-- 3. Backfill: the rows stored before the view wrote them (before min(detail_from)) get a row each group of the
--    added columns alone (the others 0, last_seen and first_ingested their own: a max and a min), so the stats
--    rollup holds them for every stored row, as 030 backfilled its estimates. Run again it finds none. Rows past
--    their retention are not known: their hours keep 0 and empty digests in the added columns, which nothing
--    reads but the three views below, and those read only what is inserted after step 4.
-- 4. MODIFY QUERY: the three views read the stats rollup. Their rows from before stay as they were. An insert
--    running while a view moves may reach it both ways (migrations run before a collector inserts: only another
--    collector writing meanwhile could), as in 031. A retried insert (same insert_deduplication_token) is dropped
--    at each level of the cascade. On a cluster each shard cascades its own local tables.

ALTER TABLE {database:Identifier}.genai_spans_hourly_stats
    ADD COLUMN IF NOT EXISTS reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS duration_ns SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS estimated_cache_read_tokens SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(cache_read_tokens, 24),
    ADD COLUMN IF NOT EXISTS estimated_cache_write_tokens SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(cache_write_tokens, 24),
    ADD COLUMN IF NOT EXISTS estimated_reasoning_tokens SimpleAggregateFunction(sum, Decimal(76, 24)),
    ADD COLUMN IF NOT EXISTS duration_digest AggregateFunction(quantileTDigest, UInt64),
    ADD COLUMN IF NOT EXISTS input_tokens_digest AggregateFunction(quantileTDigest, UInt64),
    ADD COLUMN IF NOT EXISTS detail_from SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
        DEFAULT toDateTime64('2299-12-31 00:00:00', 3, 'UTC');

ALTER TABLE {database:Identifier}.genai_spans_hourly_stats_mv MODIFY QUERY
SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    operation,
    price_status,
    count() AS spans,
    countIf(status_code = 'ERROR') AS errors,
    sum(span.input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(input_cost) AS input_cost,
    sum(cache_read_cost) AS cache_read_cost,
    sum(cache_write_cost) AS cache_write_cost,
    sum(output_cost) AS output_cost,
    sum(total_cost) AS total_cost,
    max(timestamp) AS last_seen,
    min(ingested_at) AS first_ingested,
    quantileState(span.duration_ns) AS duration_quantiles,
    quantileState(span.input_tokens) AS input_tokens_quantiles,
    sum(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold))) AS estimated_spans,
    sum(if(sampling_threshold = 0, toDecimal256(span.input_tokens, 24), toDecimal256(span.input_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_input_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.output_tokens, 24), toDecimal256(span.output_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_output_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cost,
    min(ingested_at) AS estimated_from,
    sum(span.reasoning_tokens) AS reasoning_tokens,
    sum(span.duration_ns) AS duration_ns,
    sum(if(sampling_threshold = 0, toDecimal256(span.cache_read_tokens, 24), toDecimal256(span.cache_read_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cache_read_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.cache_write_tokens, 24), toDecimal256(span.cache_write_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cache_write_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.reasoning_tokens, 24), toDecimal256(span.reasoning_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_reasoning_tokens,
    quantileTDigestState(span.duration_ns) AS duration_digest,
    quantileTDigestState(span.input_tokens) AS input_tokens_digest,
    min(ingested_at) AS detail_from
FROM {database:Identifier}.genai_spans AS span
GROUP BY hour, project, service_name, environment, provider, model, feature, operation, price_status;

INSERT INTO {database:Identifier}.genai_spans_hourly_stats
    (hour, project, service_name, environment, provider, model, feature, operation, price_status, last_seen,
     first_ingested, reasoning_tokens, duration_ns, estimated_cache_read_tokens, estimated_cache_write_tokens,
     estimated_reasoning_tokens, duration_digest, input_tokens_digest, detail_from)
SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    operation,
    price_status,
    max(timestamp),
    min(ingested_at),
    sum(span.reasoning_tokens),
    sum(span.duration_ns),
    sum(if(sampling_threshold = 0, toDecimal256(span.cache_read_tokens, 24), toDecimal256(span.cache_read_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.cache_read_tokens),
    sum(if(sampling_threshold = 0, toDecimal256(span.cache_write_tokens, 24), toDecimal256(span.cache_write_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.cache_write_tokens),
    sum(if(sampling_threshold = 0, toDecimal256(span.reasoning_tokens, 24), toDecimal256(span.reasoning_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold))),
    quantileTDigestState(span.duration_ns),
    quantileTDigestState(span.input_tokens),
    min(ingested_at)
FROM {database:Identifier}.genai_spans AS span
WHERE ingested_at < (
    SELECT if(count() = 0, toDateTime64('1970-01-01 00:00:00', 3, 'UTC'), min(detail_from))
    FROM {database:Identifier}.genai_spans_hourly_stats
)
GROUP BY hour, project, service_name, environment, provider, model, feature, operation, price_status;

ALTER TABLE {database:Identifier}.genai_spans_hourly_mv MODIFY QUERY
SELECT
    stats.hour AS hour,
    project,
    service_name,
    environment,
    provider,
    model,
    feature,
    sumIf(stats.spans, operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool'))
        AS requests,
    sum(stats.errors) AS errors,
    sumIf(stats.spans, price_status = 'unpriced') AS unpriced_requests,
    sum(stats.input_tokens) AS input_tokens,
    sum(stats.output_tokens) AS output_tokens,
    sum(stats.cache_read_tokens) AS cache_read_tokens,
    sum(stats.cache_write_tokens) AS cache_write_tokens,
    sum(stats.reasoning_tokens) AS reasoning_tokens,
    sum(stats.input_cost) AS input_cost,
    sum(stats.cache_read_cost) AS cache_read_cost,
    sum(stats.cache_write_cost) AS cache_write_cost,
    sum(stats.output_cost) AS output_cost,
    sum(stats.total_cost) AS total_cost,
    sum(stats.duration_ns) AS duration_ns,
    sumIf(stats.estimated_spans, operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool'))
        AS estimated_requests,
    sum(stats.estimated_input_tokens) AS estimated_input_tokens,
    sum(stats.estimated_output_tokens) AS estimated_output_tokens,
    sum(stats.estimated_cache_read_tokens) AS estimated_cache_read_tokens,
    sum(stats.estimated_cache_write_tokens) AS estimated_cache_write_tokens,
    sum(stats.estimated_reasoning_tokens) AS estimated_reasoning_tokens,
    sum(stats.estimated_cost) AS estimated_cost,
    min(stats.estimated_from) AS estimated_from
FROM {database:Identifier}.genai_spans_hourly_stats AS stats
GROUP BY hour, project, service_name, environment, provider, model, feature;

ALTER TABLE {database:Identifier}.genai_latency_hourly_mv MODIFY QUERY
SELECT
    stats.hour AS hour,
    project,
    environment,
    provider,
    model,
    sum(stats.spans) AS spans,
    min(stats.first_ingested) AS first_ingested,
    quantileTDigestMergeState(stats.duration_digest) AS duration_digest
FROM {database:Identifier}.genai_spans_hourly_stats AS stats
GROUP BY hour, project, environment, provider, model;

ALTER TABLE {database:Identifier}.genai_input_tokens_hourly_mv MODIFY QUERY
SELECT
    stats.hour AS hour,
    project,
    environment,
    service_name,
    operation,
    feature,
    sum(stats.spans) AS spans,
    min(stats.first_ingested) AS first_ingested,
    quantileTDigestMergeState(stats.input_tokens_digest) AS input_tokens_digest
FROM {database:Identifier}.genai_spans_hourly_stats AS stats
GROUP BY hour, project, environment, service_name, operation, feature
