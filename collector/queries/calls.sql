-- Recent calls, one row per GenAI span. {where} is `1` or fixed fragments of calls.FILTERS and calls.STATUSES
-- joined with AND (values only as {name:Type} parameters);
-- {order} is calls.ORDERS' listing order (newest first by start time) or tail order (oldest stored first).
SELECT
    toUnixTimestamp64Nano(timestamp) AS time_unix_nano,
    toUnixTimestamp64Milli(ingested_at) AS ingested_unix_milli,
    trace_id,
    span_id,
    project,
    service_name,
    environment,
    operation,
    provider,
    if(response_model != '', response_model, request_model) AS model,
    feature,
    user_id,
    session_id,
    input_tokens,
    output_tokens,
    cache_read_tokens,
    cache_write_tokens,
    reasoning_tokens,
    total_cost,
    price_status,
    duration_ns,
    status_code,
    error_type
FROM {database:Identifier}.genai_spans
WHERE {where}
ORDER BY {order}
LIMIT {limit:UInt32}
