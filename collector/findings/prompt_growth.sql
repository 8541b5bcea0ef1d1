-- prompt_growth: per scope and week (0 = the last 7 days before the end, 1 the week before...), calls and input
-- tokens; plain input (no cache) and its cost give the rate the growth is priced at.
SELECT
    {scope_columns},
    intDiv(toUnixTimestamp64Nano({end:DateTime64(9, 'UTC')}) - toUnixTimestamp64Nano(timestamp),
           toInt64(7 * 86400) * 1000000000) AS week,
    count() AS calls,
    sum(input_tokens) AS input_tokens,
    sum(input_tokens - cache_read_tokens - cache_write_tokens) AS plain_input_tokens,
    sum(input_cost) AS input_cost,
    groupArray(3)(trace_id) AS trace_ids
FROM {database:Identifier}.genai_spans
WHERE {calls_in_period}
  AND price_status IN ('priced', 'override')
GROUP BY project, service, feature, provider, model, week
ORDER BY project, service, feature, provider, model, week
