-- Each group's calls priced on another model (`spanmeter report --what-if`): per call, its tokens by kind x that
-- model's prices in model_prices at the call's time (price period, time of day), in the tier its input tokens
-- (cache included) reach, as genai-prices charges. The tokens are first summed per group, price period and tier
-- (within one, the cost is linear in them), then priced: exact Decimal, in USD per million tokens (the caller
-- divides by 10^6). {group} is one of report.GROUPS' expressions.
WITH (
    SELECT groupArray((valid_from, valid_to, day_from_ms, day_to_ms, tier_starts))
    FROM {database:Identifier}.model_prices FINAL
    WHERE version = {version:String} AND provider = {provider:String} AND model = {model:String}
) AS periods
SELECT
    calls.group AS group,
    sum(
        calls.plain * if(calls.tier = 0, prices.input_mtok, prices.input_tier_mtok[calls.tier])
        + calls.reads * if(calls.tier = 0, prices.cache_read_mtok, prices.cache_read_tier_mtok[calls.tier])
        + calls.writes * if(calls.tier = 0, prices.cache_write_mtok, prices.cache_write_tier_mtok[calls.tier])
        + calls.answers * if(calls.tier = 0, prices.output_mtok, prices.output_tier_mtok[calls.tier])
        + calls.thoughts * ifNull(
            prices.reasoning_mtok, if(calls.tier = 0, prices.output_mtok, prices.output_tier_mtok[calls.tier]))
    ) AS cost_per_million
FROM
(
    -- plain: input other than cache; answers: output other than reasoning; thoughts: reasoning
    SELECT group, period.1 AS valid_from, period.3 AS day_from_ms,
        if(empty(period.5), 0, arrayCount(start -> start < input_tokens, period.5)) AS tier,
        sum(input_tokens - cache_read_tokens - cache_write_tokens) AS plain, sum(cache_read_tokens) AS reads,
        sum(cache_write_tokens) AS writes, sum(output_tokens - reasoning_tokens) AS answers,
        sum(reasoning_tokens) AS thoughts
    FROM
    (
        SELECT
            {group} AS group,
            toUInt32(toUnixTimestamp64Milli(timestamp) % 86400000) AS day_ms,
            -- Most models have one price for all time: no search per call then (if() evaluates only its branch).
            if(length(periods) = 1, periods[1],
                arrayFirst(p -> timestamp >= p.1 AND timestamp < p.2 AND day_ms >= p.3 AND day_ms < p.4, periods))
                AS period,
            input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens
        FROM {database:Identifier}.genai_spans
        WHERE timestamp >= {start:DateTime64(9, 'UTC')}
          AND timestamp < {end:DateTime64(9, 'UTC')}
          AND ({project:String} = '' OR project = {project:String})
    )
    GROUP BY group, valid_from, day_from_ms, tier
) AS calls
INNER JOIN
(
    SELECT * FROM {database:Identifier}.model_prices FINAL
    WHERE version = {version:String} AND provider = {provider:String} AND model = {model:String}
) AS prices
ON calls.valid_from = prices.valid_from AND calls.day_from_ms = prices.day_from_ms
GROUP BY group
