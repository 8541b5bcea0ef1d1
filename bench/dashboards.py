"""Every dashboard panel, dashboard variable and alert rule query, timed on a year-scale embedded store.

    python bench/dashboards.py [--store DIR] [--refill] [--rows 30000000] [--days 90] [--runs 5]
                               [--ranges 7d,30d] [--dashboards DIR] [--rules FILE] [--json OUT]

The store (chDB, `chdb://DIR`, database `spanmeter`) gets the project's schema through the collector's
migrations, then N rows over the last D days, written by `INSERT INTO genai_spans SELECT ... FROM numbers()`
in blocks of 2 M rows, so the rollups' materialized views see every row as they do behind the collector.
Cardinalities: 20 services in 4 projects (3 of them in staging), 8 models of 4 providers (each service calls 3),
12 features (2 per service, each mostly on one model), 10,000 users (85 % of a user's calls to one service),
100,000 sessions (of 300 calls each, 100 at a time: 2 hours at 30 M rows over 90 days), 1 call in 2,000
unpriced, 2 % errors. A filled store is kept and reused (delete it or pass --refill to fill again); opening it
applies any newer migration, backfills included, and the time that took is printed.

Each query is expanded as Grafana and the ClickHouse plugin expand it (tests/grafana/plugin_macros.py), with
every dashboard variable on All and the range of each --ranges entry ending now (a panel's own `timeFrom`
wins, as in Grafana; alert rules keep their own range), then run once to warm up and --runs times. Prints
each query's median milliseconds and how many are over 200 ms. --dashboards / --rules time other files (the
committed ones of an older revision, say: `git show REV:grafana/dashboards/models.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import yaml
from clickhouse_connect.driver.client import Client

from spanmeter import prices
from spanmeter.store import apply_schema, connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.grafana.plugin_macros import (  # noqa: E402  (the repository's tests are no package on the path)
    ALL,
    QueryContext,
    Variable,
    expand,
    grafana_duration,
    panel_interval,
)

DATABASE = "spanmeter"
LIMIT_MS = 200.0
BLOCK = 2_000_000

# One row per n, every value a hash of n: the same store for the same --rows and --days.
FILL = """
INSERT INTO {database:Identifier}.genai_spans
    (timestamp, trace_id, span_id, parent_span_id, project, service_name, environment, operation, provider,
     request_model, response_model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
     reasoning_tokens, input_cost, cache_read_cost, cache_write_cost, output_cost, total_cost, price_status,
     price_source, duration_ns, status_code, error_type, finish_reasons, user_id, session_id, conversation_id,
     feature, tags, convention, span_attributes, resource_attributes, ingested_at)
SELECT
    ts AS timestamp,
    lower(hex(sipHash128(n))) AS trace_id,
    lower(hex(sipHash64(n, 1))) AS span_id,
    '' AS parent_span_id,
    concat('project-', toString(service % 4)) AS project,
    concat('service-', leftPad(toString(service), 2, '0')) AS service_name,
    if(service >= 17, 'staging', 'prod') AS environment,
    multiIf(h2 % 100 < 90, 'chat', h2 % 100 < 95, 'embeddings', 'invoke_agent') AS operation,
    models[model_index].1 AS provider,
    if(unpriced, 'acme-llm-9', models[model_index].2) AS request_model,
    request_model AS response_model,
    toUInt64(100 + pow(h3 % 1000 / 1000, 3) * 12000) AS input_tokens,
    if(operation = 'embeddings', 0, toUInt64(20 + h4 % 900)) AS output_tokens,
    if(provider = 'anthropic', intDiv(input_tokens, 3), 0) AS cache_read_tokens,
    0 AS cache_write_tokens,
    0 AS reasoning_tokens,
    if(unpriced, toDecimal64(0, 12), toDecimal64((input_tokens - cache_read_tokens) * models[model_index].3, 12))
        AS input_cost,
    if(unpriced, toDecimal64(0, 12), toDecimal64(cache_read_tokens * models[model_index].3 / 10, 12))
        AS cache_read_cost,
    toDecimal64(0, 12) AS cache_write_cost,
    if(unpriced, toDecimal64(0, 12), toDecimal64(output_tokens * models[model_index].4, 12)) AS output_cost,
    input_cost + cache_read_cost + output_cost AS total_cost,
    if(unpriced, 'unpriced', 'priced') AS price_status,
    if(unpriced, '', 'genai-prices 0.2.3') AS price_source,
    toUInt64(200000000 + (h4 % 4000) * 1000000 + input_tokens * 50000) AS duration_ns,
    if(h5 % 50 = 0, 'ERROR', 'OK') AS status_code,
    if(status_code = 'ERROR', '429', '') AS error_type,
    if(status_code = 'OK', ['stop'], []) AS finish_reasons,
    concat('user-', toString(user)) AS user_id,
    concat('session-', toString(session)) AS session_id,
    '' AS conversation_id,
    concat('feature-', toString((service * 2 + feature_slot) % 12)) AS feature,
    map('feature', feature, 'team', concat('team-', toString(service % 6)), 'user.id', user_id) AS tags,
    multiIf(h7 DIV 10 % 10 < 8, 'otel_genai', h7 DIV 10 % 10 = 8, 'openllmetry', 'openinference') AS convention,
    map('gen_ai.request.temperature', '0.7', 'gen_ai.request.max_tokens', '1024') AS span_attributes,
    map('service.name', service_name, 'host.name', concat('host-', toString(h5 % 40))) AS resource_attributes,
    ts + toIntervalMillisecond(300 + h5 % 3000) AS ingested_at
FROM (
    SELECT
        number AS n,
        sipHash64(n, 2) AS h1, sipHash64(n, 3) AS h2, sipHash64(n, 4) AS h3, sipHash64(n, 5) AS h4,
        sipHash64(n, 6) AS h5, sipHash64(n, 7) AS h6, sipHash64(n, 8) AS h7,
        intDiv(n * 1000, {rows:UInt64}) * 100 + h6 % 100 AS session,
        sipHash64(session) % 10000 AS user,
        if(h1 % 100 < 85, user % 20, h1 % 20) AS service,
        (h2 DIV 100) % 2 AS feature_slot,
        1 + (service + feature_slot * 3 + if(h1 DIV 100 % 10 = 0, 1, 0)) % 8 AS model_index,
        h1 % 2000 = 7 AS unpriced,
        fromUnixTimestamp64Nano(toInt64({start_ns:Int64} + n * {step_ns:Int64} + h4 % {step_ns:Int64}), 'UTC') AS ts,
        [('openai', 'gpt-4o', 2.5e-6, 1e-5), ('openai', 'gpt-4o-mini', 1.5e-7, 6e-7),
         ('openai', 'o3-mini', 1.1e-6, 4.4e-6), ('anthropic', 'claude-sonnet-4', 3e-6, 1.5e-5),
         ('anthropic', 'claude-haiku-4', 1e-6, 5e-6),
         ('google', 'gemini-2.5-pro', 1.25e-6, 1e-5), ('google', 'gemini-2.5-flash', 3e-7, 2.5e-6),
         ('deepseek', 'deepseek-chat', 2.7e-7, 1.1e-6)] AS models
    FROM numbers({first:UInt64}, {count:UInt64})
)
"""


@dataclass
class Query:
    kind: str  # panel, variable, alert
    name: str
    sql: str
    ctx: QueryContext
    variables: dict[str, Variable]


def open_store(path: Path, refill: bool, rows: int, days: int) -> Client:
    marker = path / "spanmeter-bench-filled.json"
    if refill and path.exists():
        import shutil

        shutil.rmtree(path)
    client = connect(f"chdb://{path}")
    started = time.perf_counter()
    apply_schema(client, DATABASE)
    print(f"schema (migrations) applied in {time.perf_counter() - started:.1f} s")
    # What a collector writes at its start: the Models dashboard's 'Compare with' reads it.
    print(f"model_prices: {prices.refresh(client, DATABASE)} rows of genai-prices")
    if marker.exists():
        print(f"reusing the filled store at {path}: {marker.read_text().strip()}")
        return client
    end = datetime.now(UTC)
    start_ns = int((end - timedelta(days=days)).timestamp() * 1e9)
    step_ns = int(days * 86400 * 1e9 // rows)
    started = time.perf_counter()
    for first in range(0, rows, BLOCK):
        count = min(BLOCK, rows - first)
        client.command(
            FILL,
            parameters={
                "database": DATABASE,
                "start_ns": start_ns,
                "step_ns": step_ns,
                "first": first,
                "count": count,
                "rows": rows,
            },
            settings={"max_insert_block_size": 1_048_576, "min_insert_block_size_rows": 1_048_576},
        )
        print(f"  {first + count:,} rows, {time.perf_counter() - started:.0f} s", flush=True)
    elapsed = time.perf_counter() - started
    filled = {"rows": rows, "days": days, "end": end.isoformat(), "fill_seconds": round(elapsed, 1)}
    marker.write_text(json.dumps(filled) + "\n")
    print(f"filled {rows:,} rows over {days} days in {elapsed:.0f} s")
    return client


def run(client: Client, query: Query) -> tuple[str, Any]:
    sql = expand(query.sql, query.variables, query.ctx)
    return sql, client.query(sql, settings={"readonly": 2})


def resolve_variables(client: Client, board: dict[str, Any], ctx: QueryContext) -> list[Query]:
    """The board's variable queries, each with every variable before it on All (a single-value one on its first
    option), as a dashboard opening with the defaults runs them."""
    variables: dict[str, Variable] = {}
    queries = []
    for spec in board["templating"]["list"]:
        if spec["type"] != "query":  # a data source, a text box: their current value
            variables[spec["name"]] = Variable(spec["name"], spec["current"]["value"])
            continue
        query = Query("variable", f"{board['title']} / ${spec['name']}", spec["query"], ctx, dict(variables))
        queries.append(query)
        _, result = run(client, query)
        options = [str(row[0]) for row in result.result_rows]
        value: str | list[str] = [ALL] if spec["multi"] else (options[0] if options else "")
        variables[spec["name"]] = Variable(spec["name"], value, options)
    for query in queries:
        query.variables = variables
    return queries


def dashboard_queries(client: Client, directory: Path, since: timedelta, now: datetime) -> list[Query]:
    queries = []
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text())
        board_ctx = QueryContext(now - since, now, panel_interval(now - since, now))
        queries += resolve_variables(client, board, board_ctx)
        variables = queries[-1].variables if queries else {}
        for panel in board["panels"]:
            start = now - (grafana_duration(panel["timeFrom"]) if panel.get("timeFrom") else since)
            minimum = grafana_duration(panel["interval"]) if panel.get("interval") else None
            ctx = QueryContext(
                start, now, panel_interval(start, now, panel.get("maxDataPoints", 1000), minimum=minimum)
            )
            for target in panel["targets"]:
                queries.append(Query("panel", f"{board['title']} / {panel['title']}", target["rawSql"], ctx, variables))
    return queries


def alert_queries(rules_file: Path, now: datetime) -> list[Query]:
    queries = []
    for group in yaml.safe_load(rules_file.read_text())["groups"]:
        for rule in group["rules"]:
            for data in rule["data"]:
                if data["datasourceUid"] == "__expr__":
                    continue
                span = data["relativeTimeRange"]
                ctx = QueryContext(
                    now - timedelta(seconds=span["from"]),
                    now - timedelta(seconds=span["to"]),
                    timedelta(milliseconds=data["model"]["intervalMs"]),
                )
                queries.append(Query("alert", f"alert / {rule['title']}", data["model"]["rawSql"], ctx, {}))
    return queries


def time_queries(client: Client, queries: list[Query], runs: int) -> list[dict[str, Any]]:
    timings = []
    seen: set[str] = set()
    for query in queries:
        sql = expand(query.sql, query.variables, query.ctx)
        if sql in seen:  # the same variable query on several dashboards: once
            continue
        seen.add(sql)
        run(client, query)  # warm-up: the marks and the page cache, as a dashboard opened before
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            _, result = run(client, query)
            samples.append((time.perf_counter() - started) * 1000)
        timings.append(
            {
                "kind": query.kind,
                "name": query.name,
                "median_ms": statistics.median(samples),
                "max_ms": max(samples),
                "rows": len(result.result_rows),
            }
        )
    return timings


def report(label: str, timings: list[dict[str, Any]]) -> None:
    over = [t for t in timings if t["median_ms"] > LIMIT_MS]
    medians = [t["median_ms"] for t in timings] or [0.0]
    print(f"\n== {label}: {len(timings)} queries, median of medians {statistics.median(medians):.0f} ms, "
          f"{len(over)} over {LIMIT_MS:.0f} ms")  # fmt: skip
    for timing in sorted(timings, key=lambda t: -t["median_ms"]):
        flag = " *" if timing["median_ms"] > LIMIT_MS else ""
        print(f"{timing['median_ms']:8.1f} ms  {timing['kind']:8}  {timing['name']}  ({timing['rows']} rows){flag}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("/tmp/spanmeter-bench-dashboards"))
    parser.add_argument("--refill", action="store_true", help="delete the store and fill it again")
    parser.add_argument("--rows", type=int, default=30_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ranges", default="7d,30d")
    parser.add_argument("--dashboards", type=Path, default=REPO / "grafana" / "dashboards")
    parser.add_argument("--rules", type=Path, default=REPO / "grafana" / "provisioning" / "alerting" / "rules.yaml")
    parser.add_argument("--only", default="", help="time only the queries whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the timings here")
    args = parser.parse_args()

    open_store(args.store.resolve(), args.refill, args.rows, args.days)
    client = clickhouse_connect.get_client(dsn=f"chdb://{args.store.resolve()}", database=DATABASE)
    print(f"load average before timing: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    out: dict[str, Any] = {}
    for label in args.ranges.split(","):
        now = datetime.now(UTC)
        queries = dashboard_queries(client, args.dashboards, grafana_duration(label), now)
        queries += alert_queries(args.rules, now)
        queries = [q for q in queries if args.only.lower() in q.name.lower()]
        timings = time_queries(client, queries, args.runs)
        report(f"last {label}", timings)
        out[label] = timings
    print(f"load average after timing: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
