-- Sampling-estimated sums in the rollups the dashboards' spend and request panels and the spend alerts read. A row
-- kept by probability sampling (021) stands for 2^56 / (2^56 - sampling_threshold) calls; each rollup gets
-- `estimated_*` sums of its rows weighted so, beside the stored sums, computed as `spanmeter report` computes its
-- estimates (collector/sampling.py: WEIGHT_SQL for calls, weighed_sql for costs and tokens, in Decimal(76, 24)): a
-- rollup's estimated cost over any rows is exactly the report's for the same rows, and without sampling it is
-- exactly the stored sum (the weight is then exactly 1). A row that was not sampled (threshold 0) skips the
-- Decimal(76, 24) division, whose result would be itself: ClickHouse evaluates an `if` branch only on the rows that
-- take it, and these sums cost every insert into genai_spans (50,000 rows: +180 ms with the division on every
-- row, +35 ms with it on sampled rows only).
--
-- Per rollup, three steps, each safe to run again:
-- 1. ADD COLUMN: the estimates, whose DEFAULT is the stored sum (weight 1), so the rows rolled up before this
--    migration read as their stored sums; and `estimated_from`, the first ingested_at of the rows behind a
--    rollup row whose estimates were computed from the rows (the view's and the backfill's; the rows written
--    before have the DEFAULT, a time after every row's).
-- 2. MODIFY QUERY: the view writes the estimates from now on. One statement, no moment without a view (DROP and
--    CREATE would leave one, whose rows no rollup would ever count), and no moment with two.
-- 3. Backfill: the rows stored before the view wrote its first estimate (before min(estimated_from)) were
--    counted at weight 1 (the DEFAULT); for those of them that were sampled, a row of the differences
--    (weighted less stored) is added, stored sums 0, so the group's estimates become the weighted sums. Its own
--    `estimated_from` is the earliest of those rows: run again, it finds no sampled row stored before that, and
--    adds nothing. ingested_at is the server's time of the insert, so the rows the old query rolled up are
--    before the first the new one did; a row stored in that very millisecond (an insert racing the swap) keeps
--    weight 1: an estimate missed rather than one counted twice. A rollup with no row at all has none counted at
--    weight 1: nothing is added to it. An hour whose rows have outlived their retention (a rollup outlives its
--    rows) keeps its stored sums as estimates: the sampling of rows no longer stored is not known.

-- genai_spans_hourly (002, 003): the daily and month-to-date spend, the forecast, the daily spend alert and the
-- usage priced on another model.
ALTER TABLE {database:Identifier}.genai_spans_hourly
    ADD COLUMN IF NOT EXISTS estimated_requests Decimal(76, 24) DEFAULT toDecimal256(requests, 24),
    ADD COLUMN IF NOT EXISTS estimated_input_tokens Decimal(76, 24) DEFAULT toDecimal256(input_tokens, 24),
    ADD COLUMN IF NOT EXISTS estimated_output_tokens Decimal(76, 24) DEFAULT toDecimal256(output_tokens, 24),
    ADD COLUMN IF NOT EXISTS estimated_cache_read_tokens Decimal(76, 24) DEFAULT toDecimal256(cache_read_tokens, 24),
    ADD COLUMN IF NOT EXISTS estimated_cache_write_tokens Decimal(76, 24)
        DEFAULT toDecimal256(cache_write_tokens, 24),
    ADD COLUMN IF NOT EXISTS estimated_reasoning_tokens Decimal(76, 24) DEFAULT toDecimal256(reasoning_tokens, 24),
    ADD COLUMN IF NOT EXISTS estimated_cost Decimal(76, 24) DEFAULT toDecimal256(total_cost, 24),
    ADD COLUMN IF NOT EXISTS estimated_from SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
        DEFAULT toDateTime64('2299-12-31 00:00:00', 3, 'UTC');

ALTER TABLE {database:Identifier}.genai_spans_hourly_mv MODIFY QUERY
SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    countIf(operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')) AS requests,
    countIf(status_code = 'ERROR') AS errors,
    countIf(price_status = 'unpriced') AS unpriced_requests,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(input_cost) AS input_cost,
    sum(cache_read_cost) AS cache_read_cost,
    sum(cache_write_cost) AS cache_write_cost,
    sum(output_cost) AS output_cost,
    sum(total_cost) AS total_cost,
    sum(duration_ns) AS duration_ns,
    sumIf(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold)),
        operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')) AS estimated_requests,
    sum(if(sampling_threshold = 0, toDecimal256(span.input_tokens, 24), toDecimal256(span.input_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_input_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.output_tokens, 24), toDecimal256(span.output_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_output_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.cache_read_tokens, 24), toDecimal256(span.cache_read_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cache_read_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.cache_write_tokens, 24), toDecimal256(span.cache_write_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cache_write_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.reasoning_tokens, 24), toDecimal256(span.reasoning_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_reasoning_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cost,
    min(ingested_at) AS estimated_from
FROM {database:Identifier}.genai_spans AS span
GROUP BY hour, project, service_name, environment, provider, model, feature;

INSERT INTO {database:Identifier}.genai_spans_hourly
    (hour, project, service_name, environment, provider, model, feature, estimated_requests, estimated_input_tokens,
     estimated_output_tokens, estimated_cache_read_tokens, estimated_cache_write_tokens, estimated_reasoning_tokens,
     estimated_cost, estimated_from)
SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    sumIf(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold)),
        operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool'))
        - countIf(operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')),
    sum(if(sampling_threshold = 0, toDecimal256(span.input_tokens, 24), toDecimal256(span.input_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.input_tokens),
    sum(if(sampling_threshold = 0, toDecimal256(span.output_tokens, 24), toDecimal256(span.output_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.output_tokens),
    sum(if(sampling_threshold = 0, toDecimal256(span.cache_read_tokens, 24), toDecimal256(span.cache_read_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.cache_read_tokens),
    sum(if(sampling_threshold = 0, toDecimal256(span.cache_write_tokens, 24), toDecimal256(span.cache_write_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.cache_write_tokens),
    sum(if(sampling_threshold = 0, toDecimal256(span.reasoning_tokens, 24), toDecimal256(span.reasoning_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.reasoning_tokens),
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.total_cost),
    min(ingested_at)
FROM {database:Identifier}.genai_spans AS span
WHERE sampling_threshold > 0 AND ingested_at < (
    SELECT if(count() = 0, toDateTime64('1970-01-01 00:00:00', 3, 'UTC'), min(estimated_from))
    FROM {database:Identifier}.genai_spans_hourly
)
GROUP BY hour, project, service_name, environment, provider, model, feature;

-- genai_spans_hourly_stats (012): the Overview's spend, requests and tokens, spend by model, service and feature,
-- the Models table and the tag spend's calls without the tag. `estimated_spans`: every span, as `spans`.
ALTER TABLE {database:Identifier}.genai_spans_hourly_stats
    ADD COLUMN IF NOT EXISTS estimated_spans SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(spans, 24),
    ADD COLUMN IF NOT EXISTS estimated_input_tokens SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(input_tokens, 24),
    ADD COLUMN IF NOT EXISTS estimated_output_tokens SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(output_tokens, 24),
    ADD COLUMN IF NOT EXISTS estimated_cost SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(total_cost, 24),
    ADD COLUMN IF NOT EXISTS estimated_from SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
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
    sum(input_tokens) AS input_tokens,
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
    quantileState(duration_ns) AS duration_quantiles,
    quantileState(span.input_tokens) AS input_tokens_quantiles,
    sum(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold))) AS estimated_spans,
    sum(if(sampling_threshold = 0, toDecimal256(span.input_tokens, 24), toDecimal256(span.input_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_input_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.output_tokens, 24), toDecimal256(span.output_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_output_tokens,
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cost,
    min(ingested_at) AS estimated_from
FROM {database:Identifier}.genai_spans AS span
GROUP BY hour, project, service_name, environment, provider, model, feature, operation, price_status;

-- The differences' rows carry their rows' own last_seen and first_ingested (a max and a min: the group's are
-- unchanged) and empty quantile states.
INSERT INTO {database:Identifier}.genai_spans_hourly_stats
    (hour, project, service_name, environment, provider, model, feature, operation, price_status, last_seen,
     first_ingested, estimated_spans, estimated_input_tokens, estimated_output_tokens, estimated_cost,
     estimated_from)
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
    sum(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold))) - count(),
    sum(if(sampling_threshold = 0, toDecimal256(span.input_tokens, 24), toDecimal256(span.input_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.input_tokens),
    sum(if(sampling_threshold = 0, toDecimal256(span.output_tokens, 24), toDecimal256(span.output_tokens, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.output_tokens),
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.total_cost),
    min(ingested_at)
FROM {database:Identifier}.genai_spans AS span
WHERE sampling_threshold > 0 AND ingested_at < (
    SELECT if(count() = 0, toDateTime64('1970-01-01 00:00:00', 3, 'UTC'), min(estimated_from))
    FROM {database:Identifier}.genai_spans_hourly_stats
)
GROUP BY hour, project, service_name, environment, provider, model, feature, operation, price_status;

-- genai_sessions_hourly (013): the Attribution dashboard's top users and sessions.
ALTER TABLE {database:Identifier}.genai_sessions_hourly
    ADD COLUMN IF NOT EXISTS estimated_spans SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(spans, 24),
    ADD COLUMN IF NOT EXISTS estimated_cost SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(total_cost, 24),
    ADD COLUMN IF NOT EXISTS estimated_from SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
        DEFAULT toDateTime64('2299-12-31 00:00:00', 3, 'UTC');

ALTER TABLE {database:Identifier}.genai_sessions_hourly_mv MODIFY QUERY
SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    user_id,
    session_id,
    count() AS spans,
    sum(total_cost) AS total_cost,
    min(timestamp) AS first_call,
    max(timestamp) AS last_call,
    min(ingested_at) AS first_ingested,
    sum(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold))) AS estimated_spans,
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cost,
    min(ingested_at) AS estimated_from
FROM {database:Identifier}.genai_spans AS span
GROUP BY hour, project, service_name, environment, provider, model, feature, user_id, session_id;

INSERT INTO {database:Identifier}.genai_sessions_hourly
    (hour, project, service_name, environment, provider, model, feature, user_id, session_id, first_call, last_call,
     first_ingested, estimated_spans, estimated_cost, estimated_from)
SELECT
    toStartOfHour(timestamp) AS hour,
    project,
    service_name,
    environment,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    user_id,
    session_id,
    min(timestamp),
    max(timestamp),
    min(ingested_at),
    sum(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold))) - count(),
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.total_cost),
    min(ingested_at)
FROM {database:Identifier}.genai_spans AS span
WHERE sampling_threshold > 0 AND ingested_at < (
    SELECT if(count() = 0, toDateTime64('1970-01-01 00:00:00', 3, 'UTC'), min(estimated_from))
    FROM {database:Identifier}.genai_sessions_hourly
)
GROUP BY hour, project, service_name, environment, provider, model, feature, user_id, session_id;

-- genai_sessions_daily (026): the same panels' whole days.
ALTER TABLE {database:Identifier}.genai_sessions_daily
    ADD COLUMN IF NOT EXISTS estimated_spans SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(spans, 24),
    ADD COLUMN IF NOT EXISTS estimated_cost SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(total_cost, 24),
    ADD COLUMN IF NOT EXISTS estimated_from SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
        DEFAULT toDateTime64('2299-12-31 00:00:00', 3, 'UTC');

ALTER TABLE {database:Identifier}.genai_sessions_daily_mv MODIFY QUERY
SELECT
    toStartOfDay(timestamp, 'UTC') AS day,
    project,
    user_id,
    session_id,
    count() AS spans,
    sum(total_cost) AS total_cost,
    min(timestamp) AS first_call,
    max(timestamp) AS last_call,
    min(ingested_at) AS first_ingested,
    sum(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold))) AS estimated_spans,
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cost,
    min(ingested_at) AS estimated_from
FROM {database:Identifier}.genai_spans AS span
GROUP BY day, project, user_id, session_id;

INSERT INTO {database:Identifier}.genai_sessions_daily
    (day, project, user_id, session_id, first_call, last_call, first_ingested, estimated_spans, estimated_cost,
     estimated_from)
SELECT
    toStartOfDay(timestamp, 'UTC') AS day,
    project,
    user_id,
    session_id,
    min(timestamp),
    max(timestamp),
    min(ingested_at),
    sum(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold))) - count(),
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.total_cost),
    min(ingested_at)
FROM {database:Identifier}.genai_spans AS span
WHERE sampling_threshold > 0 AND ingested_at < (
    SELECT if(count() = 0, toDateTime64('1970-01-01 00:00:00', 3, 'UTC'), min(estimated_from))
    FROM {database:Identifier}.genai_sessions_daily
)
GROUP BY day, project, user_id, session_id;

-- genai_tags_hourly (014): spend by tag value.
ALTER TABLE {database:Identifier}.genai_tags_hourly
    ADD COLUMN IF NOT EXISTS estimated_spans SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(spans, 24),
    ADD COLUMN IF NOT EXISTS estimated_cost SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(total_cost, 24),
    ADD COLUMN IF NOT EXISTS estimated_from SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
        DEFAULT toDateTime64('2299-12-31 00:00:00', 3, 'UTC');

ALTER TABLE {database:Identifier}.genai_tags_hourly_mv MODIFY QUERY
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
    min(ingested_at) AS first_ingested,
    sum(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold))) AS estimated_spans,
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cost,
    min(ingested_at) AS estimated_from
FROM {database:Identifier}.genai_spans AS span
ARRAY JOIN arrayZip(mapKeys(tags), mapValues(tags)) AS tag
GROUP BY hour, project, service_name, environment, provider, model, feature, tag_key, tag_value;

INSERT INTO {database:Identifier}.genai_tags_hourly
    (hour, project, service_name, environment, provider, model, feature, tag_key, tag_value, first_ingested,
     estimated_spans, estimated_cost, estimated_from)
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
    min(ingested_at),
    sum(if(sampling_threshold = 0, toDecimal256(1, 24), toDecimal256(72057594037927936, 24) / (72057594037927936 - sampling_threshold))) - count(),
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.total_cost),
    min(ingested_at)
FROM {database:Identifier}.genai_spans AS span
ARRAY JOIN arrayZip(mapKeys(tags), mapValues(tags)) AS tag
WHERE sampling_threshold > 0 AND ingested_at < (
    SELECT if(count() = 0, toDateTime64('1970-01-01 00:00:00', 3, 'UTC'), min(estimated_from))
    FROM {database:Identifier}.genai_tags_hourly
)
GROUP BY hour, project, service_name, environment, provider, model, feature, tag_key, tag_value;

-- genai_spend_minutely (027): the spend spike alert.
ALTER TABLE {database:Identifier}.genai_spend_minutely
    ADD COLUMN IF NOT EXISTS estimated_cost SimpleAggregateFunction(sum, Decimal(76, 24))
        DEFAULT toDecimal256(total_cost, 24),
    ADD COLUMN IF NOT EXISTS estimated_from SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
        DEFAULT toDateTime64('2299-12-31 00:00:00', 3, 'UTC');

ALTER TABLE {database:Identifier}.genai_spend_minutely_mv MODIFY QUERY
SELECT
    toStartOfMinute(timestamp) AS minute,
    project,
    count() AS spans,
    sum(total_cost) AS total_cost,
    min(ingested_at) AS first_ingested,
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        AS estimated_cost,
    min(ingested_at) AS estimated_from
FROM {database:Identifier}.genai_spans AS span
GROUP BY minute, project;

INSERT INTO {database:Identifier}.genai_spend_minutely (minute, project, first_ingested, estimated_cost, estimated_from)
SELECT
    toStartOfMinute(timestamp) AS minute,
    project,
    min(ingested_at),
    sum(if(sampling_threshold = 0, toDecimal256(span.total_cost, 24), toDecimal256(span.total_cost, 24) * 72057594037927936 / (72057594037927936 - sampling_threshold)))
        - sum(span.total_cost),
    min(ingested_at)
FROM {database:Identifier}.genai_spans AS span
WHERE sampling_threshold > 0 AND ingested_at < (
    SELECT if(count() = 0, toDateTime64('1970-01-01 00:00:00', 3, 'UTC'), min(estimated_from))
    FROM {database:Identifier}.genai_spend_minutely
)
GROUP BY minute, project
