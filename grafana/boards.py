"""spanmeter's eight dashboards: each one's panels (their SQL, from queries.py's helpers where shared) and the
dashboard around them, built with grafana-foundation-sdk."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.dashboard import (
    DashboardSpecialValueMapOptions,
    DynamicConfigValue,
    SpecialValueMap,
    SpecialValueMatch,
    ValueMappingResult,
)

from panels import Panel, bars, percent_gauges, pie, stat, table, thresholds, timeseries_panel
from queries import (
    ESTIMATED,
    HOURLY,
    HOURS,
    INGESTED,
    INPUT_TOKENS,
    INPUT_TOKENS_KEYS,
    LATENCY,
    LATENCY_DAILY,
    LATENCY_KEYS,
    LATEST_FINDINGS,
    LATEST_HOURS,
    MODEL,
    PRICES_VERSION,
    RAW,
    RAW_SPEND,
    RAW_TOKENS,
    SPEND,
    STATS,
    TAGS,
    TOKENS,
    before_range,
    compare,
    days_and_hours,
    drift_branch,
    filters,
    in_range,
    on_all,
    per_interval,
    per_stored_interval,
    sessions,
    up_to,
    whole,
)
from variables import compare_model, dimension_variables, tag_key, trace_url

# Points a time series asks for: its bucket is the range / this, rounded by Grafana, so a range of about a week
# or more gets buckets of whole hours (from the rollups) and a day gets 10-minute buckets (from the rows).
SERIES_POINTS = 100
# The tokens-per-call series, a line per service, operation and feature, are trends over weeks: a point a day from
# 30 days up (the daily rollup's digests: 30 a line, where 3-hour points merged 240), 3-hour points at a week.
TREND_POINTS = 30


def compare_stat(
    title: str,
    name: str,
    current: str,
    previous: str,
    unit: str,
    coarse: tuple[tuple[str, str, str], tuple[str, ...], str, str] | None = None,
    estimated: bool = False,
) -> Panel:
    """A value for the dashboard's range beside the same value for the range of equal length before it
    (queries.compare); `estimated`: a sum weighted by sampling (queries.ESTIMATED)."""
    sql = compare(name, current, previous, coarse)
    about = "Against the previous range of equal length." + (f" {ESTIMATED}" if estimated else "")
    return stat(title, sql, [name, "change_percent"], unit).description(about)


def overview() -> list[Panel]:
    unpriced_filter = filters(rollup=True, only=("project", "service", "environment"))
    return [
        stat(
            "Calls that could not be priced",
            f"""SELECT sum(spans) AS unpriced_calls, uniqExact(model) AS unpriced_models FROM {STATS}
                WHERE {HOURS} AND price_status = 'unpriced' AND {unpriced_filter}""",
            ["unpriced_calls", "unpriced_models"],
            "short",
            w=8,
            decimals=None,
        )
        .description(
            "Always shown, whatever model, provider or feature is selected: their cost is unknown, "
            "not zero. Add a price override in pipelines.yaml, then run `spanmeter reprice`."
        )
        .thresholds(thresholds((None, "green"), (1, "red"))),
        table(
            "Unpriced models",
            f"""SELECT provider, model, sum(spans) AS calls, sum(input_tokens) AS input_tokens,
                  sum(output_tokens) AS output_tokens, max(last_seen) AS last_seen
                FROM {STATS}
                WHERE {HOURS} AND price_status = 'unpriced' AND {unpriced_filter}
                GROUP BY provider, model ORDER BY calls DESC LIMIT 50""",
            {
                "provider": "",
                "model": "",
                "calls": "short",
                "input_tokens": "short",
                "output_tokens": "short",
                "last_seen": "dateTimeAsIso",
            },
            w=16,
            h=4,
        ),
        compare_stat(
            "Spend",
            "spend",
            f"toFloat64(sumIf({in_range('estimated_cost')}))",
            f"toFloat64(sumIf({before_range('estimated_cost')}))",
            "currencyUSD",
            estimated=True,
        ),
        compare_stat(
            "Requests",
            "requests",
            whole(f"sumIf({in_range('estimated_spans')})"),
            whole(f"sumIf({before_range('estimated_spans')})"),
            "short",
            estimated=True,
        ),
        compare_stat(
            "Tokens",
            "tokens",
            whole(f"sumIf({in_range('estimated_input_tokens + estimated_output_tokens')})"),
            whole(f"sumIf({before_range('estimated_input_tokens + estimated_output_tokens')})"),
            "short",
            estimated=True,
        ),
        compare_stat(
            "Median latency",
            "median_latency",
            f"quantileMergeIf(0.5)({in_range('duration_quantiles')}) / 1e9",
            f"quantileMergeIf(0.5)({before_range('duration_quantiles')}) / 1e9",
            "s",
            coarse=(
                (LATENCY, LATENCY_DAILY, "duration_digest"),
                LATENCY_KEYS,
                f"quantileTDigestMergeIf(0.5)({in_range('duration_digest')}) / 1e9",
                f"quantileTDigestMergeIf(0.5)({before_range('duration_digest')}) / 1e9",
            ),
        ),
        bars(
            "Spend by model",
            per_interval(MODEL, "model", RAW_SPEND, SPEND, "model"),
            "currencyUSD",
            w=24,
        )
        .max_data_points(SERIES_POINTS)
        .description(ESTIMATED),
        table(
            "Top services",
            f"""SELECT service_name AS service, {whole("sum(estimated_spans)")} AS requests,
                  toFloat64(sum(estimated_cost)) AS spend,
                  spend / greatest(sum(spend) OVER (), 1e-12) * 100 AS share
                FROM {STATS} WHERE {HOURS} AND {HOURLY}
                GROUP BY service ORDER BY spend DESC LIMIT 20""",
            {"service": "", "requests": "short", "spend": "currencyUSD", "share": "percent"},
        ).description(ESTIMATED),
        table(
            "Top features",
            f"""SELECT feature, {whole("sum(estimated_spans)")} AS requests,
                  toFloat64(sum(estimated_cost)) AS spend,
                  spend / greatest(sum(spend) OVER (), 1e-12) * 100 AS share
                FROM {STATS} WHERE {HOURS} AND {HOURLY}
                GROUP BY feature ORDER BY spend DESC LIMIT 20""",
            {"feature": "", "requests": "short", "spend": "currencyUSD", "share": "percent"},
        ).description(ESTIMATED),
    ]


def models() -> list[Panel]:
    latency_rows = days_and_hours(
        LATENCY,
        LATENCY_DAILY,
        "provider, model, duration_digest",
        f"{on_all(LATENCY_KEYS)} AND {filters(True, LATENCY_KEYS)}",
        [("toStartOfHour($__fromTime)", *up_to("$__toTime"))],
    )
    return [
        table(
            "Cost, tokens and latency per model",
            f"""SELECT provider, model, requests, spend, cost_per_1k_requests, input_tokens, output_tokens,
                  output_input_ratio, p50_latency, p95_latency
                FROM (
                  SELECT provider, model, {whole("sum(estimated_spans)")} AS requests,
                    toFloat64(sum(estimated_cost)) AS spend, spend / requests * 1000 AS cost_per_1k_requests,
                    {whole("sum(estimated_input_tokens)")} AS input_tokens,
                    {whole("sum(estimated_output_tokens)")} AS output_tokens,
                    output_tokens / greatest(input_tokens, 1) AS output_input_ratio
                  FROM {STATS} WHERE {HOURS} AND {HOURLY}
                  GROUP BY provider, model
                ) AS totals
                LEFT JOIN (
                  SELECT provider, model, quantileTDigestMerge(0.5)(duration_digest) / 1e9 AS p50_latency,
                    quantileTDigestMerge(0.95)(duration_digest) / 1e9 AS p95_latency
                  FROM ({latency_rows}) GROUP BY provider, model
                  UNION ALL
                  SELECT provider, model, quantileMerge(0.5)(duration_quantiles) / 1e9,
                    quantileMerge(0.95)(duration_quantiles) / 1e9
                  FROM {STATS} WHERE NOT {on_all(LATENCY_KEYS)} AND {HOURS} AND {HOURLY}
                  GROUP BY provider, model
                ) AS latency USING (provider, model)
                ORDER BY spend DESC""",
            {
                "provider": "",
                "model": "",
                "requests": "short",
                "spend": "currencyUSD",
                "cost_per_1k_requests": "currencyUSD",
                "input_tokens": "short",
                "output_tokens": "short",
                "output_input_ratio": "percentunit",
                "p50_latency": "s",
                "p95_latency": "s",
            },
            w=24,
        ).description(f"{ESTIMATED} Latencies are the stored calls'."),
        timeseries_panel(
            "Cost by model",
            per_interval(MODEL, "model", RAW_SPEND, SPEND, "model"),
            "currencyUSD",
            w=8,
        )
        .max_data_points(SERIES_POINTS)
        .description(ESTIMATED),
        timeseries_panel(
            "Tokens by model",
            per_interval(MODEL, "model", RAW_TOKENS, TOKENS, "model"),
            "short",
            w=8,
        )
        .max_data_points(SERIES_POINTS)
        .description(ESTIMATED),
        timeseries_panel(
            "Median latency by model",
            per_interval(
                MODEL,
                "model",
                "quantile(0.5)(duration_ns / 1e9) AS p50",
                "quantileMerge(0.5)(duration_quantiles) / 1e9 AS p50",
                "model",
                coarse=(LATENCY, LATENCY_KEYS, "quantileTDigestMerge(0.5)(duration_digest) / 1e9 AS p50"),
            ),
            "s",
            w=8,
        ).max_data_points(SERIES_POINTS),
        table(
            "Caching: share of input read from cache, and what it saved",
            f"""SELECT model, sum(input_tokens) AS input, sum(cache_read_tokens) AS cache_read,
                  cache_read / greatest(input, 1) AS cache_read_share,
                  toFloat64(sum(input_cost)) / greatest(sum(input_tokens - cache_read_tokens - cache_write_tokens), 1)
                    AS uncached_input_price,
                  greatest(cache_read * uncached_input_price - toFloat64(sum(cache_read_cost)), 0) AS saved
                FROM {STATS} WHERE {HOURS} AND {HOURLY}
                GROUP BY model ORDER BY saved DESC""",
            {
                "model": "",
                "input": "short",
                "cache_read": "short",
                "cache_read_share": "percentunit",
                "saved": "currencyUSD",
            },
        ).description(
            "Saved: cache-read tokens priced at the model's uncached input price (observed in the range), "
            "less what the cache reads cost. The stored calls' (not estimated where sampled)."
        ),
        compare_on_any_model(),
    ]


def attribution() -> list[Panel]:
    return [
        bars(
            "Spend by feature",
            per_interval("feature", "feature", RAW_SPEND, SPEND),
            "currencyUSD",
        )
        .max_data_points(SERIES_POINTS)
        .description(ESTIMATED),
        timeseries_panel(
            "Spend by service",
            per_interval("service_name", "service", RAW_SPEND, SPEND),
            "currencyUSD",
        )
        .max_data_points(SERIES_POINTS)
        .description(ESTIMATED),
        table(
            "Top users",
            f"""SELECT user_id AS user, {whole("sum(estimated_spans)")} AS requests,
                  uniqExact(session_id) AS sessions, toFloat64(sum(estimated_cost)) AS spend
                FROM ({sessions("user_id, session_id, estimated_spans, estimated_cost")}) WHERE user_id != ''
                GROUP BY user ORDER BY spend DESC LIMIT 50""",
            {"user": "", "requests": "short", "sessions": "short", "spend": "currencyUSD"},
            w=8,
        ).description(ESTIMATED),
        table(
            "Top sessions",
            f"""SELECT session_id AS session, any(user_id) AS user, {whole("sum(estimated_spans)")} AS requests,
                  toFloat64(sum(estimated_cost)) AS spend, min(first_call) AS first_call, max(last_call) AS last_call
                FROM ({sessions("user_id, session_id, estimated_spans, estimated_cost, first_call, last_call")})
                WHERE session_id != ''
                GROUP BY session ORDER BY spend DESC LIMIT 50""",
            {
                "session": "",
                "user": "",
                "requests": "short",
                "spend": "currencyUSD",
                "first_call": "dateTimeAsIso",
                "last_call": "dateTimeAsIso",
            },
            w=8,
        ).description(ESTIMATED),
        table(
            "Spend by the tag chosen in 'Tag'",
            f"""SELECT tag_value, {whole("sum(calls)")} AS requests, toFloat64(sum(cost)) AS spend FROM (
                  SELECT tag_value, sum(estimated_spans) AS calls, sum(estimated_cost) AS cost FROM {TAGS}
                  WHERE tag_key = ${{tag_key:sqlstring}} AND {HOURS} AND {HOURLY} GROUP BY tag_value
                  UNION ALL
                  SELECT '', sum(estimated_spans), sum(estimated_cost) FROM {STATS} WHERE {HOURS} AND {HOURLY}
                  UNION ALL
                  SELECT '', -sum(estimated_spans), -sum(estimated_cost) FROM {TAGS}
                  WHERE tag_key = ${{tag_key:sqlstring}} AND {HOURS} AND {HOURLY}
                ) GROUP BY tag_value HAVING requests > 0 ORDER BY spend DESC LIMIT 50""",
            {"tag_value": "", "requests": "short", "spend": "currencyUSD"},
            w=8,
        ).description(f"An empty tag_value: calls without that tag (all calls less those with it). {ESTIMATED}"),
    ]


def trends() -> list[Panel]:
    series = "concat(service_name, ' / ', operation, ' / ', feature)"
    return [
        bars(
            "Daily spend, last 30 days",
            f"""SELECT toStartOfDay(hour) AS time, toFloat64(sum(estimated_cost)) AS spend
                FROM genai_spans_hourly WHERE $__timeFilter(hour) AND {HOURLY}
                GROUP BY time ORDER BY time""",
            "currencyUSD",
            w=16,
        )
        .time_from("30d")
        .interval("1d")
        .description(ESTIMATED),
        stat(
            "Month to date, and projected to month end",
            f"""SELECT toFloat64(sumIf(estimated_cost, hour >= toStartOfMonth($__toTime))) AS month_to_date,
                  toFloat64(sumIf(estimated_cost, hour >= $__toTime - INTERVAL 7 DAY)) / 7 AS daily_rate_7d,
                  month_to_date + daily_rate_7d
                    * dateDiff('second', $__toTime, toDateTime(toStartOfMonth($__toTime) + INTERVAL 1 MONTH)) / 86400
                    AS projected_month_end
                FROM genai_spans_hourly
                WHERE hour >= least(toStartOfMonth($__toTime), $__toTime - INTERVAL 7 DAY) AND hour <= $__toTime
                  AND {HOURLY}""",
            ["month_to_date", "projected_month_end"],
            "currencyUSD",
            w=8,
            h=8,
        ).description(
            f"Projection: month to date plus the mean daily spend of the last 7 days for each day left. {ESTIMATED}"
        ),
        timeseries_panel(
            "Input tokens per call (median) by service / operation / feature",
            per_interval(
                series,
                "series",
                "quantile(0.5)(input_tokens) AS p50",
                "quantileMerge(0.5)(input_tokens_quantiles) AS p50",
                coarse=(INPUT_TOKENS, INPUT_TOKENS_KEYS, "quantileTDigestMerge(0.5)(input_tokens_digest) AS p50"),
            ),
            "short",
        ).max_data_points(TREND_POINTS),
        timeseries_panel(
            "Input tokens per call (p95) by service / operation / feature",
            per_interval(
                series,
                "series",
                "quantile(0.95)(input_tokens) AS p95",
                "quantileMerge(0.95)(input_tokens_quantiles) AS p95",
                coarse=(INPUT_TOKENS, INPUT_TOKENS_KEYS, "quantileTDigestMerge(0.95)(input_tokens_digest) AS p95"),
            ),
            "short",
        ).max_data_points(TREND_POINTS),
        table(
            "Prompt drift: median input tokens per call, last 7 days against the 7 before (growth of 50 % or more)",
            f"""SELECT service, operation, feature, median_before, median_last_7d, growth, calls_last_7d FROM (
                  {drift_branch(True)}
                  UNION ALL
                  {drift_branch(False)}
                ) WHERE calls_before >= 20 AND calls_last_7d >= 20 AND growth >= 50
                ORDER BY growth DESC""",
            {
                "service": "",
                "operation": "",
                "feature": "",
                "median_before": "short",
                "median_last_7d": "short",
                "growth": "percent",
                "calls_last_7d": "short",
            },
            w=24,
        ).description("Prompts that grew: check for history or retrieved context piling up in the prompt."),
    ]


def budgets() -> list[Panel]:
    latest = """FROM budget_status FINAL WHERE window_end >= $__fromTime AND window_start <= $__toTime
                ORDER BY budget, scope_value, window_start DESC LIMIT 1 BY budget, scope_value"""
    return [
        table(
            "Budgets: spend against limit, and forecast",
            f"""SELECT budget, scope_value, window_start, window_end, toFloat64(spend_usd) AS spend,
                      toFloat64(limit_usd) AS limit, percent, toFloat64(projected_usd) AS forecast, state, action
                    {latest}""",
            {
                "budget": "",
                "scope_value": "",
                "window_start": "dateTimeAsIso",
                "window_end": "dateTimeAsIso",
                "spend": "currencyUSD",
                "limit": "currencyUSD",
                "percent": "percent",
                "forecast": "currencyUSD",
                "state": "",
                "action": "",
            },
            w=16,
        ),
        percent_gauges(
            "Percent of limit spent",
            f"SELECT concat(budget, if(scope_value != '', concat(' / ', scope_value), '')) AS name, percent {latest}",
        ),
        bars(
            "Budget threshold crossings",
            """SELECT toStartOfInterval(created_at, INTERVAL $__interval_s second) AS time, budget, count() AS crossings
               FROM budget_events FINAL WHERE $__timeFilter(created_at)
               GROUP BY time, budget ORDER BY time, budget""",
            "short",
            w=24,
        ),
        table(
            "Budget events",
            """SELECT created_at AS time, budget, scope_value, threshold_percent, toFloat64(spend_usd) AS spend,
                 toFloat64(limit_usd) AS limit, action, collector_id
               FROM budget_events FINAL WHERE $__timeFilter(created_at) ORDER BY time DESC LIMIT 500""",
            {
                "time": "dateTimeAsIso",
                "budget": "",
                "scope_value": "",
                "threshold_percent": "percent",
                "spend": "currencyUSD",
                "limit": "currencyUSD",
                "action": "",
                "collector_id": "",
            },
            w=24,
        ),
        spend_forecast(),
    ]


def ingestion() -> list[Panel]:
    return [
        timeseries_panel(
            "Rows stored per minute",
            per_stored_interval(
                "count() * 60 / $__interval_s AS rows_per_minute", "sum(spans) * 60 / $__interval_s AS rows_per_minute"
            ),
            "short",
        ).max_data_points(SERIES_POINTS),
        timeseries_panel(
            "Lag from span start to stored",
            per_stored_interval(
                """quantile(0.5)(dateDiff('millisecond', timestamp, ingested_at) / 1000) AS p50,
                  quantile(0.99)(dateDiff('millisecond', timestamp, ingested_at) / 1000) AS p99,
                  max(dateDiff('millisecond', timestamp, ingested_at) / 1000) AS max""",
                """quantileMerge(0.5)(lag_ms_quantiles) / 1000 AS p50,
                  quantileMerge(0.99)(lag_ms_quantiles) / 1000 AS p99, max(max_lag_ms) / 1000 AS max""",
                """quantileTDigestMerge(0.5)(lag_ms_digest) / 1000 AS p50,
                  quantileTDigestMerge(0.99)(lag_ms_digest) / 1000 AS p99, max(max_lag_ms) / 1000 AS max""",
            ),
            "s",
        ).max_data_points(SERIES_POINTS),
        bars(
            "Rows set aside (refused by ClickHouse)",
            """SELECT toStartOfInterval(rejected_at, INTERVAL $__interval_s second) AS time, sum(rows) AS rows
                FROM ingest_rejections WHERE $__timeFilter(rejected_at)
                GROUP BY time ORDER BY time""",
            "short",
        ),
        table(
            "Set-aside rows (spanmeter rejected list / retry)",
            """SELECT rejected_at, letter_id, rows, span_ids, error FROM ingest_rejections
                WHERE $__timeFilter(rejected_at) ORDER BY rejected_at DESC LIMIT 100""",
            {"rejected_at": "dateTimeAsIso", "letter_id": "", "rows": "short", "span_ids": "", "error": ""},
        ),
        *(
            pie(
                f"Rows per {column.replace('_', ' ')}",
                f"""SELECT {column}, sum(spans) AS rows FROM {INGESTED}
                WHERE {HOURS} AND {HOURLY} GROUP BY {column} ORDER BY rows DESC""",
                "rows",
                w=12,
            )
            for column in ("convention", "price_status")
        ),
    ]


def calls() -> list[Panel]:
    """The latest calls, one row each (as `spanmeter calls`), each trace id a link into the trace backend."""
    panel = table(
        "Latest calls",
        f"""SELECT timestamp AS time, service_name AS service, feature, user_id AS user, {MODEL} AS model,
              input_tokens, output_tokens, cache_read_tokens + cache_write_tokens AS cache_tokens,
              if(price_status = 'unpriced', NULL, toFloat64(total_cost)) AS cost,
              duration_ns / 1e9 AS duration,
              if(status_code = 'ERROR' OR error_type != '', if(error_type != '', error_type, 'error'), 'ok') AS status,
              trace_id, replaceAll(${{trace_url:sqlstring}}, '{{trace_id}}', trace_id) AS trace_link
            FROM genai_spans WHERE $__timeFilter(timestamp) AND {RAW} AND timestamp >= ({LATEST_HOURS})
            ORDER BY timestamp DESC, span_id DESC LIMIT 500""",
        {
            "time": "dateTimeAsIso",
            "service": "",
            "feature": "",
            "user": "",
            "model": "",
            "input_tokens": "short",
            "output_tokens": "short",
            "cache_tokens": "short",
            "cost": "currencyUSD",
            "duration": "s",
            "status": "",
            "trace_id": "",
            "trace_link": "",
        },
        w=24,
        h=20,
    ).description(
        "The 500 latest calls in the range. An empty cost: a model with no known price (unpriced), "
        "not $0. A trace id opens the trace where the dashboard's trace_url variable points."
    )
    panel.override_by_name(
        "cost",
        [
            DynamicConfigValue(id_val="decimals", value=6),
            DynamicConfigValue(
                id_val="mappings",
                value=[
                    SpecialValueMap(
                        DashboardSpecialValueMapOptions(
                            match=SpecialValueMatch.NULL, result=ValueMappingResult(text="unpriced")
                        )
                    )
                ],
            ),
        ],
    )
    # A field data link (Grafana's DataLink: title, url, targetBlank), which the SDK's v1 dashboard models lack.
    open_trace = {"title": "Open trace", "url": "${__data.fields.trace_link}", "targetBlank": True}
    panel.override_by_name("trace_id", [DynamicConfigValue(id_val="links", value=[open_trace])])
    panel.override_by_name("trace_link", [DynamicConfigValue(id_val="custom.hidden", value=True)])
    return [panel]


def findings() -> list[Panel]:
    """What to change to spend less, from the newest stored run, sorted by the savings a month."""
    return [
        stat(
            "Savings a month",
            f"SELECT toFloat64(sum(savings_usd_per_month)) AS savings, count() AS findings FROM findings "
            f"WHERE {LATEST_FINDINGS}",
            ["savings", "findings"],
            "currencyUSD",
            w=8,
        ),
        pie(
            "Savings by kind",
            f"""SELECT kind, toFloat64(sum(savings_usd_per_month)) AS savings FROM findings WHERE {LATEST_FINDINGS}
                GROUP BY kind ORDER BY savings DESC""",
            "savings",
            w=16,
            h=4,
        ),
        table(
            "Findings by savings",
            f"""SELECT toFloat64(savings_usd_per_month) AS savings_per_month, kind, scope_text AS scope, action,
                  evidence, arrayStringConcat(trace_ids, ' ') AS trace_ids, period_start, period_end, run_at
                FROM findings WHERE {LATEST_FINDINGS}
                ORDER BY savings_usd_per_month DESC, kind, scope LIMIT 200""",
            {
                "savings_per_month": "currencyUSD",
                "kind": "",
                "scope": "",
                "action": "",
                "evidence": "",
                "trace_ids": "",
                "period_start": "",
                "period_end": "",
                "run_at": "",
            },
            w=24,
            h=14,
        ).description("Estimated savings in USD a month; see README, Findings, for each kind's rule and formula."),
    ]


def compare_on_any_model() -> Panel:
    """The range's usage priced on any model genai-prices knows (model_prices), hour by hour at that hour's price."""
    return table(
        "The same usage on the model chosen in 'Compare with'",
        f"""SELECT usage.model AS model, toFloat64(sum(usage.spend)) AS spend,
              toFloat64(sum(
                (usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens) * prices.input_mtok
                + usage.cache_read_tokens * prices.cache_read_mtok + usage.cache_write_tokens * prices.cache_write_mtok
                + (usage.output_tokens - usage.reasoning_tokens) * prices.output_mtok
                + usage.reasoning_tokens * ifNull(prices.reasoning_mtok, prices.output_mtok)
              )) / 1e6 AS on_compare_model,
              on_compare_model - spend AS difference
            FROM (
              SELECT model, hour, toUInt32(toUnixTimestamp(hour) % 86400) * 1000 AS day_ms,
                sum(estimated_cost) AS spend, sum(estimated_input_tokens) AS input_tokens,
                sum(estimated_output_tokens) AS output_tokens, sum(estimated_cache_read_tokens) AS cache_read_tokens,
                sum(estimated_cache_write_tokens) AS cache_write_tokens,
                sum(estimated_reasoning_tokens) AS reasoning_tokens
              FROM genai_spans_hourly WHERE {HOURS} AND {HOURLY}
              GROUP BY model, hour
            ) AS usage
            CROSS JOIN (
              SELECT * FROM model_prices FINAL
              WHERE version = {PRICES_VERSION} AND concat(provider, ':', model) = ${{compare_model:sqlstring}}
            ) AS prices
            WHERE usage.hour >= prices.valid_from AND usage.hour < prices.valid_to
              AND usage.day_ms >= prices.day_from_ms AND usage.day_ms < prices.day_to_ms
            GROUP BY model ORDER BY spend DESC""",
        {"model": "", "spend": "currencyUSD", "on_compare_model": "currencyUSD", "difference": "currencyUSD"},
        w=24,
    ).description(
        "Each hour's tokens by kind (cache reads and writes, reasoning) at the chosen model's prices "
        "in force that hour, from genai-prices (the model_prices table). Long-context tiers are left out here (the "
        f"rollup has no per-call input); `spanmeter report --what-if MODEL` prices each call exactly. {ESTIMATED}"
    )


def spend_forecast() -> Panel:
    """This month's daily spend, and to its end a forecast with a band, in SQL: weekday factors (a weekday's mean
    over the mean day, from 14 days of history on), a least-squares line through the spend divided by them, and a
    band of 1.645 residual standard deviations (90 % of days, if residuals are normal). The daily series is read
    once into arrays and fitted with array functions (a CTE would be read again at each use). `spanmeter forecast`
    fits the same shape robustly and bands the month's total."""
    return timeseries_panel(
        "Daily spend this month, and forecast to its end",
        f"""WITH
              toDate($__toTime) AS today,
              toStartOfMonth(today) AS month_start,
              addMonths(month_start, 1) AS month_stop,
              (
                SELECT (groupArray(day), groupArray(spend)) FROM (
                  SELECT toDate(hour) AS day, toFloat64(sum(estimated_cost)) AS spend FROM genai_spans_hourly
                  WHERE hour >= toDateTime(least(month_start, today - 56)) AND hour < toDateTime(month_stop)
                    AND {HOURLY}
                  GROUP BY day)
              ) AS daily,
              greatest(arrayMin(arrayPushBack(daily.1, today)), today - 56) AS first_day,
              arrayMap(k -> first_day + k, range(toUInt32(today - first_day))) AS days,
              arrayMap(d -> arraySum(arrayMap((x, s) -> if(x = d, s, 0), daily.1, daily.2)), days) AS y,
              arrayMap(d -> toDayOfWeek(d), days) AS weekdays,
              arrayMap(d -> toFloat64(toInt32(d - today)), days) AS t,
              length(days) AS n,
              arrayMap(w -> if(n >= 14,
                  arrayAvg(arrayFilter((v, x) -> x = w, y, weekdays)) / greatest(arrayAvg(y), 1e-12), 1),
                range(1, 8)) AS factors,
              arrayMap((v, w) -> v / greatest(factors[w], 1e-9), y, weekdays) AS adjusted,
              arrayReduce('simpleLinearRegression', t, adjusted) AS line,
              sqrt(arraySum(arrayMap((v, x, w) -> pow(v - greatest(line.2 + line.1 * x, 0) * factors[w], 2),
                y, t, weekdays)) / greatest(n - 2, 1)) AS sigma
            SELECT toDateTime(day) AS time,
              if(day <= today, arraySum(arrayMap((x, s) -> if(x = day, s, 0), daily.1, daily.2)), NULL) AS actual,
              if(day >= today AND n >= 2,
                greatest(line.2 + line.1 * toFloat64(toInt32(day - today)), 0) * factors[toDayOfWeek(day)],
                NULL) AS forecast,
              greatest(forecast - 1.645 * sigma, 0) AS low,
              forecast + 1.645 * sigma AS high
            FROM (SELECT month_start + number AS day FROM numbers(toUInt32(month_stop - month_start)))
            ORDER BY time""",
        "currencyUSD",
        w=24,
    ).description(
        "Actual spend per UTC day of the month that holds the range's end, then the expected day's "
        "spend with a band of 90 % of days. Weekday pattern from two weeks of history on; the month's total and its "
        f"band: `spanmeter forecast`. {ESTIMATED}"
    )


Variable = cogbuilder.Builder[dashboard_models.VariableModel]

# uid, title, file, panels, the variables it adds to the dimensions', default range
DASHBOARDS_SPEC: list[tuple[str, str, str, Callable[[], list[Panel]], list[Callable[[], Variable]], str]] = [
    ("spanmeter-overview", "spanmeter / Overview", "overview.json", overview, [], "now-24h"),
    ("spanmeter-models", "spanmeter / Models", "models.json", models, [compare_model], "now-7d"),
    ("spanmeter-attribution", "spanmeter / Attribution", "attribution.json", attribution, [tag_key], "now-7d"),
    ("spanmeter-trends", "spanmeter / Trends and prompt drift", "trends.json", trends, [], "now-14d"),
    ("spanmeter-budgets", "spanmeter / Budgets", "budgets.json", budgets, [], "now-30d"),
    ("spanmeter-ingestion", "spanmeter / Ingestion", "ingestion.json", ingestion, [], "now-6h"),
    ("spanmeter-calls", "spanmeter / Calls", "calls.json", calls, [trace_url], "now-1h"),
    ("spanmeter-findings", "spanmeter / Findings", "findings.json", findings, [], "now-30d"),
]


def layout(panels: list[Panel]) -> list[Panel]:
    """Numbers the panels and places them left to right, wrapping at Grafana's 24 columns before a panel that
    would cross them (the SDK's own placement wraps only after a row is full)."""
    x = y = row_height = 0
    for number, panel in enumerate(panels, start=1):
        grid = panel.build().grid_pos or dashboard_models.GridPos()
        if x + grid.w > 24:
            x, y, row_height = 0, y + row_height, 0
        panel.id(number).grid_pos(dashboard_models.GridPos(h=grid.h, w=grid.w, x=x, y=y))
        x += grid.w
        row_height = max(row_height, grid.h)
    return panels


# The dashboard schema version Grafana 12.2 writes; an older one is migrated at every load. Its step to 42
# (apps/dashboard/pkg/migration/schemaversion/v42.go) hides from tooltips the fields hidden from the visualization,
# which these dashboards do not do. The SDK writes 41 and has no setter: set on the built model.
SCHEMA_VERSION = 42


def dashboard(
    uid: str, title: str, panels: list[Panel], extra_variables: list[Variable], since: str
) -> dashboard_models.Dashboard:
    """A dashboard of `panels` with the dimension variables, `extra_variables` after them, linking to the other
    spanmeter dashboards (with the time range and variables)."""
    board = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .tags(["spanmeter", "llm", "cost"])
        .timezone("utc")
        .editable()
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .version(1)
        .refresh("1m")
        .time(since, "now")
        .link(
            dashboard_builders.DashboardLink("spanmeter")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags(["spanmeter"])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
        .variables([*dimension_variables(), *extra_variables])
        .annotations([])
    )
    for panel in layout(panels):
        board.with_panel(panel)
    built = board.build()
    built.schema_version = SCHEMA_VERSION
    return built


def dashboards() -> dict[str, dashboard_models.Dashboard]:
    """Every dashboard, by its file name."""
    return {
        name: dashboard(uid, title, build(), [variable() for variable in extra], since)
        for uid, title, name, build, extra, since in DASHBOARDS_SPEC
    }
