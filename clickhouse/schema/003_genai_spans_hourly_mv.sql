-- `model` is what answered, else what was asked for: the name that was priced.
-- `requests` counts model calls: agent and tool spans are rows of their own but not calls.
CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.genai_spans_hourly_mv
TO {database:Identifier}.genai_spans_hourly
AS SELECT
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
    sum(duration_ns) AS duration_ns
FROM {database:Identifier}.genai_spans
GROUP BY hour, project, service_name, environment, provider, model, feature
