-- Each group's calls priced on another model (`spanmeter report --what-if`): per call, its tokens by kind x that
-- model's prices in model_prices at the call's time (price period, time of day), in the tier its input tokens
-- (cache included) reach, as genai-prices charges. In USD per million tokens, summed exactly: divided by 10^6 by
-- the caller. {group} is one of report.GROUPS' expressions.
SELECT
    calls.group AS group,
    sum(
        (calls.input_tokens - calls.cache_read_tokens - calls.cache_write_tokens)
            * if((arrayCount(start -> start < calls.input_tokens, prices.tier_starts) AS tier) = 0,
                prices.input_mtok, prices.input_tier_mtok[tier])
        + calls.cache_read_tokens * if(tier = 0, prices.cache_read_mtok, prices.cache_read_tier_mtok[tier])
        + calls.cache_write_tokens * if(tier = 0, prices.cache_write_mtok, prices.cache_write_tier_mtok[tier])
        + (calls.output_tokens - calls.reasoning_tokens)
            * if(tier = 0, prices.output_mtok, prices.output_tier_mtok[tier])
        + calls.reasoning_tokens * ifNull(
            prices.reasoning_mtok, if(tier = 0, prices.output_mtok, prices.output_tier_mtok[tier]))
    ) AS cost_per_million
FROM
(
    SELECT {group} AS group, timestamp, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens,
        reasoning_tokens, toUInt32(toUnixTimestamp64Milli(timestamp) % 86400000) AS day_ms
    FROM {database:Identifier}.genai_spans
    WHERE timestamp >= {start:DateTime64(9, 'UTC')}
      AND timestamp < {end:DateTime64(9, 'UTC')}
      AND ({project:String} = '' OR project = {project:String})
) AS calls
CROSS JOIN
(
    SELECT * FROM {database:Identifier}.model_prices FINAL
    WHERE version = {version:String} AND provider = {provider:String} AND model = {model:String}
) AS prices
WHERE calls.timestamp >= prices.valid_from AND calls.timestamp < prices.valid_to
  AND calls.day_ms >= prices.day_from_ms AND calls.day_ms < prices.day_to_ms
GROUP BY group
