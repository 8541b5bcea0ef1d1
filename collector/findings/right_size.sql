-- right_size: scopes whose successful calls are short in and out (classification-like), with their token sums,
-- the largest input of one call (which tier a price applies), and what they cost.
SELECT
    {scope_columns},
    count() AS calls,
    sum(input_tokens) AS input_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(output_tokens) AS output_tokens,
    max(input_tokens) AS max_input_tokens,
    quantileExact(0.9)(input_tokens) AS p90_input_tokens,
    quantileExact(0.9)(output_tokens) AS p90_output_tokens,
    sum(total_cost) AS cost,
    groupArray(3)(trace_id) AS trace_ids
FROM {database:Identifier}.genai_spans
WHERE {calls_in_period}
  AND price_status IN ('priced', 'override')
  AND status_code != 'ERROR'
GROUP BY project, service, feature, provider, model
HAVING calls >= {min_calls:UInt64}
   AND p90_input_tokens <= {max_input_tokens:UInt64}
   AND p90_output_tokens <= {max_output_tokens:UInt64}
   AND cost > 0
ORDER BY cost DESC
