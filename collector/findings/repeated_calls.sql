-- repeated_calls: a call identical to the one before it (same scope, model, prompt prefix hash, input tokens and
-- request parameters) within {window_seconds}: an application-side cache would have answered it. Each request's
-- calls are sorted by time in an array (cheaper than a window function over every row), then each is compared
-- with the one before.
SELECT
    project,
    service,
    feature,
    provider,
    model,
    count() AS repeats,
    uniqExact(prompt_prefix_hash) AS prefixes,
    sum(input_tokens) AS input_tokens,
    sum(call.2) AS output_tokens,
    sum(call.3) AS cost,
    groupArray(3)(call.4) AS trace_ids
FROM
(
    SELECT
        {scope_columns},
        prompt_prefix_hash,
        input_tokens,
        arraySort(c -> c.1, groupArray((toUnixTimestamp64Nano(timestamp), output_tokens, total_cost, trace_id))) AS calls
    FROM {database:Identifier}.genai_spans
    WHERE {calls_in_period}
      AND prompt_prefix_hash != ''
      AND status_code != 'ERROR'
    GROUP BY project, service, feature, provider, model, prompt_prefix_hash, input_tokens,
        span_attributes['gen_ai.request.temperature'], span_attributes['gen_ai.request.top_p'],
        span_attributes['gen_ai.request.max_tokens']
    HAVING count() > 1
)
ARRAY JOIN calls AS call, arrayPushFront(arrayPopBack(calls), calls[1]) AS previous, arrayEnumerate(calls) AS position
WHERE position > 1 AND call.1 - previous.1 <= {window_seconds:UInt64} * 1000000000
GROUP BY project, service, feature, provider, model
HAVING repeats >= {min_repeats:UInt64}
ORDER BY cost DESC
