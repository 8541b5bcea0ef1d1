-- repeated_calls: a call identical to the one before it (same scope, model, prompt prefix hash, input tokens and
-- request parameters) within {window_seconds}: an application-side cache would have answered it.
SELECT
    project,
    service,
    feature,
    provider,
    model,
    count() AS repeats,
    uniqExact(prompt_prefix_hash) AS prefixes,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(total_cost) AS cost,
    groupArray(3)(trace_id) AS trace_ids
FROM
(
    SELECT
        {scope_columns},
        prompt_prefix_hash,
        input_tokens,
        output_tokens,
        total_cost,
        trace_id,
        concat(span_attributes['gen_ai.request.temperature'], '|', span_attributes['gen_ai.request.top_p'], '|',
               span_attributes['gen_ai.request.max_tokens']) AS params,
        toUnixTimestamp64Nano(timestamp) AS at,
        lagInFrame(toUnixTimestamp64Nano(timestamp), 1, 0) OVER (
            PARTITION BY project, service, feature, provider, model, prompt_prefix_hash, input_tokens, params
            ORDER BY timestamp ROWS BETWEEN 1 PRECEDING AND CURRENT ROW
        ) AS previous_at
    FROM {database:Identifier}.genai_spans
    WHERE {calls_in_period}
      AND prompt_prefix_hash != ''
      AND status_code != 'ERROR'
)
WHERE previous_at > 0 AND at - previous_at <= {window_seconds:UInt64} * 1000000000
GROUP BY project, service, feature, provider, model
HAVING repeats >= {min_repeats:UInt64}
ORDER BY cost DESC
