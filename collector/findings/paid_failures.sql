-- paid_failures: calls that ended in an error yet reported (and were billed for) tokens.
SELECT
    {scope_columns},
    error_type,
    count() AS calls,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(total_cost) AS cost,
    groupArray(3)(trace_id) AS trace_ids
FROM {database:Identifier}.genai_spans
WHERE {calls_in_period}
  AND status_code = 'ERROR'
  AND input_tokens + output_tokens > 0
GROUP BY project, service, feature, provider, model, error_type
HAVING calls >= {min_calls:UInt64}
ORDER BY cost DESC
