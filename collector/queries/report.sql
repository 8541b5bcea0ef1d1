-- Requests, tokens and spend per group over a time range. {group} is one of report.GROUPS' expressions.
SELECT
    {group} AS group,
    -- Model calls: agent and tool spans are rows but not calls (their usage is their children's).
    countIf(operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')) AS requests,
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
    countIf(price_status = 'unpriced') AS unpriced_requests,
    -- Probability sampling (sampling.py): a row kept with threshold T stands for 2^56 / (2^56 - T) calls. The
    -- estimates weigh each row so ({weight}: sampling.WEIGHT_SQL, in Decimal(76, 24); the sum is rounded to 12
    -- places in Python); without sampling they equal the exact sums. `spans.total_cost`: the column, not the alias.
    max(sampling_threshold) > 0 AS estimated,
    sumIf({weight}, operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool'))
        AS estimated_requests,
    sum({weighed_cost}) AS estimated_cost
FROM {database:Identifier}.genai_spans AS spans
WHERE timestamp >= {start:DateTime64(9, 'UTC')}
  AND timestamp < {end:DateTime64(9, 'UTC')}
  AND ({project:String} = '' OR project = {project:String})
GROUP BY group
ORDER BY total_cost DESC, requests DESC, group
