-- Spend and calls per UTC day over a range: the digest's chart.
SELECT
    toDate(timestamp, 'UTC') AS day,
    sum(total_cost) AS cost,
    countIf(operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')) AS requests
FROM {database:Identifier}.genai_spans
WHERE timestamp >= {start:DateTime64(9, 'UTC')}
  AND timestamp < {end:DateTime64(9, 'UTC')}
  AND ({project:String} = '' OR project = {project:String})
GROUP BY day
ORDER BY day
