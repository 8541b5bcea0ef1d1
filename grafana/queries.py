"""The SQL of spanmeter's dashboards and alert rules: filters for the dashboard variables, the rollups each query
reads and the helpers that pick rows or rollups per range and selection. Only strings of SQL here; panels are
assembled in panels.py and boards.py.

Every query is ClickHouse SQL in the style of grafana/clickhouse-datasource's own dashboards
(src/dashboards/otel-service-dashboard.json): the plugin's macros for time, `$__conditionalAll` for
multi-value variables, `GROUP BY time ORDER BY time` for time series.
"""

from __future__ import annotations

from spanmeter.sampling import weighed_sql

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
# An hourly rollup's 3-hour and daily twins (blocks_and_hours).
TIERS = {LATENCY: (LATENCY_3H, LATENCY_DAILY), INPUT_TOKENS: (INPUT_TOKENS_3H, INPUT_TOKENS_DAILY)}
LATENCY_KEYS = ("project", "environment", "provider", "model")
INPUT_TOKENS_KEYS = ("project", "environment", "service", "feature")
LAG_KEYS = ("project", "environment")
SESSIONS_DAILY_KEYS = ("project",)

# Probability sampling (collector/sampling.py): a row kept with the rejection threshold T of its tracestate stands
# for 2^56 / (2^56 - T) calls. Spend, requests and tokens are estimated as `spanmeter report` estimates them: each
# row weighted so in Decimal(76, 24), the rollups' `estimated_*` sums (clickhouse/schema/030) over whole hours, the
# same expressions over the rows below an hour. Without sampling the weight is exactly 1: the stored sums.
ESTIMATED = (
    "Estimated where sampled: a call kept by probability sampling (tracestate ot=th:) counts as the calls it "
    "stands for, as in `spanmeter report`; without sampling, the stored calls."
)


def weighed(column: str) -> str:
    """A genai_spans column times its row's weight, as `spanmeter report` weighs it; `column` is a name, never user
    text."""
    return weighed_sql(column)


def whole(total: str) -> str:
    """An estimated number of calls (a Decimal sum) as shown: the nearest whole number, as `report` rounds it."""
    return f"round(toFloat64({total}))"


SPEND = "toFloat64(sum(estimated_cost)) AS spend"
RAW_SPEND = f"toFloat64(sum({weighed('total_cost')})) AS spend"
TOKENS = "toFloat64(sum(estimated_input_tokens)) AS input, toFloat64(sum(estimated_output_tokens)) AS output"
RAW_TOKENS = f"toFloat64(sum({weighed('input_tokens')})) AS input, toFloat64(sum({weighed('output_tokens')})) AS output"


COMPARED_HOURS = "hour >= toStartOfHour($__fromTime - ($__toTime - $__fromTime)) AND hour <= $__toTime"


def compare(
    name: str,
    current: str,
    previous: str,
    coarse: tuple[tuple[str, str, str], tuple[str, ...], str, str] | None = None,
) -> str:
    """A value for the dashboard's range beside the same value for the range of equal length before it, and the
    change in percent. `coarse` ((hourly, daily, columns), their key variables, current, previous): smaller rollups
    read instead when the other variables are on All (each branch's HAVING keeps its one row only when it is the
    branch taken)."""
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
    return sql


def in_range(expr: str) -> str:
    return f"{expr}, hour >= toStartOfHour($__fromTime)"


def before_range(expr: str) -> str:
    return f"{expr}, hour < toStartOfHour($__fromTime)"


# The whole 3-hour blocks of a series' range (from the first that starts at or after the hour the range starts in,
# to the one `$__toTime` is in, excluded), and whether its buckets are whole multiples of them.
FIRST_BLOCK = "toStartOfInterval(toStartOfHour($__fromTime) + INTERVAL 2 HOUR, INTERVAL 10800 second)"
LAST_BLOCK = "toStartOfInterval($__toTime, INTERVAL 10800 second)"
IN_BLOCKS = "$__interval_s % 10800 = 0"
IN_DAYS = "$__interval_s % 86400 = 0"


def blocks_and_hours(hourly: str, where: str) -> str:
    """The rows of `hourly` for the range's hours, its whole UTC days read from its daily rollup when the
    buckets are whole days, else its whole 3-hour blocks from its 3-hour rollup when the buckets are multiples
    of 3 hours (TIERS: the same columns, by days or blocks): a month in daily buckets merges 30 states a
    series instead of 240."""
    blocks, daily = TIERS[hourly]
    whole_days = f"{IN_DAYS} AND {{0}} >= {FIRST_DAY} AND {{0}} < {LAST_DAY}"
    whole_blocks = f"NOT {IN_DAYS} AND {IN_BLOCKS} AND hour >= {FIRST_BLOCK} AND hour < {LAST_BLOCK}"
    hours = f"{HOURS} AND NOT ({whole_days.format('hour')}) AND NOT ({whole_blocks})"
    return f"""SELECT * FROM {hourly} WHERE {where} AND {hours}
        UNION ALL
        SELECT * FROM {blocks} WHERE {where} AND {whole_blocks}
        UNION ALL
        SELECT * FROM {daily} WHERE {where} AND {whole_days.format("day")}"""


def per_interval(
    key: str,
    alias: str,
    values: str,
    rollup_values: str,
    rollup_key: str | None = None,
    rollup: str = STATS,
    time: str = "timestamp",
    coarse: tuple[str, tuple[str, ...], str] | None = None,
) -> str:
    """A time series per value of `key`, in buckets of the panel's interval: from the hourly `rollup` when the
    buckets are whole hours, else from the raw rows (the branch not taken reads nothing: its condition is
    constant). `time` is the raw rows' time column the rollup's `hour` stands for. `coarse` (table, its key
    variables, values): a smaller hourly rollup read instead of `rollup` when the other variables are on All;
    with its days and 3-hour blocks (blocks_and_hours) when it has them (TIERS)."""  # fmt: skip
    grouped = f"toStartOfInterval(hour, INTERVAL $__interval_s second) AS time, {rollup_key or key} AS {alias}"
    fine = "1 = 1"
    branches = ""
    if coarse is not None:
        table, keys, coarse_values = coarse
        fine = f"NOT {on_all(keys)}"
        where = f"$__interval_s >= 3600 AND {on_all(keys)} AND {filters(True, keys)}"
        rows = blocks_and_hours(table, where) if table in TIERS else f"SELECT * FROM {table} WHERE {where} AND {HOURS}"
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


# Where the latest 500 calls of the range start at the latest: the last hour from which the whole hours strictly
# inside the range hold 500 calls or more (the hourly rollup counts them), else the start of time. The calls
# table reads from there, about an hour of rows, not the whole range, and finds the same 500.
LATEST_HOURS = f"""SELECT max(hour) FROM (
    SELECT hour, sum(sum(spans)) OVER (ORDER BY hour DESC) AS from_here FROM {STATS}
    WHERE hour > toStartOfHour($__fromTime) AND hour < toStartOfHour($__toTime) AND {HOURLY} GROUP BY hour
  ) WHERE from_here >= 500"""


# The findings table (clickhouse/schema/017): the collector writes the findings there every findings.interval,
# as some rules price what-ifs with genai-prices in Python. Each panel reads the newest run at or before the range's
# end; runs are for their own period (findings.since), not the dashboard's range.
LATEST_FINDINGS = f"""run_at = (SELECT max(run_at) FROM findings WHERE run_at <= $__toTime)
    AND {filters(only=("project",))}"""


# The newest genai-prices version a collector wrote into model_prices (collector/prices.py).
PRICES_VERSION = "(SELECT argMax(version, refreshed_at) FROM model_prices)"
