-- cache_unused: per scope, the prompt prefixes (same prompt_prefix_hash) sent at least {min_repeats} times with
-- at least {min_input_tokens} input tokens a call and never a cache read. A prefix's cacheable tokens are its
-- calls after the first times its smallest input (the shared prefix is no longer than the shortest call).
SELECT
    project,
    service,
    feature,
    provider,
    model,
    count() AS prefixes,
    sum(calls) AS calls,
    sum((calls - 1) * min_input) AS cacheable_tokens,
    sum(input_sum) AS input_tokens,
    max(max_input) AS max_input_tokens,
    sum(input_cost) AS input_cost,
    arraySlice(groupArray(example), 1, 3) AS trace_ids
FROM
(
    SELECT
        {scope_columns},
        prompt_prefix_hash,
        count() AS calls,
        min(input_tokens) AS min_input,
        max(input_tokens) AS max_input,
        sum(input_tokens) AS input_sum,
        sum(input_cost) AS input_cost,
        sum(cache_read_tokens) AS cache_reads,
        any(trace_id) AS example
    FROM {database:Identifier}.genai_spans
    WHERE {calls_in_period}
      AND prompt_prefix_hash != ''
      AND price_status IN ('priced', 'override')
    GROUP BY project, service, feature, provider, model, prompt_prefix_hash
    HAVING calls >= {min_repeats:UInt64} AND min_input >= {min_input_tokens:UInt64} AND cache_reads = 0
)
GROUP BY project, service, feature, provider, model
ORDER BY cacheable_tokens DESC
