"""The hourly rollups (clickhouse/schema/012-015) give the dashboards the numbers the raw rows give.

Each panel, variable and alert that reads a rollup is run on seeded data beside a query of genai_spans written
here (the query the panel ran before the rollups, over the same whole hours); a time series that switches
between the rollup and the raw rows is run both ways on buckets of an hour. Quantiles agree exactly because
no seeded group holds more than the 8,192 values a quantile state keeps. Then the migrations' backfill: rows
stored before the rollups existed are rolled up as the views roll up new rows, once however often it runs."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from spanmeter.exporters.clickhouse import INSERT_SETTINGS
from spanmeter.migrations import Migration, migrations
from spanmeter.sampling import WEIGHT_SQL, weighed_sql
from spanmeter.store import apply_schema, statements

from .conftest import Runner, alert_rules, dashboards, load_queries
from .plugin_macros import QueryContext
from .seed import seed
from .test_dashboards import panel_range, resolve_variables

BUILD = load_queries()  # the SQL of grafana/build.py's dashboards and rules
ROLLUPS = (
    BUILD.STATS,
    BUILD.SESSIONS,
    BUILD.TAGS,
    BUILD.INGESTED,
    BUILD.LATENCY,
    BUILD.INPUT_TOKENS,
    BUILD.LAG,
    BUILD.SESSIONS_DAILY,
    BUILD.LATENCY_3H,
    BUILD.INPUT_TOKENS_3H,
    "genai_spend_minutely",
)
# The rollups of 023-025, 028 and 029 keep t-digests, not `quantile`'s states: their quantiles are within
# DIGEST_TOLERANCE (relative) of the raw rows' on the seeded data, where these differ most on small groups (a
# t-digest interpolates between centroids; `quantile` returns one of the values).
DIGESTS = (BUILD.LATENCY, BUILD.INPUT_TOKENS, BUILD.LAG, BUILD.LATENCY_3H, BUILD.INPUT_TOKENS_3H)
DIGEST_TOLERANCE = 0.25
M = BUILD.MODEL
RAW = BUILD.RAW
UNPRICED = BUILD.filters(only=("project", "service", "environment"))


def hours(column: str) -> str:
    """The rollups' range over raw rows: the whole hours from the one the range starts in."""
    return f"toStartOfHour({column}) >= toStartOfHour($__fromTime) AND toStartOfHour({column}) <= $__toTime"


SPANS = f"FROM genai_spans WHERE {hours('timestamp')} AND {RAW}"
BEFORE = "timestamp < toStartOfHour($__fromTime)"
COMPARED = f"""FROM genai_spans WHERE timestamp >= toStartOfHour($__fromTime - ($__toTime - $__fromTime))
    AND toStartOfHour(timestamp) <= $__toTime AND {RAW}"""
WEEK_BEFORE = "timestamp < toStartOfHour($__toTime - INTERVAL 7 DAY)"


# Spend, requests and tokens as `spanmeter report` estimates them from the rows (collector/sampling.py): each row
# weighted by the calls it stands for, counts rounded to whole calls.
COST = f"toFloat64(sum({weighed_sql('total_cost')}))"


def weighed_sum(column: str, condition: str = "") -> str:
    """The rows' `column` weighted by sampling, summed (where `condition`), as a Float64."""
    weighed = WEIGHT_SQL if column == "calls" else weighed_sql(column)
    return f"toFloat64(sumIf({weighed}, {condition}))" if condition else f"toFloat64(sum({weighed}))"


def compared(name: str, current: str, previous: str) -> str:
    return f"""SELECT {current} AS {name}, {previous} AS previous_{name},
        if(previous_{name} > 0, ({name} - previous_{name}) / previous_{name} * 100, NULL) AS change_percent
        {COMPARED}"""


# What each panel reading a rollup ran on genai_spans before, over the same hours.
REFERENCES = {
    "Calls that could not be priced": f"""SELECT count() AS unpriced_calls, uniqExact({M}) AS unpriced_models
        FROM genai_spans WHERE {hours("timestamp")} AND price_status = 'unpriced' AND {UNPRICED}""",
    "Unpriced models": f"""SELECT provider, {M} AS model, count() AS calls, sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens, max(timestamp) AS last_seen
        FROM genai_spans WHERE {hours("timestamp")} AND price_status = 'unpriced' AND {UNPRICED}
        GROUP BY provider, model""",
    "Spend": compared("spend", weighed_sum("total_cost", f"NOT {BEFORE}"), weighed_sum("total_cost", BEFORE)),
    "Requests": compared(
        "requests", f"round({weighed_sum('calls', f'NOT {BEFORE}')})", f"round({weighed_sum('calls', BEFORE)})"
    ),
    "Tokens": compared(
        "tokens",
        f"round({weighed_sum('input_tokens', f'NOT {BEFORE}')} + {weighed_sum('output_tokens', f'NOT {BEFORE}')})",
        f"round({weighed_sum('input_tokens', BEFORE)} + {weighed_sum('output_tokens', BEFORE)})",
    ),
    "Median latency": compared(
        "median_latency",
        f"quantileIf(0.5)(duration_ns / 1e9, NOT {BEFORE})",
        f"quantileIf(0.5)(duration_ns / 1e9, {BEFORE})",
    ),
    "Top services": f"""SELECT service_name AS service, round({weighed_sum("calls")}) AS requests, {COST} AS spend,
        spend / greatest(sum(spend) OVER (), 1e-12) * 100 AS share {SPANS} GROUP BY service""",
    "Top features": f"""SELECT feature, round({weighed_sum("calls")}) AS requests, {COST} AS spend,
        spend / greatest(sum(spend) OVER (), 1e-12) * 100 AS share {SPANS} GROUP BY feature""",
    "Cost, tokens and latency per model": f"""SELECT provider, {M} AS model, round({weighed_sum("calls")}) AS requests,
        {COST} AS spend, spend / requests * 1000 AS cost_per_1k_requests,
        round({weighed_sum("input_tokens")}) AS input_tokens, round({weighed_sum("output_tokens")}) AS output_tokens,
        output_tokens / greatest(input_tokens, 1) AS output_input_ratio,
        quantile(0.5)(duration_ns / 1e9) AS p50_latency, quantile(0.95)(duration_ns / 1e9) AS p95_latency
        {SPANS} GROUP BY provider, model""",
    "Caching: share of input read from cache, and what it saved": f"""SELECT {M} AS model, sum(input_tokens) AS input,
        sum(cache_read_tokens) AS cache_read, cache_read / greatest(input, 1) AS cache_read_share,
        toFloat64(sum(input_cost)) / greatest(sum(input_tokens - cache_read_tokens - cache_write_tokens), 1)
          AS uncached_input_price,
        greatest(cache_read * uncached_input_price - toFloat64(sum(cache_read_cost)), 0) AS saved
        {SPANS} GROUP BY model""",
    "Top users": f"""SELECT user_id AS user, round({weighed_sum("calls")}) AS requests,
        uniqExact(session_id) AS sessions, {COST} AS spend {SPANS} AND user_id != '' GROUP BY user""",
    "Top sessions": f"""SELECT session_id AS session, any(user_id) AS user, round({weighed_sum("calls")}) AS requests,
        {COST} AS spend, min(timestamp) AS first_call, max(timestamp) AS last_call
        {SPANS} AND session_id != '' GROUP BY session""",
    "Spend by the tag chosen in 'Tag'": f"""SELECT tags[${{tag_key:sqlstring}}] AS tag_value,
        round({weighed_sum("calls")}) AS requests, {COST} AS spend {SPANS} GROUP BY tag_value""",
    "Prompt drift: median input tokens per call, last 7 days against the 7 before (growth of 50 % or more)": f"""
        SELECT service_name AS service, operation, feature,
          quantileIf(0.5)(input_tokens, {WEEK_BEFORE}) AS median_before,
          quantileIf(0.5)(input_tokens, NOT {WEEK_BEFORE}) AS median_last_7d,
          (median_last_7d - median_before) / greatest(median_before, 1) * 100 AS growth,
          countIf(NOT {WEEK_BEFORE}) AS calls_last_7d
        FROM genai_spans WHERE timestamp >= toStartOfHour($__toTime - INTERVAL 14 DAY)
          AND toStartOfHour(timestamp) <= $__toTime AND {RAW}
        GROUP BY service, operation, feature
        HAVING countIf({WEEK_BEFORE}) >= 20 AND calls_last_7d >= 20 AND growth >= 50""",
    **{
        f"Rows per {column.replace('_', ' ')}": f"""SELECT {column}, count() AS rows FROM genai_spans
            WHERE {hours("ingested_at")} AND {RAW} GROUP BY {column}"""
        for column in ("convention", "price_status")
    },
}
VARIABLES = {
    "tag_key": f"""SELECT DISTINCT arrayJoin(mapKeys(tags)) AS key FROM genai_spans WHERE {hours("timestamp")}
        ORDER BY key""",
}
ALERTS = {
    "spanmeter-prompt-drift": """SELECT service_name AS service, operation, feature,
        quantileIf(0.5)(input_tokens, timestamp >= toStartOfHour(now() - INTERVAL 7 DAY))
          / greatest(quantileIf(0.5)(input_tokens, timestamp < toStartOfHour(now() - INTERVAL 7 DAY)), 1) AS value
        FROM genai_spans WHERE timestamp >= toStartOfHour(now() - INTERVAL 14 DAY) AND timestamp <= now()
        GROUP BY service, operation, feature
        HAVING countIf(timestamp < toStartOfHour(now() - INTERVAL 7 DAY)) >= 20
          AND countIf(timestamp >= toStartOfHour(now() - INTERVAL 7 DAY)) >= 20""",
}
# The spend spike's 8 windows, each 60 whole minutes ending k days before the current minute (k = 0..7).
ALERTS["spanmeter-spend-spike"] = f"""SELECT project, value FROM (
    SELECT project, sumIf(cost, day = 0) AS last_hour, sumIf(cost, day BETWEEN 1 AND 7) / 7 AS mean,
      sqrt(greatest(sumIf(cost * cost, day BETWEEN 1 AND 7) / 7 - mean * mean, 0)) AS stddev,
      last_hour / greatest(mean + 3 * stddev, 1) AS value
    FROM (
      SELECT project, day, {COST} AS cost FROM genai_spans ARRAY JOIN range(8) AS day
      WHERE timestamp >= toStartOfMinute(now()) - toIntervalDay(day) - INTERVAL 1 HOUR
        AND timestamp < toStartOfMinute(now()) - toIntervalDay(day)
      GROUP BY project, day)
    GROUP BY project)"""
# The seeded data each alert's comparison runs on: one where the rule has something to find.
ALERT_DATA = {"spanmeter-prompt-drift": "drift", "spanmeter-spend-spike": "spike"}
SWITCH = "$__interval_s >= 3600"


def reads_rollup(sql: str) -> bool:
    return any(f" {table} " in f" {sql} " for table in ROLLUPS)


BOARDS = dashboards()
ROLLUP_PANELS = [
    (name, panel)
    for name, board in BOARDS.items()
    for panel in board["panels"]
    if reads_rollup(panel["targets"][0]["rawSql"])
]
TABLES = [(n, p) for n, p in ROLLUP_PANELS if SWITCH not in p["targets"][0]["rawSql"]]
# The calls table reads the hourly rollup only for where its latest 500 calls start: the reference reads them all.
LATEST_BOUND = f"AND timestamp >= ({' '.join(BUILD.LATEST_HOURS.split())})"
REFERENCES["Latest calls"] = next(
    p["targets"][0]["rawSql"].replace(LATEST_BOUND, "") for _, p in TABLES if p["title"] == "Latest calls"
)
SERIES = [(n, p) for n, p in ROLLUP_PANELS if SWITCH in p["targets"][0]["rawSql"]]


def reads_digest(sql: str) -> bool:
    return any(f" {table} " in f" {sql} " for table in DIGESTS)


def same(left: list[tuple[Any, ...]], right: list[tuple[Any, ...]], rel_tol: float = 1e-9) -> None:
    """Equal rows in any order; floats to `rel_tol` relative."""

    def key(row: tuple[Any, ...]) -> tuple[str, ...]:
        return tuple(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row)

    assert len(left) == len(right), (left[:5], right[:5])
    for a, b in zip(sorted(left, key=key), sorted(right, key=key), strict=True):
        for x, y in zip(a, b, strict=True):
            if isinstance(x, float) or isinstance(y, float):
                assert x is not None and y is not None and math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-12), (a, b)
            else:
                assert x == y, (a, b)


def test_every_panel_reading_a_rollup_has_a_reference_query() -> None:
    assert {panel["title"] for _, panel in TABLES} == set(REFERENCES)
    assert len(SERIES) >= 10, [panel["title"] for _, panel in SERIES]


@pytest.mark.parametrize("mode", ["all", "several"])
@pytest.mark.parametrize(("name", "panel"), TABLES, ids=[f"{n}:{p['title']}" for n, p in TABLES])
def test_a_table_from_a_rollup_equals_the_raw_rows(
    seeded: dict[str, Runner], seeded_now: datetime, name: str, panel: dict[str, Any], mode: str
) -> None:
    board = BOARDS[name]
    runner = seeded["all"]
    ctx = panel_range(board, panel, seeded_now)
    variables = resolve_variables(board, runner, ctx, mode)
    # Every row, not the first 50: seeded sessions tie on spend, and the 50 kept of those tied may differ.
    rollup = runner.run(re.sub(r" LIMIT 50\b", "", panel["targets"][0]["rawSql"]), variables, ctx)
    raw = runner.run(REFERENCES[panel["title"]], variables, ctx)
    assert rollup.rows or (panel["title"].startswith("Prompt drift") and mode == "several"), rollup.sql
    assert [c for c in raw.columns if c in rollup.columns] == raw.columns
    tolerance = DIGEST_TOLERANCE if reads_digest(panel["targets"][0]["rawSql"]) else 1e-9
    same([row[: len(raw.columns)] for row in rollup.rows], raw.rows, tolerance)


@pytest.mark.parametrize(("name", "panel"), SERIES, ids=[f"{n}:{p['title']}" for n, p in SERIES])
def test_a_series_from_a_rollup_equals_the_raw_rows_in_hourly_buckets(
    seeded: dict[str, Runner], seeded_now: datetime, name: str, panel: dict[str, Any]
) -> None:
    board = BOARDS[name]
    runner = seeded["all"]
    start = seeded_now.replace(minute=0, second=0, microsecond=0) - timedelta(days=7)
    ctx = QueryContext(start, seeded_now + timedelta(hours=1), timedelta(hours=1))  # every stored row: none later
    variables = resolve_variables(board, runner, ctx, "all")
    sql = panel["targets"][0]["rawSql"]
    rollup = runner.run(sql, variables, ctx)
    raw_sql = sql.replace(SWITCH, "0 = 1").replace("$__interval_s < 3600", "1 = 1")
    if reads_digest(sql):
        # The same sketch over the raw rows: an hour of seeded data holds a few calls, where t-digest's median
        # interpolates between two values and plain quantile picks one of them (1040 against 2020 in one run).
        raw_sql = raw_sql.replace("quantile(", "quantileTDigest(")
    raw = runner.run(raw_sql, variables, ctx)
    assert rollup.rows and rollup.columns == raw.columns
    same(rollup.rows, raw.rows, DIGEST_TOLERANCE if reads_digest(sql) else 1e-9)


BLOCKS = [(n, p) for n, p in SERIES if BUILD.IN_BLOCKS in p["targets"][0]["rawSql"]]


@pytest.mark.parametrize("bucket_hours", [3, 6, 24])
@pytest.mark.parametrize(("name", "panel"), BLOCKS, ids=[f"{n}:{p['title']}" for n, p in BLOCKS])
def test_a_series_in_buckets_of_3_hours_reads_whole_blocks_and_gives_the_hourly_rollups_numbers(
    seeded: dict[str, Runner], seeded_now: datetime, name: str, panel: dict[str, Any], bucket_hours: int
) -> None:
    """Buckets of 3 and 6 hours and of a day over a range starting mid-block: the 3-hour (or daily) rollup's
    whole blocks (days) and the hourly one's edge hours give each bucket what the hourly rollup alone gives
    (t-digests merged in another order)."""
    board = BOARDS[name]
    runner = seeded["all"]
    start = seeded_now.replace(minute=37, second=0, microsecond=0) - timedelta(days=9, hours=1)
    ctx = QueryContext(start, seeded_now, timedelta(hours=bucket_hours))
    variables = resolve_variables(board, runner, ctx, "all")
    sql = panel["targets"][0]["rawSql"]
    blocks = runner.run(sql, variables, ctx)
    hourly = runner.run(sql.replace(BUILD.IN_BLOCKS, "0 = 1").replace(BUILD.IN_DAYS, "0 = 1"), variables, ctx)
    assert blocks.sql != hourly.sql and len(blocks.rows) > 9 * 24 // bucket_hours
    same(blocks.rows, hourly.rows, DIGEST_TOLERANCE)


@pytest.mark.parametrize("bucket_hours", [1, 3, 6, 24, 48])
@pytest.mark.parametrize("table", [BUILD.LATENCY, BUILD.INPUT_TOKENS])
def test_blocks_and_hours_cover_each_hour_of_the_range_once(
    seeded: dict[str, Runner], seeded_now: datetime, table: str, bucket_hours: int
) -> None:
    """The calls per bucket from blocks_and_hours equal the raw rows' over the rollups' whole hours: no hour is
    read from two tables or from none, whichever the bucket (1 hour: the hourly table alone; 3 and 6: 3-hour
    blocks; 24 and 48: days)."""
    runner = seeded["all"]
    start = seeded_now.replace(minute=37, second=0, microsecond=0) - timedelta(days=9, hours=1)
    ctx = QueryContext(start, seeded_now, timedelta(hours=bucket_hours))
    bucket = "toStartOfInterval({}, INTERVAL $__interval_s second) AS time"
    rolled = runner.run(
        f"SELECT {bucket.format('hour')}, sum(spans) FROM ({BUILD.blocks_and_hours(table, '1 = 1')})"
        " GROUP BY time ORDER BY time",
        {},
        ctx,
    )
    raw = runner.run(
        f"SELECT {bucket.format('timestamp')}, count() FROM genai_spans WHERE {hours('timestamp')}"
        " GROUP BY time ORDER BY time",
        {},
        ctx,
    )
    assert len(raw.rows) > 9 * 24 // bucket_hours and rolled.rows == raw.rows


@pytest.mark.parametrize("variable", list(VARIABLES))
def test_a_variable_from_a_rollup_lists_what_the_raw_rows_list(
    seeded: dict[str, Runner], seeded_now: datetime, variable: str
) -> None:
    (board,) = [b for b in BOARDS.values() if any(v["name"] == variable for v in b["templating"]["list"])]
    spec = next(v for v in board["templating"]["list"] if v["name"] == variable)
    runner = seeded["all"]
    ctx = QueryContext(seeded_now - timedelta(days=7), seeded_now, timedelta(minutes=10))
    rollup = runner.run(spec["query"], {}, ctx)
    assert rollup.rows == runner.run(VARIABLES[variable], {}, ctx).rows


@pytest.mark.parametrize("uid", list(ALERTS))
def test_an_alert_from_a_rollup_equals_the_raw_rows(seeded: dict[str, Runner], seeded_now: datetime, uid: str) -> None:
    (rule,) = [r for r in alert_rules() if r["uid"] == uid]
    (query,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
    assert reads_rollup(query["model"]["rawSql"])
    ctx = QueryContext(seeded_now - timedelta(days=14), seeded_now, timedelta(minutes=1))
    runner = seeded[ALERT_DATA[uid]]
    sql = query["model"]["rawSql"]
    while True:  # both at the same now(): their windows move with the clock's minute
        started = datetime.now().replace(second=0, microsecond=0)
        rollup, raw = runner.run(sql, {}, ctx), runner.run(ALERTS[uid], {}, ctx)
        if datetime.now().replace(second=0, microsecond=0) == started:
            break
    assert rollup.rows
    same(rollup.rows, raw.rows, DIGEST_TOLERANCE if reads_digest(sql) else 1e-9)


# --- the backfill ----------------------------------------------------------------------------------------------

BACKFILLED = [m for m in migrations() if 12 <= m.version <= 15]
ROLLUP_COLUMNS = {
    "genai_spans_hourly_stats": "sum(spans), sum(errors), sum(input_tokens), sum(total_cost), max(last_seen),"
    " quantileMerge(0.5)(duration_quantiles), quantileMerge(0.95)(input_tokens_quantiles)",
    "genai_sessions_hourly": "sum(spans), sum(total_cost), min(first_call), max(last_call)",
    "genai_tags_hourly": "sum(spans), sum(total_cost)",
    "genai_spans_ingested_hourly": "sum(spans), max(max_lag_ms), quantileMerge(0.5)(lag_ms_quantiles)",
}
ROLLUP_KEYS = {
    "genai_spans_hourly_stats": "hour, project, service_name, model, feature, operation, price_status",
    "genai_sessions_hourly": "hour, project, service_name, model, feature, user_id, session_id",
    "genai_tags_hourly": "hour, project, service_name, model, feature, tag_key, tag_value",
    "genai_spans_ingested_hourly": "hour, project, service_name, model, feature, convention, price_status",
}


def rolled_up(client: Client, database: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: client.query(
            f"SELECT {ROLLUP_KEYS[table]}, {columns} FROM {{db:Identifier}}.{table}"
            f" GROUP BY {ROLLUP_KEYS[table]} ORDER BY {ROLLUP_KEYS[table]}",
            parameters={"db": database},
        ).result_rows
        for table, columns in ROLLUP_COLUMNS.items()
    }


Rolled = Callable[[Client, str], dict[str, list[tuple[Any, ...]]]]


def check_backfill(
    store: Client, seeded_now: datetime, files: list[Migration], tables: Iterable[str], rolled: Rolled
) -> tuple[str, str]:
    """A store whose rows were stored before `files`: running them rolls the rows up as the views would have,
    and running them again changes nothing. Returns the databases (viewed, backfilled)."""
    viewed, backfilled = (f"g_backfill_{which}_{uuid.uuid4().hex[:8]}" for which in ("viewed", "backfilled"))
    for database in (viewed, backfilled):
        apply_schema(store, database)
    for table in tables:  # as before the files: no views, no rollups (nor the views cascading from them, 031)
        store.command(f"DROP VIEW IF EXISTS {{db:Identifier}}.{table}_mv", parameters={"db": backfilled})
        (cascaded,) = store.query(
            "SELECT dependencies_table FROM system.tables WHERE database = {db:String} AND name = {table:String}",
            parameters={"db": backfilled, "table": table},
        ).first_row
        for view in cascaded:
            store.command(f"DROP VIEW {{db:Identifier}}.{view}", parameters={"db": backfilled})
        store.command(f"DROP TABLE {{db:Identifier}}.{table}", parameters={"db": backfilled})
    for database in (viewed, backfilled):
        seed(store, database, seeded_now, ("drift", "unpriced", "errors"))

    def run_files() -> None:
        for migration in files:
            for statement in statements(migration.text):
                store.command(statement, parameters={"database": backfilled})

    run_files()
    expected = rolled(store, viewed)
    assert all(expected.values())
    assert rolled(store, backfilled) == expected
    run_files()
    assert rolled(store, backfilled) == expected, "a second run must add nothing"
    return viewed, backfilled


def test_the_backfill_rolls_up_stored_rows_once_and_the_views_the_rows_after(
    store: Client, seeded_now: datetime
) -> None:
    """A store whose rows were stored before 012-015: running those files rolls them up as the views would have;
    running them again changes nothing; rows stored after are rolled up by the views."""
    assert [m.version for m in BACKFILLED] == [12, 13, 14, 15]
    viewed, backfilled = check_backfill(store, seeded_now, BACKFILLED, ROLLUP_COLUMNS, rolled_up)
    expected = rolled_up(store, viewed)
    later = seeded_now + timedelta(minutes=5)
    for database in (viewed, backfilled):
        seed(store, database, later, ("spike",))
    after = rolled_up(store, viewed)
    assert after != expected and rolled_up(store, backfilled) == after
    spans = store.query(
        "SELECT count(), sum(total_cost) FROM {db:Identifier}.genai_spans", parameters={"db": backfilled}
    ).result_rows[0]
    stats = store.query(
        "SELECT sum(spans), sum(total_cost) FROM {db:Identifier}.genai_spans_hourly_stats",
        parameters={"db": backfilled},
    ).result_rows[0]
    assert stats == spans and isinstance(stats[1], Decimal)


# --- the calls table's bound -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["all", "several"])
def test_the_latest_calls_read_from_the_hour_holding_500_are_the_latest_500_of_the_range(
    seeded: dict[str, Runner], seeded_now: datetime, mode: str
) -> None:
    """The bound from the hourly rollup narrows the rows read (about a day of seeded calls holds 500) and keeps
    the same 500 rows as reading the whole range."""
    board = BOARDS["calls.json"]
    (panel,) = [p for p in board["panels"] if p["title"] == "Latest calls"]
    runner = seeded["all"]
    ctx = QueryContext(seeded_now - timedelta(days=7), seeded_now, timedelta(minutes=10))
    variables = resolve_variables(board, runner, ctx, mode)
    sql = panel["targets"][0]["rawSql"]
    assert LATEST_BOUND in sql
    since = runner.run(" ".join(BUILD.LATEST_HOURS.split()), variables, ctx).rows[0][0]
    assert since > (seeded_now - timedelta(days=6)).replace(tzinfo=None), since
    bounded = runner.run(sql, variables, ctx)
    whole = runner.run(REFERENCES["Latest calls"], variables, ctx)
    assert whole.sql != bounded.sql and len(bounded.rows) == 500
    assert bounded.rows == whole.rows


# --- the backfill of 023-026 -----------------------------------------------------------------------------------

NARROW = [m for m in migrations() if 23 <= m.version <= 26]
NARROW_COLUMNS = {
    "genai_latency_hourly": ("hour, project, environment, provider, model", "sum(spans)", "duration_digest"),
    "genai_input_tokens_hourly": (
        "hour, project, environment, service_name, operation, feature",
        "sum(spans)",
        "input_tokens_digest",
    ),
    "genai_latency_daily": ("day, project, environment, provider, model", "sum(spans)", "duration_digest"),
    "genai_input_tokens_daily": (
        "day, project, environment, service_name, operation, feature",
        "sum(spans)",
        "input_tokens_digest",
    ),
    "genai_lag_hourly": ("hour, project, environment", "sum(spans), max(max_lag_ms)", "lag_ms_digest"),
    "genai_sessions_daily": (
        "day, project, user_id, session_id",
        "sum(spans), sum(total_cost), min(first_call), max(last_call)",
        "",
    ),
}


def narrow_rolled_up(
    client: Client, database: str, columns: dict[str, tuple[str, str, str]] | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Each rollup's groups with their sums exact, and their t-digest medians rounded to 2 significant digits
    (a digest's centroids depend on how its states were merged: the view's per insert, the backfill's at once)."""
    out = {}
    for table, (keys, sums, digest) in (columns or NARROW_COLUMNS).items():
        median = ""
        if digest:
            value = f"quantileTDigestMerge(0.5)({digest})"
            median = f", round({value}, 1 - toInt32(floor(log10(greatest(abs({value}), 1)))))"
        out[table] = client.query(
            f"SELECT {keys}, {sums}{median} FROM {{db:Identifier}}.{table} GROUP BY {keys} ORDER BY {keys}",
            parameters={"db": database},
        ).result_rows
    return out


# --- the backfill of 027-029 -----------------------------------------------------------------------------------

TIERS = [m for m in migrations() if 27 <= m.version <= 29]
TIER_COLUMNS = {
    "genai_spend_minutely": ("minute, project", "sum(spans), sum(total_cost)", ""),
    "genai_latency_3h": ("hour, project, environment, provider, model", "sum(spans)", "duration_digest"),
    "genai_input_tokens_3h": (
        "hour, project, environment, service_name, operation, feature",
        "sum(spans)",
        "input_tokens_digest",
    ),
}


BACKFILLS = {"023-026": (NARROW, NARROW_COLUMNS), "027-029": (TIERS, TIER_COLUMNS)}


@pytest.mark.parametrize("files", list(BACKFILLS))
def test_the_narrow_and_tier_rollups_backfill_stored_rows_once_and_the_views_the_rows_after(
    store: Client, seeded_now: datetime, files: str
) -> None:
    """A store whose rows were stored before 023-026 (or 027-029): running those files rolls them up as the views
    would have; running them again changes nothing; rows stored after are rolled up by the views."""
    migrations_, columns = BACKFILLS[files]
    first, last = (int(v) for v in files.split("-"))
    assert [m.version for m in migrations_] == list(range(first, last + 1))

    def rolled(client: Client, database: str) -> dict[str, list[tuple[Any, ...]]]:
        return narrow_rolled_up(client, database, columns)

    viewed, backfilled = check_backfill(store, seeded_now, migrations_, columns, rolled)
    expected = rolled(store, viewed)
    for database in (viewed, backfilled):
        seed(store, database, seeded_now + timedelta(minutes=5), ("spike",))
    after = rolled(store, viewed)
    assert after != expected and rolled(store, backfilled) == after
    (spans,) = store.query("SELECT count() FROM {db:Identifier}.genai_spans", parameters={"db": backfilled}).first_row
    for table in columns:
        summed = store.query(f"SELECT sum(spans) FROM {{db:Identifier}}.{table}", parameters={"db": backfilled})
        assert summed.first_row == (spans,), table


# --- 031, 034: rollups read another rollup -------------------------------------------------------------------

OPERATIONS = "operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')"
ROLLUP_SUMS = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "input_cost",
    "cache_read_cost", "cache_write_cost", "output_cost", "total_cost", "duration_ns",
)  # fmt: skip
ESTIMATED = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
CASCADES = {
    # table: (the rollup it reads, its keys, the same over genai_spans, its sums, the same over genai_spans, its
    # digests and their raw values, each comma-separated)
    "genai_latency_daily": (
        "genai_latency_hourly",
        "day, project, environment, provider, model",
        "toStartOfDay(timestamp, 'UTC') AS day, project, environment, provider,"
        " if(response_model != '', response_model, request_model) AS model",
        "sum(spans)",
        "count()",
        "duration_digest",
        "duration_ns",
    ),
    "genai_latency_3h": (
        "genai_latency_hourly",
        "hour, project, environment, provider, model",
        "toStartOfInterval(toStartOfHour(timestamp), INTERVAL 10800 second) AS hour, project, environment, provider,"
        " if(response_model != '', response_model, request_model) AS model",
        "sum(spans)",
        "count()",
        "duration_digest",
        "duration_ns",
    ),
    "genai_input_tokens_daily": (
        "genai_input_tokens_hourly",
        "day, project, environment, service_name, operation, feature",
        "toStartOfDay(timestamp, 'UTC') AS day, project, environment, service_name, operation, feature",
        "sum(spans)",
        "count()",
        "input_tokens_digest",
        "input_tokens",
    ),
    "genai_input_tokens_3h": (
        "genai_input_tokens_hourly",
        "hour, project, environment, service_name, operation, feature",
        "toStartOfInterval(toStartOfHour(timestamp), INTERVAL 10800 second) AS hour, project, environment,"
        " service_name, operation, feature",
        "sum(spans)",
        "count()",
        "input_tokens_digest",
        "input_tokens",
    ),
    "genai_sessions_daily": (
        "genai_sessions_hourly",
        "day, project, user_id, session_id",
        "toStartOfDay(timestamp, 'UTC') AS day, project, user_id, session_id",
        "sum(spans), sum(total_cost), min(first_call), max(last_call), sum(estimated_spans), sum(estimated_cost)",
        f"count(), sum(total_cost), min(timestamp), max(timestamp), sum({WEIGHT_SQL}),"
        f" sum({weighed_sql('span.total_cost')})",
        "",
        "",
    ),
    "genai_spans_hourly": (
        "genai_spans_hourly_stats",
        "hour, project, service_name, environment, provider, model, feature",
        "toStartOfHour(timestamp) AS hour, project, service_name, environment, provider,"
        " if(response_model != '', response_model, request_model) AS model, feature",
        "sum(requests), sum(errors), sum(unpriced_requests), "
        + ", ".join(f"sum({c})" for c in ROLLUP_SUMS)
        + ", sum(estimated_requests), "
        + ", ".join(f"sum(estimated_{c})" for c in ESTIMATED)
        + ", sum(estimated_cost)",
        f"countIf({OPERATIONS}), countIf(status_code = 'ERROR'), countIf(price_status = 'unpriced'), "
        + ", ".join(f"sum(span.{c})" for c in ROLLUP_SUMS)
        + f", sumIf({WEIGHT_SQL}, {OPERATIONS}), "
        + ", ".join(weighed_sql(f"span.{c}").join(("sum(", ")")) for c in ESTIMATED)
        + f", sum({weighed_sql('span.total_cost')})",
        "",
        "",
    ),
    "genai_spans_hourly_stats": (  # what 034 adds to it (backfilled), the others as before
        "genai_spans",
        "hour, project, service_name, environment, provider, model, feature, operation, price_status",
        "toStartOfHour(timestamp) AS hour, project, service_name, environment, provider,"
        " if(response_model != '', response_model, request_model) AS model, feature, operation, price_status",
        "sum(spans), sum(reasoning_tokens), sum(duration_ns), "
        + ", ".join(f"sum(estimated_{c})" for c in ESTIMATED)
        + ", max(last_seen), min(first_ingested)",
        "count(), sum(span.reasoning_tokens), sum(span.duration_ns), "
        + ", ".join(weighed_sql(f"span.{c}").join(("sum(", ")")) for c in ESTIMATED)
        + ", max(timestamp), min(ingested_at)",
        "duration_digest, input_tokens_digest",
        "duration_ns, input_tokens",
    ),
    "genai_latency_hourly": (
        "genai_spans_hourly_stats",
        "hour, project, environment, provider, model",
        "toStartOfHour(timestamp) AS hour, project, environment, provider,"
        " if(response_model != '', response_model, request_model) AS model",
        "sum(spans)",
        "count()",
        "duration_digest",
        "duration_ns",
    ),
    "genai_input_tokens_hourly": (
        "genai_spans_hourly_stats",
        "hour, project, environment, service_name, operation, feature",
        "toStartOfHour(timestamp) AS hour, project, environment, service_name, operation, feature",
        "sum(spans)",
        "count()",
        "input_tokens_digest",
        "input_tokens",
    ),
}
CASCADED = {m.version: m for m in migrations() if m.version in (31, 34)}
COUNTED = {"genai_spans_hourly": ("requests", OPERATIONS)}  # (a rollup's count of calls, the rows it counts)
CASCADED_BY = {
    31: [table for table, entry in CASCADES.items() if entry[0].endswith("_hourly")],
    34: ["genai_spans_hourly_stats"]
    + [table for table, entry in CASCADES.items() if entry[0] == "genai_spans_hourly_stats"],
}


def add_reasoning(client: Client, database: str) -> None:
    """A copy of every seventh second's rows with reasoning and cache-write tokens, every other one sampled at
    half: the seed has neither."""
    client.command(
        "INSERT INTO {db:Identifier}.genai_spans SELECT * REPLACE (output_tokens * 2 + 1 AS reasoning_tokens,"
        " input_tokens % 97 AS cache_write_tokens,"
        " if(toSecond(timestamp) % 2 = 0, 36028797018963968, sampling_threshold) AS sampling_threshold)"
        " FROM {db:Identifier}.genai_spans WHERE toUnixTimestamp(timestamp) % 7 = 0",
        parameters={"db": database},
    )


def cascade_rows(client: Client, database: str, table: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the rollup's groups, the same groups over genai_spans): keys, exact sums, and the median of each digest
    beside that of one t-digest of the group's raw values."""
    _, keys, raw_keys, sums, raw_sums_, digests, values = CASCADES[table]
    names = keys.replace(" ", "")
    rolled = f"SELECT {keys}, {sums}" + "".join(f", quantileTDigestMerge(0.5)({d})" for d in digests.split(", ") if d)
    raw = f"SELECT {raw_keys}, {raw_sums_}" + "".join(f", quantileTDigest(0.5)({v})" for v in values.split(", ") if v)
    return tuple(  # type: ignore[return-value]
        client.query(
            f"{sql} FROM {{db:Identifier}}.{source} GROUP BY {names} ORDER BY {names}", parameters={"db": database}
        ).result_rows
        for sql, source in ((rolled, table), (raw, "genai_spans AS span"))
    )


@pytest.mark.parametrize("version", list(CASCADED_BY))
def test_rollups_cascade_from_another_and_count_each_row_once(
    store: Client, seeded_now: datetime, version: int
) -> None:
    """031 moves the daily and 3-hour rollups' views from genai_spans to an hourly rollup's table, 034 the hourly
    rollups by model and by operation to genai_spans_hourly_stats (and backfills what it adds there). A store
    before the migration with rows keeps what they rolled up (the migration run twice); rows stored after reach each
    rollup once, through the one it reads (sums and estimates exact, medians within the digests' tolerance of the
    raw rows'), as in a store created with every migration; a retried insert (same insert_deduplication_token) is
    dropped at every level."""
    tables = CASCADED_BY[version]
    before, created = (f"g_cascade_{which}_{uuid.uuid4().hex[:8]}" for which in ("before", "created"))
    store.command("CREATE DATABASE {db:Identifier}", parameters={"db": before})
    for statement in [s for m in migrations() if m.version < version for s in statements(m.text)]:
        store.command(statement, parameters={"database": before})
    apply_schema(store, created)
    for database in (before, created):
        seed(store, database, seeded_now, ("drift", "unpriced"))
        add_reasoning(store, database)
    for statement in statements(CASCADED[version].text):
        store.command(statement, parameters={"database": before})
    for database in (before, created):
        seed(store, database, seeded_now + timedelta(minutes=5), ("spike",))
        add_reasoning(store, database)
    for statement in statements(CASCADED[version].text):  # run again: nothing changes
        store.command(statement, parameters={"database": before})

    for table in tables:
        view = store.query(
            "SELECT dependencies_table FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": created, "t": CASCADES[table][0]},
        ).first_row[0]
        assert f"{table}_mv" in view, (table, view)
        results = {database: cascade_rows(store, database, table) for database in (before, created)}
        exact = len(results[created][0][0]) - len(list(filter(None, CASCADES[table][5].split(", "))))  # sums
        for rolled, raw in results.values():
            assert len(rolled) == len(raw) > 1, table
            for got, want in zip(rolled, raw, strict=True):
                assert got[:exact] == want[:exact], (table, got, want)
                for median, raw_median in zip(got[exact:], want[exact:], strict=True):
                    assert math.isclose(median, raw_median, rel_tol=DIGEST_TOLERANCE, abs_tol=1), (table, got, want)
        assert [row[:exact] for row in results[before][0]] == [row[:exact] for row in results[created][0]], table

    def totals(database: str) -> tuple[list[Any], list[Any]]:
        """Each rollup's count of calls, and the same counted over genai_spans."""
        counted = [COUNTED.get(table, ("spans", "1")) for table in tables]
        rolled = [
            store.query(f"SELECT sum({c}) FROM {{db:Identifier}}.{t}", parameters={"db": database}).first_row[0]
            for t, (c, _) in zip(tables, counted, strict=True)
        ]
        raw = store.query(
            f"SELECT {', '.join(f'countIf({where})' for _, where in counted)} FROM {{db:Identifier}}.genai_spans",
            parameters={"db": database},
        ).first_row
        return rolled, list(raw)

    rolled, raw = totals(created)
    assert rolled == raw
    rows = store.query(
        "SELECT * FROM {db:Identifier}.genai_spans ORDER BY timestamp LIMIT 7", parameters={"db": created}
    )
    token = uuid.uuid4().hex
    for _ in range(2):  # a retry of one insert
        store.insert(
            "genai_spans",
            rows.result_rows,
            column_names=rows.column_names,
            database=created,
            settings={**INSERT_SETTINGS, "insert_deduplication_token": token},  # as the exporter inserts
        )
    rolled_after, raw_after = totals(created)
    assert rolled_after == raw_after and raw_after != raw
