"""Writes spanmeter's Grafana dashboards (grafana/dashboards/*.json) and alert rules
(grafana/provisioning/alerting/rules.yaml) from the panel and rule definitions below.

Edit this file, then run `python grafana/build.py`; tests/grafana checks the committed files are its output.
Every query is ClickHouse SQL in the style of grafana/clickhouse-datasource's own dashboards
(src/dashboards/otel-service-dashboard.json): the plugin's macros for time, `$__conditionalAll` for
multi-value variables, `GROUP BY time ORDER BY time` for time series.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
RULES_FILE = HERE / "provisioning" / "alerting" / "rules.yaml"

PLUGIN = "grafana-clickhouse-datasource"
PLUGIN_VERSION = "4.20.0"
DATASOURCE_UID = "spanmeter-clickhouse"
DATASOURCE_NAME = "spanmeter ClickHouse"
DS = {"type": PLUGIN, "uid": "${datasource}"}
FORMAT_TIMESERIES, FORMAT_TABLE = 0, 1

# The model that was priced: what answered, else what was asked for (the rollup's `model`).
MODEL = "if(response_model != '', response_model, request_model)"

# name, label, column in genai_spans, column in genai_spans_hourly
DIMENSIONS = [
    ("project", "Project", "project", "project"),
    ("service", "Service", "service_name", "service_name"),
    ("environment", "Environment", "environment", "environment"),
    ("provider", "Provider", "provider", "provider"),
    ("model", "Model", MODEL, "model"),
    ("feature", "Feature", "feature", "feature"),
]


def filters(rollup: bool = False, only: tuple[str, ...] | None = None) -> str:
    """`$__conditionalAll` per dashboard variable: no condition at all when All is selected."""
    parts = []
    for name, _, raw_column, rollup_column in DIMENSIONS:
        if only is None or name in only:
            column = rollup_column if rollup else raw_column
            parts.append(f"$__conditionalAll({column} IN (${{{name}}}), ${name})")
    return " AND ".join(parts)


RAW = filters()
HOURLY = filters(rollup=True)


def days_and_hours(hourly: str, daily: str, columns: str, where: str, segments: list[tuple[str, str, str]]) -> str:
    """The rows of two rollups with the same `columns` (the daily one's `day` read as `hour`) that cover each
    segment (start: an hour; condition on `hour` for its end; the end of its last whole UTC day) once: its whole
    days from `daily`, the hours either side from `hourly`."""
    days, hours = [], []
    for start, end, days_end in segments:
        first = f"toStartOfDay({start} + INTERVAL 23 HOUR, 'UTC')"
        days.append(f"(day >= {first} AND day < {days_end})")
        hours.append(f"(hour >= {start} AND {end} AND (hour < {first} OR hour >= greatest({days_end}, {first})))")
    return f"""SELECT day AS hour, {columns} FROM {daily} WHERE {where} AND ({" OR ".join(days)})
        UNION ALL
        SELECT hour, {columns} FROM {hourly} WHERE {where} AND ({" OR ".join(hours)})"""


def up_to(end: str) -> tuple[str, str]:
    """A segment's end when it ends at `end`, included."""
    return f"hour <= {end}", f"toStartOfDay({end}, 'UTC')"


def before_hour(hour: str) -> tuple[str, str]:
    """A segment's end when it ends before `hour`, an hour's start."""
    return f"hour < {hour}", f"toStartOfDay({hour}, 'UTC')"


def on_all(keys: tuple[str, ...]) -> str:
    """True when every variable but `keys` is on All: `$__conditionalAll(0, $v)` is `1=1` on All, else `0`, so
    the branch reading a rollup without those columns is constant true or false, and the other reads nothing."""
    rest = [name for name, *_ in DIMENSIONS if name not in keys]
    return "(" + " AND ".join(f"$__conditionalAll(0, ${name})" for name in rest) + ")"


# The hourly rollups (clickhouse/schema/012-015) keep sums and mergeable states (quantiles) per hour: tables and
# stats read them in whole hours, from the start of the hour the range starts in, so they cost the same for a
# month as for a day. Time series read them when their buckets are whole hours, the raw rows otherwise.
STATS = "genai_spans_hourly_stats"
SESSIONS = "genai_sessions_hourly"
TAGS = "genai_tags_hourly"
INGESTED = "genai_spans_ingested_hourly"
HOURS = "hour >= toStartOfHour($__fromTime) AND hour <= $__toTime"
# Rollups with fewer key columns (023-026), read when the variables for the columns they lack are all on All; the
# quantile ones keep t-digests, bounded in size, so a month of them merges fast (approximate, as `quantile` is).
LATENCY = "genai_latency_hourly"  # project, environment, provider, model
INPUT_TOKENS = "genai_input_tokens_hourly"  # project, environment, service, operation, feature
LAG = "genai_lag_hourly"  # project, environment; by the hour stored
SESSIONS_DAILY = "genai_sessions_daily"  # project, user, session; by the day
LATENCY_DAILY = "genai_latency_daily"
INPUT_TOKENS_DAILY = "genai_input_tokens_daily"
# The same as LATENCY and INPUT_TOKENS by blocks of 3 hours (028, 029): what a series whose buckets are multiples of
# 3 hours reads for its whole blocks.
LATENCY_3H = "genai_latency_3h"
INPUT_TOKENS_3H = "genai_input_tokens_3h"
LATENCY_KEYS = ("project", "environment", "provider", "model")
INPUT_TOKENS_KEYS = ("project", "environment", "service", "feature")
LAG_KEYS = ("project", "environment")
SESSIONS_DAILY_KEYS = ("project",)
# Points a time series asks for: its bucket is the range / this, rounded by Grafana, so a range of about a week
# or more gets buckets of whole hours (from the rollups) and a day gets 10-minute buckets (from the rows).
SERIES_POINTS = 100
SPEND = "toFloat64(sum(total_cost)) AS spend"
TOKENS = "sum(input_tokens) AS input, sum(output_tokens) AS output"


# --- panels -----------------------------------------------------------------------------------------------------


def target(sql: str, fmt: int) -> dict[str, Any]:
    return {
        "refId": "A",
        "datasource": DS,
        "editorType": "sql",
        "format": fmt,
        "queryType": "timeseries" if fmt == FORMAT_TIMESERIES else "table",
        "pluginVersion": PLUGIN_VERSION,
        "rawSql": " ".join(sql.split()),
    }


def timeseries(title: str, sql: str, unit: str, w: int = 12, h: int = 8, **extra: Any) -> dict[str, Any]:
    panel = {
        "type": "timeseries",
        "title": title,
        "targets": [target(sql, FORMAT_TIMESERIES)],
        "fieldConfig": {
            "defaults": {"unit": unit, "custom": {"drawStyle": "line", "fillOpacity": 10}},
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["sum", "mean"]}},
        "w": w,
        "h": h,
    }
    panel.update(extra)
    return panel


def bars(title: str, sql: str, unit: str, w: int = 12, h: int = 8, **extra: Any) -> dict[str, Any]:
    panel = timeseries(title, sql, unit, w, h, **extra)
    panel["fieldConfig"]["defaults"]["custom"].update(
        {"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal"}}
    )
    return panel


def table(title: str, sql: str, fields: dict[str, str], w: int = 12, h: int = 8, **extra: Any) -> dict[str, Any]:
    """`fields`: every column the table shows, in order, with its unit."""
    panel = {
        "type": "table",
        "title": title,
        "targets": [target(sql, FORMAT_TABLE)],
        "fieldConfig": {
            "defaults": {},
            "overrides": [
                {"matcher": {"id": "byName", "options": name}, "properties": [{"id": "unit", "value": unit}]}
                for name, unit in fields.items()
                if unit
            ],
        },
        "options": {"showHeader": True, "cellHeight": "sm"},
        "transformations": [{"id": "organize", "options": {"indexByName": {name: i for i, name in enumerate(fields)}}}],
        "w": w,
        "h": h,
    }
    panel.update(extra)
    return panel


def stat(title: str, sql: str, fields: list[str], unit: str, w: int = 6, h: int = 4, **extra: Any) -> dict[str, Any]:
    """A stat of the first row: `fields` are the values it shows."""
    panel = {
        "type": "stat",
        "title": title,
        "targets": [target(sql, FORMAT_TABLE)],
        "fieldConfig": {
            "defaults": {"unit": unit, "decimals": 2},
            "overrides": [
                {
                    "matcher": {"id": "byName", "options": "change_percent"},
                    "properties": [{"id": "unit", "value": "percent"}],
                }
            ],
        },
        "options": {
            "reduceOptions": {"values": False, "calcs": ["lastNotNull"], "fields": "/^(" + "|".join(fields) + ")$/"},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "value_and_name",
        },
        "w": w,
        "h": h,
    }
    panel.update(extra)
    return panel


def pie(title: str, sql: str, value: str, w: int = 8, h: int = 8) -> dict[str, Any]:
    return {
        "type": "piechart",
        "title": title,
        "targets": [target(sql, FORMAT_TABLE)],
        "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
        "options": {
            "reduceOptions": {"values": True, "calcs": ["lastNotNull"], "fields": f"/^({value})$/"},
            "pieType": "donut",
            "legend": {"displayMode": "table", "placement": "right", "values": ["percent"]},
        },
        "w": w,
        "h": h,
    }


COMPARED_HOURS = "hour >= toStartOfHour($__fromTime - ($__toTime - $__fromTime)) AND hour <= $__toTime"


def compare_stat(
    title: str,
    name: str,
    current: str,
    previous: str,
    unit: str,
    coarse: tuple[tuple[str, str, str], tuple[str, ...], str, str] | None = None,
) -> dict[str, Any]:
    """A value for the dashboard's range beside the same value for the range of equal length before it. `coarse`
    ((hourly, daily, columns), their key variables, current, previous): smaller rollups read instead when the
    other variables are on All (each branch's HAVING keeps its one row only when it is the branch taken)."""
    values = f"""{{current}} AS {name}, {{previous}} AS previous_{name},
          if(previous_{name} > 0, ({name} - previous_{name}) / previous_{name} * 100, NULL) AS change_percent"""
    sql = f"SELECT {values.format(current=current, previous=previous)} FROM {STATS} WHERE {COMPARED_HOURS} AND {HOURLY}"
    if coarse is not None:
        table, keys, coarse_current, coarse_previous = coarse
        hourly, daily, columns = table
        start, split = "toStartOfHour($__fromTime - ($__toTime - $__fromTime))", "toStartOfHour($__fromTime)"
        rows = days_and_hours(
            hourly,
            daily,
            columns,
            f"{on_all(keys)} AND {filters(True, keys)}",
            [(start, *before_hour(split)), (split, *up_to("$__toTime"))],
        )
        sql = f"""SELECT {values.format(current=coarse_current, previous=coarse_previous)} FROM ({rows})
            HAVING {on_all(keys)}
            UNION ALL
            {sql.replace(" WHERE ", f" WHERE NOT {on_all(keys)} AND ", 1)} HAVING NOT {on_all(keys)}"""
    return stat(title, sql, [name, "change_percent"], unit, description="Against the previous range of equal length.")


def in_range(expr: str) -> str:
    return f"{expr}, hour >= toStartOfHour($__fromTime)"


def before_range(expr: str) -> str:
    return f"{expr}, hour < toStartOfHour($__fromTime)"


# The whole 3-hour blocks of a series' range (from the first that starts at or after the hour the range starts in,
# to the one `$__toTime` is in, excluded), and whether its buckets are whole multiples of them.
FIRST_BLOCK = "toStartOfInterval(toStartOfHour($__fromTime) + INTERVAL 2 HOUR, INTERVAL 10800 second)"
LAST_BLOCK = "toStartOfInterval($__toTime, INTERVAL 10800 second)"
IN_BLOCKS = "$__interval_s % 10800 = 0"


def blocks_and_hours(hourly: str, blocks: str, where: str) -> str:
    """The rows of `hourly` for the range's hours, with its whole 3-hour blocks read from `blocks` (the same
    columns, by blocks) when the buckets are multiples of 3 hours."""
    whole = f"{IN_BLOCKS} AND hour >= {FIRST_BLOCK} AND hour < {LAST_BLOCK}"
    return f"""SELECT * FROM {blocks} WHERE {where} AND {whole}
        UNION ALL
        SELECT * FROM {hourly} WHERE {where} AND {HOURS} AND NOT ({whole})"""


def per_interval(
    key: str,
    alias: str,
    values: str,
    rollup_values: str,
    rollup_key: str | None = None,
    rollup: str = STATS,
    time: str = "timestamp",
    coarse: tuple[str, tuple[str, ...], str] | tuple[str, tuple[str, ...], str, str] | None = None,
) -> str:
    """A time series per value of `key`, in buckets of the panel's interval: from the hourly `rollup` when the
    buckets are whole hours, else from the raw rows (the branch not taken reads nothing: its condition is
    constant). `time` is the raw rows' time column the rollup's `hour` stands for. `coarse` (table, its key
    variables, values[, the table by 3-hour blocks]): a smaller hourly rollup read instead of `rollup` when the
    other variables are on All; its whole blocks from the 3-hour one when the buckets are multiples of 3
    hours."""  # fmt: skip
    grouped = f"toStartOfInterval(hour, INTERVAL $__interval_s second) AS time, {rollup_key or key} AS {alias}"
    fine = "1 = 1"
    branches = ""
    if coarse is not None:
        table, keys, coarse_values, *blocks = coarse
        fine = f"NOT {on_all(keys)}"
        where = f"$__interval_s >= 3600 AND {on_all(keys)} AND {filters(True, keys)}"
        rows = (
            blocks_and_hours(table, blocks[0], where) if blocks else f"SELECT * FROM {table} WHERE {where} AND {HOURS}"
        )
        branches = f"""SELECT {grouped}, {coarse_values} FROM ({rows})
        GROUP BY time, {alias}
        UNION ALL"""
    return f"""SELECT * FROM (
        {branches}
        SELECT {grouped}, {rollup_values}
        FROM {rollup} WHERE $__interval_s >= 3600 AND {fine} AND {HOURS} AND {HOURLY}
        GROUP BY time, {alias}
        UNION ALL
        SELECT toStartOfInterval({time}, INTERVAL $__interval_s second) AS time, {key} AS {alias}, {values}
        FROM genai_spans WHERE $__interval_s < 3600 AND $__timeFilter({time}) AND {RAW}
        GROUP BY time, {alias}
        ) ORDER BY time, {alias}"""


# --- variables -----------------------------------------------------------------------------------------------------


def datasource_variable() -> dict[str, Any]:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": PLUGIN,
        "current": {"text": DATASOURCE_NAME, "value": DATASOURCE_UID},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    }


def query_variable(name: str, label: str, sql: str, multi: bool = True) -> dict[str, Any]:
    sql = " ".join(sql.split())
    variable = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "query": sql,
        "definition": sql,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {"text": ["All"], "value": ["$__all"]} if multi else {},
        "hide": 0,
        "options": [],
    }
    return variable


def dimension_variables() -> list[dict[str, Any]]:
    """Each variable lists the values seen in the range (from the hourly rollup), narrowed by the ones before it."""
    variables = [datasource_variable()]
    before: list[str] = []
    for name, label, _, column in DIMENSIONS:
        where = " AND ".join(
            ["$__timeFilter(hour)", filters(rollup=True, only=tuple(before))] if before else ["$__timeFilter(hour)"]
        )
        variables.append(
            query_variable(
                name, label, f"SELECT DISTINCT {column} FROM genai_spans_hourly WHERE {where} ORDER BY {column}"
            )
        )
        before.append(name)
    return variables


# --- dashboards -----------------------------------------------------------------------------------------------------


def overview() -> list[dict[str, Any]]:
    unpriced_filter = filters(rollup=True, only=("project", "service", "environment"))
    return [
        stat(
            "Calls that could not be priced",
            f"""SELECT sum(spans) AS unpriced_calls, uniqExact(model) AS unpriced_models FROM {STATS}
                WHERE {HOURS} AND price_status = 'unpriced' AND {unpriced_filter}""",
            ["unpriced_calls", "unpriced_models"],
            "short",
            w=8,
            description="Always shown, whatever model, provider or feature is selected: their cost is unknown, "
            "not zero. Add a price override in pipelines.yaml, then run `spanmeter reprice`.",
            fieldConfig={
                "defaults": {
                    "unit": "short",
                    "thresholds": {
                        "mode": "absolute",
                        "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                    },
                },
                "overrides": [],
            },
        ),
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
            f"toFloat64(sumIf({in_range('total_cost')}))",
            f"toFloat64(sumIf({before_range('total_cost')}))",
            "currencyUSD",
        ),
        compare_stat("Requests", "requests", f"sumIf({in_range('spans')})", f"sumIf({before_range('spans')})", "short"),
        compare_stat(
            "Tokens",
            "tokens",
            f"sumIf({in_range('input_tokens + output_tokens')})",
            f"sumIf({before_range('input_tokens + output_tokens')})",
            "short",
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
            per_interval(MODEL, "model", SPEND, SPEND, "model"),
            "currencyUSD",
            w=24,
            maxDataPoints=SERIES_POINTS,
        ),
        table(
            "Top services",
            f"""SELECT service_name AS service, sum(spans) AS requests, toFloat64(sum(total_cost)) AS spend,
                  spend / greatest(sum(spend) OVER (), 1e-12) * 100 AS share
                FROM {STATS} WHERE {HOURS} AND {HOURLY}
                GROUP BY service ORDER BY spend DESC LIMIT 20""",
            {"service": "", "requests": "short", "spend": "currencyUSD", "share": "percent"},
        ),
        table(
            "Top features",
            f"""SELECT feature, sum(spans) AS requests, toFloat64(sum(total_cost)) AS spend,
                  spend / greatest(sum(spend) OVER (), 1e-12) * 100 AS share
                FROM {STATS} WHERE {HOURS} AND {HOURLY}
                GROUP BY feature ORDER BY spend DESC LIMIT 20""",
            {"feature": "", "requests": "short", "spend": "currencyUSD", "share": "percent"},
        ),
    ]


def models() -> list[dict[str, Any]]:
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
                  SELECT provider, model, sum(spans) AS requests, toFloat64(sum(total_cost)) AS spend,
                    spend / requests * 1000 AS cost_per_1k_requests,
                    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
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
        ),
        timeseries(
            "Cost by model",
            per_interval(MODEL, "model", SPEND, SPEND, "model"),
            "currencyUSD",
            w=8,
            maxDataPoints=SERIES_POINTS,
        ),
        timeseries(
            "Tokens by model",
            per_interval(MODEL, "model", TOKENS, TOKENS, "model"),
            "short",
            w=8,
            maxDataPoints=SERIES_POINTS,
        ),
        timeseries(
            "Median latency by model",
            per_interval(
                MODEL,
                "model",
                "quantile(0.5)(duration_ns / 1e9) AS p50",
                "quantileMerge(0.5)(duration_quantiles) / 1e9 AS p50",
                "model",
                coarse=(LATENCY, LATENCY_KEYS, "quantileTDigestMerge(0.5)(duration_digest) / 1e9 AS p50", LATENCY_3H),
            ),
            "s",
            w=8,
            maxDataPoints=SERIES_POINTS,
        ),
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
            description="Saved: cache-read tokens priced at the model's uncached input price (observed in the range), "
            "less what the cache reads cost.",
        ),
        compare_on_any_model(),
    ]


# The whole UTC days of the range (from the first that starts at or after the hour the range starts in, to the
# one `$__toTime` is in, excluded): read from the daily rollup, the hours either side from the hourly one.
FIRST_DAY = "toStartOfDay(toStartOfHour($__fromTime) + INTERVAL 23 HOUR, 'UTC')"
LAST_DAY = "toStartOfDay($__toTime, 'UTC')"


def sessions(columns: str) -> str:
    """The per-session rows of the range: whole days from genai_sessions_daily when only the project may be
    chosen, every other hour (all of them, when another variable is chosen) from genai_sessions_hourly."""
    daily = on_all(SESSIONS_DAILY_KEYS)
    return f"""SELECT {columns} FROM {SESSIONS_DAILY}
        WHERE {daily} AND day >= {FIRST_DAY} AND day < {LAST_DAY} AND {filters(True, SESSIONS_DAILY_KEYS)}
        UNION ALL
        SELECT {columns} FROM {SESSIONS}
        WHERE {HOURS} AND NOT ({daily} AND hour >= {FIRST_DAY} AND hour < {LAST_DAY}) AND {HOURLY}"""


def attribution() -> list[dict[str, Any]]:
    return [
        bars(
            "Spend by feature",
            per_interval("feature", "feature", SPEND, SPEND),
            "currencyUSD",
            maxDataPoints=SERIES_POINTS,
        ),
        timeseries(
            "Spend by service",
            per_interval("service_name", "service", SPEND, SPEND),
            "currencyUSD",
            maxDataPoints=SERIES_POINTS,
        ),
        table(
            "Top users",
            f"""SELECT user_id AS user, sum(spans) AS requests, uniqExact(session_id) AS sessions,
                  toFloat64(sum(total_cost)) AS spend
                FROM ({sessions("user_id, session_id, spans, total_cost")}) WHERE user_id != ''
                GROUP BY user ORDER BY spend DESC LIMIT 50""",
            {"user": "", "requests": "short", "sessions": "short", "spend": "currencyUSD"},
            w=8,
        ),
        table(
            "Top sessions",
            f"""SELECT session_id AS session, any(user_id) AS user, sum(spans) AS requests,
                  toFloat64(sum(total_cost)) AS spend, min(first_call) AS first_call, max(last_call) AS last_call
                FROM ({sessions("user_id, session_id, spans, total_cost, first_call, last_call")})
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
        ),
        table(
            "Spend by the tag chosen in 'Tag'",
            f"""SELECT tag_value, sum(calls) AS requests, toFloat64(sum(cost)) AS spend FROM (
                  SELECT tag_value, toInt64(sum(spans)) AS calls, sum(total_cost) AS cost FROM {TAGS}
                  WHERE tag_key = ${{tag_key:sqlstring}} AND {HOURS} AND {HOURLY} GROUP BY tag_value
                  UNION ALL
                  SELECT '', toInt64(sum(spans)), sum(total_cost) FROM {STATS} WHERE {HOURS} AND {HOURLY}
                  UNION ALL
                  SELECT '', -toInt64(sum(spans)), -sum(total_cost) FROM {TAGS}
                  WHERE tag_key = ${{tag_key:sqlstring}} AND {HOURS} AND {HOURLY}
                ) GROUP BY tag_value HAVING requests > 0 ORDER BY spend DESC LIMIT 50""",
            {"tag_value": "", "requests": "short", "spend": "currencyUSD"},
            w=8,
            description="An empty tag_value: calls without that tag (all calls less those with it).",
        ),
    ]


WEEK_BEFORE = "hour < toStartOfHour($__toTime - INTERVAL 7 DAY)"


def drift_rows(now: str, where: str) -> str:
    """The input tokens digests of the 14 days to `now`, split at 7 days before it."""
    split = f"toStartOfHour({now} - INTERVAL 7 DAY)"
    return days_and_hours(
        INPUT_TOKENS,
        INPUT_TOKENS_DAILY,
        "service_name, operation, feature, spans, input_tokens_digest",
        where,
        [(f"toStartOfHour({now} - INTERVAL 14 DAY)", *before_hour(split)), (split, *up_to(now))],
    )


def drift_branch(coarse: bool) -> str:
    """Median input tokens per call, the last 7 days against the 7 before: from the input tokens digests when
    `coarse` (taken when the variables they lack are all on All), else from the hourly stats."""
    if coarse:
        merge, state = "quantileTDigestMergeIf", "input_tokens_digest"
        rows = f"({drift_rows('$__toTime', f'{on_all(INPUT_TOKENS_KEYS)} AND {filters(True, INPUT_TOKENS_KEYS)}')})"
    else:
        merge, state = "quantileMergeIf", "input_tokens_quantiles"
        rows = f"""{STATS} WHERE NOT {on_all(INPUT_TOKENS_KEYS)}
          AND hour >= toStartOfHour($__toTime - INTERVAL 14 DAY) AND hour <= $__toTime AND {HOURLY}"""
    return f"""SELECT service_name AS service, operation, feature,
          {merge}(0.5)({state}, {WEEK_BEFORE}) AS median_before,
          {merge}(0.5)({state}, NOT {WEEK_BEFORE}) AS median_last_7d,
          (median_last_7d - median_before) / greatest(median_before, 1) * 100 AS growth,
          sumIf(spans, NOT {WEEK_BEFORE}) AS calls_last_7d, sumIf(spans, {WEEK_BEFORE}) AS calls_before
        FROM {rows}
        GROUP BY service, operation, feature"""


def trends() -> list[dict[str, Any]]:
    series = "concat(service_name, ' / ', operation, ' / ', feature)"
    return [
        bars(
            "Daily spend, last 30 days",
            f"""SELECT toStartOfDay(hour) AS time, toFloat64(sum(total_cost)) AS spend
                FROM genai_spans_hourly WHERE $__timeFilter(hour) AND {HOURLY}
                GROUP BY time ORDER BY time""",
            "currencyUSD",
            w=16,
            timeFrom="30d",
            interval="1d",
        ),
        stat(
            "Month to date, and projected to month end",
            f"""SELECT toFloat64(sumIf(total_cost, hour >= toStartOfMonth($__toTime))) AS month_to_date,
                  toFloat64(sumIf(total_cost, hour >= $__toTime - INTERVAL 7 DAY)) / 7 AS daily_rate_7d,
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
            description="Projection: month to date plus the mean daily spend of the last 7 days for each day left.",
        ),
        timeseries(
            "Input tokens per call (median) by service / operation / feature",
            per_interval(
                series,
                "series",
                "quantile(0.5)(input_tokens) AS p50",
                "quantileMerge(0.5)(input_tokens_quantiles) AS p50",
                coarse=(
                    INPUT_TOKENS,
                    INPUT_TOKENS_KEYS,
                    "quantileTDigestMerge(0.5)(input_tokens_digest) AS p50",
                    INPUT_TOKENS_3H,
                ),
            ),
            "short",
            maxDataPoints=SERIES_POINTS,
        ),
        timeseries(
            "Input tokens per call (p95) by service / operation / feature",
            per_interval(
                series,
                "series",
                "quantile(0.95)(input_tokens) AS p95",
                "quantileMerge(0.95)(input_tokens_quantiles) AS p95",
                coarse=(
                    INPUT_TOKENS,
                    INPUT_TOKENS_KEYS,
                    "quantileTDigestMerge(0.95)(input_tokens_digest) AS p95",
                    INPUT_TOKENS_3H,
                ),
            ),
            "short",
            maxDataPoints=SERIES_POINTS,
        ),
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
            description="Prompts that grew: check for history or retrieved context piling up in the prompt.",
        ),
    ]


def budgets() -> list[dict[str, Any]]:
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
        {
            "type": "bargauge",
            "title": "Percent of limit spent",
            "targets": [
                target(
                    f"SELECT concat(budget, if(scope_value != '', concat(' / ', scope_value), '')) AS name,"
                    f" percent {latest}",
                    FORMAT_TABLE,
                )
            ],
            "fieldConfig": {
                "defaults": {
                    "unit": "percent",
                    "min": 0,
                    "max": 100,
                    "thresholds": {
                        "mode": "absolute",
                        "steps": [
                            {"color": "green", "value": None},
                            {"color": "orange", "value": 80},
                            {"color": "red", "value": 100},
                        ],
                    },
                },
                "overrides": [],
            },
            "options": {
                "reduceOptions": {"values": True, "calcs": ["lastNotNull"], "fields": "/^(percent)$/"},
                "orientation": "horizontal",
                "displayMode": "gradient",
            },
            "w": 8,
            "h": 8,
        },
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


def per_stored_interval(values: str, rollup_values: str, lag_values: str | None = None) -> str:
    """A time series by the time rows were stored (ingested_at), as per_interval without a key; `lag_values`:
    from genai_lag_hourly instead when only project and environment may be chosen."""
    fine = "1 = 1"
    coarse = ""
    if lag_values is not None:
        fine = f"NOT {on_all(LAG_KEYS)}"
        coarse = f"""SELECT toStartOfInterval(hour, INTERVAL $__interval_s second) AS time, {lag_values}
        FROM {LAG} WHERE $__interval_s >= 3600 AND {on_all(LAG_KEYS)} AND {HOURS} AND {filters(True, LAG_KEYS)}
        GROUP BY time
        UNION ALL"""
    return f"""SELECT * FROM (
        {coarse}
        SELECT toStartOfInterval(hour, INTERVAL $__interval_s second) AS time, {rollup_values}
        FROM {INGESTED} WHERE $__interval_s >= 3600 AND {fine} AND {HOURS} AND {HOURLY}
        GROUP BY time
        UNION ALL
        SELECT toStartOfInterval(ingested_at, INTERVAL $__interval_s second) AS time, {values}
        FROM genai_spans WHERE $__interval_s < 3600 AND $__timeFilter(ingested_at) AND {RAW}
        GROUP BY time
        ) ORDER BY time"""


def ingestion() -> list[dict[str, Any]]:
    return [
        timeseries(
            "Rows stored per minute",
            per_stored_interval(
                "count() * 60 / $__interval_s AS rows_per_minute", "sum(spans) * 60 / $__interval_s AS rows_per_minute"
            ),
            "short",
            maxDataPoints=SERIES_POINTS,
        ),
        timeseries(
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
            maxDataPoints=SERIES_POINTS,
        ),
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
    ] + [
        pie(
            f"Rows per {column.replace('_', ' ')}",
            f"""SELECT {column}, sum(spans) AS rows FROM {INGESTED}
                WHERE {HOURS} AND {HOURLY} GROUP BY {column} ORDER BY rows DESC""",
            "rows",
            w=12,
        )
        for column in ("convention", "price_status")
    ]


# Where a trace id leads: any URL with `{trace_id}` in it. The default opens the trace in Grafana's Explore on a
# data source named Tempo; for Jaeger, e.g. http://jaeger:16686/trace/{trace_id}. Set it in the dashboard's
# settings (Variables, trace_url) or per link with ?var-trace_url=...
TRACE_URL_DEFAULT = (
    '/explore?left={"datasource":"Tempo","queries":[{"refId":"A","queryType":"traceql","query":"{trace_id}"}]}'
)
TRACE_URL = {
    "type": "textbox",
    "name": "trace_url",
    "label": "Trace URL ({trace_id} is replaced)",
    "query": TRACE_URL_DEFAULT,
    "current": {"text": TRACE_URL_DEFAULT, "value": TRACE_URL_DEFAULT},
    "hide": 2,
    "options": [],
}


# Where the latest 500 calls of the range start at the latest: the last hour from which the whole hours strictly
# inside the range hold 500 calls or more (the hourly rollup counts them), else the start of time. The calls
# table reads from there, about an hour of rows, not the whole range, and finds the same 500.
LATEST_HOURS = f"""SELECT max(hour) FROM (
    SELECT hour, sum(sum(spans)) OVER (ORDER BY hour DESC) AS from_here FROM {STATS}
    WHERE hour > toStartOfHour($__fromTime) AND hour < toStartOfHour($__toTime) AND {HOURLY} GROUP BY hour
  ) WHERE from_here >= 500"""


def calls() -> list[dict[str, Any]]:
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
        description="The 500 latest calls in the range. An empty cost: a model with no known price (unpriced), "
        "not $0. A trace id opens the trace where the dashboard's trace_url variable points.",
    )
    overrides = panel["fieldConfig"]["overrides"]
    overrides.append(
        {
            "matcher": {"id": "byName", "options": "cost"},
            "properties": [
                {"id": "decimals", "value": 6},
                {
                    "id": "mappings",
                    "value": [{"type": "special", "options": {"match": "null", "result": {"text": "unpriced"}}}],
                },
            ],
        }
    )
    overrides.append(
        {
            "matcher": {"id": "byName", "options": "trace_id"},
            "properties": [
                {
                    "id": "links",
                    "value": [{"title": "Open trace", "url": "${__data.fields.trace_link}", "targetBlank": True}],
                }
            ],
        }
    )
    overrides.append(
        {"matcher": {"id": "byName", "options": "trace_link"}, "properties": [{"id": "custom.hidden", "value": True}]}
    )
    return [panel]


# The findings table (clickhouse/schema/017): the collector writes the findings there every findings.interval,
# as some rules price what-ifs with genai-prices in Python. Each panel reads the newest run at or before the range's
# end; runs are for their own period (findings.since), not the dashboard's range.
LATEST_FINDINGS = f"""run_at = (SELECT max(run_at) FROM findings WHERE run_at <= $__toTime)
    AND {filters(only=("project",))}"""


def findings() -> list[dict[str, Any]]:
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
            description="Estimated savings in USD a month; see README, Findings, for each kind's rule and formula.",
        ),
    ]


# The newest genai-prices version a collector wrote into model_prices (collector/prices.py).
PRICES_VERSION = "(SELECT argMax(version, refreshed_at) FROM model_prices)"
COMPARE_MODEL = query_variable(
    "compare_model",
    "Compare with",
    f"SELECT DISTINCT concat(provider, ':', model) FROM model_prices WHERE version = {PRICES_VERSION} ORDER BY 1",
    multi=False,
)
COMPARE_MODEL["current"] = {"text": "openai:gpt-4o-mini", "value": "openai:gpt-4o-mini"}


def compare_on_any_model() -> dict[str, Any]:
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
                sum(total_cost) AS spend, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
                sum(reasoning_tokens) AS reasoning_tokens
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
        description="Each hour's tokens by kind (cache reads and writes, reasoning) at the chosen model's prices "
        "in force that hour, from genai-prices (the model_prices table). Long-context tiers are left out here (the "
        "rollup has no per-call input); `spanmeter report --what-if MODEL` prices each call exactly.",
    )


def spend_forecast() -> dict[str, Any]:
    """This month's daily spend, and to its end a forecast with a band, in SQL: weekday factors (a weekday's mean
    over the mean day, from 14 days of history on), a least-squares line through the spend divided by them, and a
    band of 1.645 residual standard deviations (90 % of days, if residuals are normal). The daily series is read
    once into arrays and fitted with array functions (a CTE would be read again at each use). `spanmeter forecast`
    fits the same shape robustly and bands the month's total."""
    return timeseries(
        "Daily spend this month, and forecast to its end",
        f"""WITH
              toDate($__toTime) AS today,
              toStartOfMonth(today) AS month_start,
              addMonths(month_start, 1) AS month_stop,
              (
                SELECT (groupArray(day), groupArray(spend)) FROM (
                  SELECT toDate(hour) AS day, toFloat64(sum(total_cost)) AS spend FROM genai_spans_hourly
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
        description="Actual spend per UTC day of the month that holds the range's end, then the expected day's "
        "spend with a band of 90 % of days. Weekday pattern from two weeks of history on; the month's total and its "
        "band: `spanmeter forecast`.",
    )


TAG_KEY = query_variable(
    "tag_key",
    "Tag",
    f"SELECT DISTINCT tag_key AS key FROM {TAGS} WHERE {HOURS} ORDER BY key LIMIT 500",
    multi=False,
)

DASHBOARDS_SPEC = [
    ("spanmeter-overview", "spanmeter / Overview", "overview.json", overview, [], "now-24h"),
    ("spanmeter-models", "spanmeter / Models", "models.json", models, [COMPARE_MODEL], "now-7d"),
    ("spanmeter-attribution", "spanmeter / Attribution", "attribution.json", attribution, [TAG_KEY], "now-7d"),
    ("spanmeter-trends", "spanmeter / Trends and prompt drift", "trends.json", trends, [], "now-14d"),
    ("spanmeter-budgets", "spanmeter / Budgets", "budgets.json", budgets, [], "now-30d"),
    ("spanmeter-ingestion", "spanmeter / Ingestion", "ingestion.json", ingestion, [], "now-6h"),
    ("spanmeter-calls", "spanmeter / Calls", "calls.json", calls, [TRACE_URL], "now-1h"),
    ("spanmeter-findings", "spanmeter / Findings", "findings.json", findings, [], "now-30d"),
]


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Left to right, wrapping at Grafana's 24 columns."""
    x = y = row_height = 0
    out = []
    for number, panel in enumerate(panels, start=1):
        w, h = panel.pop("w"), panel.pop("h")
        if x + w > 24:
            x, y, row_height = 0, y + row_height, 0
        panel = {"id": number, "datasource": DS, "gridPos": {"x": x, "y": y, "w": w, "h": h}, **panel}
        out.append(panel)
        x += w
        row_height = max(row_height, h)
    return out


# The dashboard schema version Grafana 12.2 writes; an older one is migrated at every load. Its step to 42
# (apps/dashboard/pkg/migration/schemaversion/v42.go) hides from tooltips the fields hidden from the visualization,
# which these dashboards do not do.
SCHEMA_VERSION = 42


def dashboard(
    uid: str, title: str, panels: list[dict[str, Any]], extra_variables: list[dict[str, Any]], since: str
) -> dict[str, Any]:
    links = [
        {
            "type": "dashboards",
            "tags": ["spanmeter"],
            "asDropdown": False,
            "includeVars": True,
            "keepTime": True,
            "title": "spanmeter",
        }
    ]
    return {
        "uid": uid,
        "title": title,
        "tags": ["spanmeter", "llm", "cost"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": since, "to": "now"},
        "links": links,
        "templating": {"list": dimension_variables() + extra_variables},
        "annotations": {"list": []},
        "panels": layout(panels),
    }


# --- alert rules ------------------------------------------------------------------------------------------------------

ALERTS: list[dict[str, Any]] = [
    {
        "uid": "spanmeter-daily-spend",
        "title": "Daily LLM spend over threshold",
        "group": "spend",
        "seconds": 86400,
        "sql": """SELECT project, toFloat64(sum(total_cost)) AS value FROM genai_spans_hourly
                  WHERE hour >= toStartOfDay(now('UTC')) GROUP BY project""",
        "evaluator": ("gt", 100),
        "summary": "Project {{ $labels.project }} has spent {{ $values.A }} USD on LLM calls today (UTC), "
        "over 100 USD.",
        "description": "Open the spanmeter Overview and Attribution dashboards for this project to see which service, "
        "feature and user drive the spend. If it is expected, raise the threshold in this rule; if not, cap it "
        "with a `block` budget in pipelines.yaml.",
    },
    # Windows of whole minutes from genai_spend_minutely (027): the last 60 before the current minute, and the same
    # 60 on each of the 7 days before. Against windows ending at now() they end up to a minute earlier (the current
    # minute's calls count from the next evaluation, a minute later, as Grafana evaluates each minute); every
    # window is 60 whole minutes, so the last hour is compared with hours of the same length.
    {
        "uid": "spanmeter-spend-spike",
        "title": "LLM spend spike",
        "group": "spend",
        "seconds": 8 * 86400,
        "sql": """SELECT project, value FROM (
                  SELECT project,
                    sumIf(cost, day = 0) AS last_hour,
                    sumIf(cost, day BETWEEN 1 AND 7) / 7 AS mean,
                    sqrt(greatest(sumIf(cost * cost, day BETWEEN 1 AND 7) / 7 - mean * mean, 0)) AS stddev,
                    last_hour / greatest(mean + 3 * stddev, 1) AS value
                  FROM (
                    SELECT project, intDiv(dateDiff('minute', minute, toStartOfMinute(now())) - 1, 1440) AS day,
                      toFloat64(sum(total_cost)) AS cost
                    FROM genai_spend_minutely
                    WHERE minute >= toStartOfMinute(now()) - INTERVAL 8 DAY AND minute < toStartOfMinute(now())
                      AND (dateDiff('minute', minute, toStartOfMinute(now())) - 1) % 1440 < 60
                    GROUP BY project, day
                  )
                  GROUP BY project
                  )""",
        "evaluator": ("gt", 1),
        "summary": "Project {{ $labels.project }} spent {{ $values.A }} times its spike limit in the last hour.",
        "description": "The last hour's spend (the 60 whole minutes before this one) is above the mean plus three "
        "standard deviations of the same hour on each of the previous 7 days (and above 1 USD). Check the Overview "
        "dashboard's spend by model and the Attribution dashboard's top users and sessions for a runaway loop, a "
        "retry storm or a new feature.",
    },
    {
        "uid": "spanmeter-budget-exceeded",
        "title": "Budget exceeded",
        "group": "budgets",
        "seconds": 3600,
        "sql": """SELECT budget, scope_value, max(percent) AS value FROM budget_status FINAL
                  WHERE window_end > now() GROUP BY budget, scope_value""",
        "evaluator": ("gt", 99.999),
        "summary": "Budget {{ $labels.budget }} ({{ $labels.scope_value }}) is at {{ $values.A }} % of its limit.",
        "description": "Spend in the budget's current window has reached its limit. Calls in a `block` budget's "
        "scope are refused by the instrumentation's budget gate. See the Budgets dashboard; raise the limit in "
        "pipelines.yaml if the spend is intended, or find its source in the Attribution dashboard.",
    },
    {
        "uid": "spanmeter-unpriced-model",
        "title": "Model that cannot be priced",
        "group": "pricing",
        "seconds": 3600,
        "sql": f"""SELECT provider, {MODEL} AS model, toFloat64(count()) AS value FROM genai_spans
                   WHERE $__timeFilter(timestamp) AND price_status = 'unpriced' GROUP BY provider, model""",
        "evaluator": ("gt", 0),
        "summary": "{{ $values.A }} calls to {{ $labels.provider }} / {{ $labels.model }} in the last hour "
        "could not be priced.",
        "description": "genai-prices does not know this model, so its calls are stored as `unpriced` and missing from "
        "every spend figure. Add a price override for it under processors.pricing.overrides in pipelines.yaml, "
        "restart the collector, and run `spanmeter reprice` to price the stored rows.",
    },
    {
        "uid": "spanmeter-error-rate",
        "title": "LLM error rate over threshold",
        "group": "reliability",
        "seconds": 900,
        "sql": """SELECT service_name AS service, countIf(status_code = 'ERROR') / count() AS value FROM genai_spans
                  WHERE $__timeFilter(timestamp) GROUP BY service HAVING count() >= 20""",
        "evaluator": ("gt", 0.05),
        "summary": "{{ humanizePercentage $values.A.Value }} of LLM calls from {{ $labels.service }} failed "
        "in the last 15 minutes.",
        "description": "More than 5 % of GenAI spans ended in error (at least 20 calls). Look at error_type in "
        "genai_spans for the service: rate limits (429) call for backoff or a higher quota, 5xx for the provider's "
        "status page, context-length errors for the Trends dashboard's prompt drift table.",
    },
    {
        "uid": "spanmeter-prompt-drift",
        "title": "Prompt drift: input tokens per call growing",
        "group": "pricing",
        "seconds": 14 * 86400,
        "sql": f"""SELECT service_name AS service, operation, feature,
                    quantileTDigestMergeIf(0.5)(input_tokens_digest, hour >= toStartOfHour(now() - INTERVAL 7 DAY))
                      / greatest(quantileTDigestMergeIf(0.5)(input_tokens_digest,
                                                             hour < toStartOfHour(now() - INTERVAL 7 DAY)), 1) AS value
                  FROM ({drift_rows("now()", "1 = 1")})
                  GROUP BY service, operation, feature
                  HAVING sumIf(spans, hour < toStartOfHour(now() - INTERVAL 7 DAY)) >= 20
                    AND sumIf(spans, hour >= toStartOfHour(now() - INTERVAL 7 DAY)) >= 20""",
        "evaluator": ("gt", 1.5),
        "summary": "Median input tokens per call of {{ $labels.service }} / {{ $labels.operation }} / "
        "{{ $labels.feature }} grew {{ $values.A }}x against the 7 days before.",
        "description": "Prompts of this series grew by half or more in a week, and cost grows with them. Look for "
        "conversation history or retrieved context that is never trimmed; the Trends dashboard shows when it "
        "started.",
    },
]


def alert_rule(spec: dict[str, Any]) -> dict[str, Any]:
    kind, threshold = spec["evaluator"]
    return {
        "uid": spec["uid"],
        "title": spec["title"],
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": spec["seconds"], "to": 0},
                "datasourceUid": DATASOURCE_UID,
                "model": {
                    "refId": "A",
                    "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID},
                    "editorType": "sql",
                    "format": FORMAT_TABLE,
                    "queryType": "table",
                    "pluginVersion": PLUGIN_VERSION,
                    "rawSql": " ".join(spec["sql"].split()),
                    "intervalMs": 60000,
                    "maxDataPoints": 43200,
                },
            },
            {
                "refId": "C",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "C",
                    "type": "threshold",
                    "datasource": {"type": "__expr__", "uid": "__expr__"},
                    "expression": "A",
                    "conditions": [{"evaluator": {"type": kind, "params": [threshold]}}],
                },
            },
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": "5m" if spec["group"] != "budgets" else "0s",
        "annotations": {"summary": spec["summary"], "description": spec["description"]},
        "labels": {"app": "spanmeter", "severity": "critical" if spec["group"] == "budgets" else "warning"},
        "isPaused": False,
    }


# The folder of the alert rules: Grafana finds it by this title, and so must the dashboard provider
# (provisioning/dashboards/spanmeter.yaml), or a fresh Grafana makes two folders of this name.
RULES_FOLDER = "spanmeter"


def alert_rules() -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec in ALERTS:
        groups.setdefault(spec["group"], []).append(alert_rule(spec))
    return {
        "apiVersion": 1,
        "groups": [
            {"orgId": 1, "name": f"spanmeter-{name}", "folder": RULES_FOLDER, "interval": "1m", "rules": rules}
            for name, rules in groups.items()
        ],
    }


RULES_HEADER = "# Generated by grafana/build.py from its ALERTS list: edit there, then run `python grafana/build.py`.\n"


def rendered() -> dict[Path, str]:
    """Every file this script writes, path -> text."""
    files = {
        DASHBOARDS / name: json.dumps(dashboard(uid, title, build(), extra, since), indent=2) + "\n"
        for uid, title, name, build, extra, since in DASHBOARDS_SPEC
    }
    files[RULES_FILE] = RULES_HEADER + yaml.safe_dump(alert_rules(), sort_keys=False, width=120, allow_unicode=True)
    return files


def main() -> int:
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
