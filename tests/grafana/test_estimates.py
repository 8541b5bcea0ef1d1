"""Sampling-estimated sums in the rollups (clickhouse/schema/030): on seeded rows of which some were kept by
probability sampling (10 % and 25 %, seed.py), each rollup's `estimated_*` sums equal the raw rows' weighted sums
exactly, in Decimal, and `spanmeter report`'s estimates for the same rows; where no row of a group was sampled,
they equal the stored sums. Then 030's backfill: rows stored before it (and rows its views' old queries rolled up
after its columns were added) are weighted once, however often it runs, and the rows after by the views."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from spanmeter.migrations import migrations
from spanmeter.report import ReportRequest, run_report
from spanmeter.sampling import WEIGHT_SQL, rounded_cost, rounded_count, weighed_sql
from spanmeter.store import statements

from .conftest import Runner, alert_rules, load_queries
from .plugin_macros import QueryContext
from .seed import seed

MODEL = "if(response_model != '', response_model, request_model)"
(ESTIMATED_ROLLUPS,) = [m for m in migrations() if m.version == 30]
CALL = "operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')"
HOUR = "toStartOfHour(timestamp)"
DAY = "toStartOfDay(timestamp, 'UTC')"


def cost(column: str = "total_cost") -> tuple[str, str]:
    return f"estimated_{'cost' if column == 'total_cost' else column}", f"sum({weighed_sql(column)})"


SPANS = ("estimated_spans", f"sum({WEIGHT_SQL})")
TOKENS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]

# Each rollup 030 weighs: its key columns (as the rollup names them, and over genai_spans), its estimates (the
# rollup's column, the raw rows' weighted sum as `spanmeter report` computes it) and the stored sum each estimates.
ESTIMATES: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]] = {
    "genai_spans_hourly": (
        [("hour", HOUR), ("project", "project"), ("service_name", "service_name"), ("environment", "environment"),
         ("provider", "provider"), ("model", MODEL), ("feature", "feature")],
        [("estimated_requests", f"sumIf({WEIGHT_SQL}, {CALL})"), *(cost(c) for c in TOKENS), cost()],
        ["requests", *TOKENS, "total_cost"],
    ),
    "genai_spans_hourly_stats": (
        [("hour", HOUR), ("project", "project"), ("service_name", "service_name"), ("environment", "environment"),
         ("provider", "provider"), ("model", MODEL), ("feature", "feature"), ("operation", "operation"),
         ("price_status", "price_status")],
        [SPANS, cost("input_tokens"), cost("output_tokens"), cost()],
        ["spans", "input_tokens", "output_tokens", "total_cost"],
    ),
    "genai_sessions_hourly": (
        [("hour", HOUR), ("project", "project"), ("model", MODEL), ("user_id", "user_id"),
         ("session_id", "session_id")],
        [SPANS, cost()],
        ["spans", "total_cost"],
    ),
    "genai_sessions_daily": (
        [("day", DAY), ("project", "project"), ("user_id", "user_id"), ("session_id", "session_id")],
        [SPANS, cost()],
        ["spans", "total_cost"],
    ),
    "genai_tags_hourly": (
        [("hour", HOUR), ("project", "project"), ("tag_key", "tag.1"), ("tag_value", "tag.2")],
        [SPANS, cost()],
        ["spans", "total_cost"],
    ),
    "genai_spend_minutely": (
        [("minute", "toStartOfMinute(timestamp)"), ("project", "project")],
        [cost()],
        ["total_cost"],
    ),
}  # fmt: skip


def rollup_sums(client: Client, database: str, table: str) -> list[tuple[Any, ...]]:
    """The rollup's groups: keys, estimates, stored sums."""
    keys, estimates, stored = ESTIMATES[table]
    names = ", ".join(name for name, _ in keys)
    sums = ", ".join(f"sum({column})" for column, _ in estimates) + ", " + ", ".join(f"sum({c})" for c in stored)
    return client.query(
        f"SELECT {names}, {sums} FROM {{db:Identifier}}.{table} GROUP BY {names} ORDER BY {names}",
        parameters={"db": database},
    ).result_rows


def raw_sums(client: Client, database: str, table: str) -> list[tuple[Any, ...]]:
    """The same groups over genai_spans: the weighted sums as `spanmeter report` computes them, then the stored."""
    keys, estimates, stored = ESTIMATES[table]
    names = ", ".join(f"{expression} AS k{n}" for n, (_, expression) in enumerate(keys))
    group = ", ".join(f"k{n}" for n in range(len(keys)))
    counted = {"requests": f"countIf({CALL})", "spans": "count()"}
    sums = ", ".join(weighted for _, weighted in estimates) + ", "
    sums += ", ".join(counted.get(column, f"sum(spans.{column})") for column in stored)
    tags = " ARRAY JOIN arrayZip(mapKeys(tags), mapValues(tags)) AS tag" if table == "genai_tags_hourly" else ""
    return client.query(
        f"SELECT {names}, {sums} FROM {{db:Identifier}}.genai_spans AS spans{tags} GROUP BY {group} ORDER BY {group}",
        parameters={"db": database},
    ).result_rows


@pytest.mark.parametrize("table", list(ESTIMATES))
def test_a_rollups_estimates_are_the_rows_weighted_sums_exactly(seeded: dict[str, Runner], table: str) -> None:
    runner = seeded["all"]
    rolled, raw = rollup_sums(runner.client, runner.database, table), raw_sums(runner.client, runner.database, table)
    assert rolled == raw  # Decimal against Decimal: every group, every digit
    keys, estimates = len(ESTIMATES[table][0]), len(ESTIMATES[table][1])
    pairs = [(row[keys : keys + estimates], row[keys + estimates :]) for row in rolled]
    sampled = [(estimated, stored) for estimated, stored in pairs if estimated != tuple(map(Decimal, stored))]
    unsampled = [(estimated, stored) for estimated, stored in pairs if estimated == tuple(map(Decimal, stored))]
    # Some groups hold sampled calls (estimated above stored), the others none: their estimates are the stored sums.
    assert sampled and unsampled and all(isinstance(value, Decimal) for value in pairs[0][0])
    assert all(e >= Decimal(s) for estimated, stored in sampled for e, s in zip(estimated, stored, strict=True))
    (groups_without_sampling,) = runner.client.query(
        f"SELECT count() FROM (SELECT 1 FROM {{db:Identifier}}.genai_spans"
        f"{' ARRAY JOIN arrayZip(mapKeys(tags), mapValues(tags)) AS tag' if table == 'genai_tags_hourly' else ''}"
        f" GROUP BY {', '.join(expression for _, expression in ESTIMATES[table][0])}"
        " HAVING max(sampling_threshold) = 0)",
        parameters={"db": runner.database},
    ).first_row
    assert len(unsampled) == groups_without_sampling


def test_the_rollups_estimates_are_what_report_estimates(seeded: dict[str, Runner], seeded_now: datetime) -> None:
    """`spanmeter report --by project` over whole hours: its estimated cost and requests are the hourly rollups'
    estimated sums over those hours, rounded as report rounds them (12 places, whole calls); sampled calls are
    in every project, so the estimates are not the stored sums."""
    runner = seeded["all"]
    end = seeded_now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=3)
    rows = run_report(runner.client, runner.database, ReportRequest(by="project", start=start, end=end))
    window = {"db": runner.database, "start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)}
    where = "hour >= {start:DateTime} AND hour < {end:DateTime} GROUP BY project"
    hourly = {
        project: (cost_, calls)
        for project, cost_, calls in runner.client.query(
            f"SELECT project, sum(estimated_cost), sum(estimated_requests) FROM {{db:Identifier}}.genai_spans_hourly"
            f" WHERE {where}",
            parameters=window,
        ).result_rows
    }
    stats = dict(
        runner.client.query(
            f"SELECT project, sum(estimated_cost) FROM {{db:Identifier}}.genai_spans_hourly_stats WHERE {where}",
            parameters=window,
        ).result_rows
    )
    assert {row.group for row in rows} == set(hourly) == set(stats) == {"acme", "labs"}
    for row in rows:
        cost_, calls = hourly[row.group]
        assert row.estimated and row.estimated_cost > row.total_cost
        assert row.estimated_cost == rounded_cost(cost_) == rounded_cost(stats[row.group])
        assert row.estimated_requests == rounded_count(calls)


def test_the_daily_spend_alert_reads_the_estimated_spend(seeded: dict[str, Runner], seeded_now: datetime) -> None:
    (rule,) = [r for r in alert_rules() if r["uid"] == "spanmeter-daily-spend"]
    (query,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
    runner = seeded["all"]
    ctx = QueryContext(seeded_now - timedelta(days=1), seeded_now, timedelta(minutes=1))
    alert = dict(runner.run(query["model"]["rawSql"], {}, ctx).rows)
    raw = dict(
        runner.run(
            f"SELECT project, toFloat64(sum({weighed_sql('total_cost')})) FROM genai_spans"
            " WHERE timestamp >= toStartOfDay(now('UTC')) GROUP BY project",
            {},
            ctx,
        ).rows
    )
    assert set(alert) == set(raw) == {"acme", "labs"}
    assert all(alert[project] == pytest.approx(raw[project], rel=1e-12) for project in raw)


def test_the_dashboards_and_030_weigh_rows_with_reports_expressions() -> None:
    """One weight everywhere: the dashboards' SQL for the rows and 030's views and backfill write the expressions
    of collector/sampling.py, which `spanmeter report` and the budgets run."""
    assert load_queries().weighed("total_cost") == weighed_sql("total_cost")
    text = ESTIMATED_ROLLUPS.text
    assert WEIGHT_SQL in text and weighed_sql("span.total_cost") in text
    for expression in [WEIGHT_SQL, *(weighed_sql(f"span.{column}") for column in ["total_cost", *TOKENS])]:
        text = text.replace(expression, "")
    assert str(1 << 56) not in text  # no weight written otherwise


# --- 030's backfill ---------------------------------------------------------------------------------------------


def everything(client: Client, database: str) -> dict[str, list[tuple[Any, ...]]]:
    return {table: rollup_sums(client, database, table) for table in ESTIMATES}


def test_the_backfill_weighs_the_rows_stored_before_once_and_the_views_the_rows_after(
    store: Client, seeded_now: datetime
) -> None:
    """A store at 029 whose rows include sampled calls: 030 gives its rollups the estimates the views give a store
    created at 030 (`viewed`), stored sums unchanged, also for rows the old views rolled up between 030's
    ADD COLUMN and its MODIFY QUERY (a collector still writing meanwhile); run again after more rows, it adds
    nothing."""
    viewed, before = (f"g_estimates_{which}_{uuid.uuid4().hex[:8]}" for which in ("viewed", "before"))

    def run(statements_: list[str]) -> None:
        for statement in statements_:
            store.command(statement, parameters={"database": before})

    store.command("CREATE DATABASE {db:Identifier}", parameters={"db": before})
    run([s for m in migrations() if m.version < 30 for s in statements(m.text)])
    store.command("CREATE DATABASE {db:Identifier}", parameters={"db": viewed})
    for m in migrations():
        for statement in statements(m.text):
            store.command(statement, parameters={"database": viewed})

    batches = [
        (seeded_now, ("drift", "unpriced")),
        (seeded_now + timedelta(minutes=3), ("errors",)),
        (seeded_now + timedelta(minutes=6), ("spike",)),
    ]
    at, troubles = batches[0]
    for database in (viewed, before):
        seed(store, database, at, troubles)
    added = [s for s in statements(ESTIMATED_ROLLUPS.text) if " ADD COLUMN " in s]
    assert len(added) == len(ESTIMATES)
    run(added)  # the columns, the old views still writing: these rows count at weight 1 until the backfill
    at, troubles = batches[1]
    for database in (viewed, before):
        seed(store, database, at, troubles)
    for table in ESTIMATES:  # so far every row at weight 1: the estimates are the stored sums
        keys, estimates = len(ESTIMATES[table][0]), len(ESTIMATES[table][1])
        rows = rollup_sums(store, before, table)
        assert all(row[keys : keys + estimates] == tuple(map(Decimal, row[keys + estimates :])) for row in rows)
        assert rows != raw_sums(store, before, table), table
    run(statements(ESTIMATED_ROLLUPS.text))

    expected = everything(store, viewed)
    assert everything(store, before) == expected
    for table in ESTIMATES:  # the estimates are the rows' weighted sums, the stored sums the rows' sums
        assert rollup_sums(store, before, table) == raw_sums(store, before, table), table

    at, troubles = batches[2]
    for database in (viewed, before):
        seed(store, database, at, troubles)
    run(statements(ESTIMATED_ROLLUPS.text))
    assert everything(store, before) == everything(store, viewed) != expected, "a second run must add nothing"
    for table in ESTIMATES:
        assert rollup_sums(store, before, table) == raw_sums(store, before, table), table
