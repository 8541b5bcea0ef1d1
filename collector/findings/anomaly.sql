-- anomalies: calls, tokens and spend per UTC day of each value of {dimension} (a fixed expression, never user
-- text) from {history_start} to {checked_end}, for the values with a checked day (from {checked_start}) of at
-- least {min_calls} calls.
SELECT
    project,
    {dimension} AS value,
    toDate(timestamp) AS day,
    count() AS calls,
    sum(input_tokens + output_tokens) AS tokens,
    sum(total_cost) AS spend,
    groupArray(3)(trace_id) AS trace_ids
FROM {database:Identifier}.genai_spans
WHERE timestamp >= {history_start:DateTime64(9, 'UTC')}
  AND timestamp < {checked_end:DateTime64(9, 'UTC')}
  AND ({project:String} = '' OR project = {project:String})
  AND operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')
  AND {dimension} != ''
  AND (project, {dimension}) IN (
      SELECT project, {dimension}
      FROM {database:Identifier}.genai_spans
      WHERE timestamp >= {checked_start:DateTime64(9, 'UTC')}
        AND timestamp < {checked_end:DateTime64(9, 'UTC')}
        AND ({project:String} = '' OR project = {project:String})
        AND operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')
      GROUP BY project, {dimension}, toDate(timestamp)
      HAVING count() >= {min_calls:UInt64}
  )
GROUP BY project, value, day
ORDER BY project, value, day
