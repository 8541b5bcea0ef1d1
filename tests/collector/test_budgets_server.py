"""Budgets with two `spanmeter serve` processes sharing one ClickHouse server: each crossing is one
`budget_events` row and one signed webhook delivery, whichever collector spots it first.

chDB admits one process per store, so test_budgets.py runs its two collectors in one process; this is
the same case across processes. Needs a server: set CLICKHOUSE_URL (e.g. http://default:@127.0.0.1:8123;
credentials in the URL win over CLICKHOUSE_USER / CLICKHOUSE_PASSWORD). Without it, these tests skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from spanmeter.store import connect

from .budget_helpers import (
    REPO_CONFIG,
    budget_overrides,
    budget_status,
    hook_channel,
    spend,
    valid_signature,
    wait_until,
    webhook_server,
)
from .conftest import deep_merge, metric_value
from .test_durability import ServeProcess

CLICKHOUSE_URL = os.environ.get("CLICKHOUSE_URL", "")
pytestmark = pytest.mark.skipif(not CLICKHOUSE_URL, reason="no ClickHouse server: set CLICKHOUSE_URL to run these")

SETTLE_TIMEOUT = 30.0  # two processes, a network store: generous, but every wait ends as soon as it is met
# Both collectors reconcile every 200 ms (budget_overrides); this many seconds of quiet is ten rounds,
# long enough for a second row or a second notification to show up if there were one.
SETTLE = 2.0


@pytest.fixture
def server() -> Iterator[tuple[Client, str]]:
    """A client on the server (the credentials the collectors use) and a fresh database, dropped after."""
    client = connect(
        CLICKHOUSE_URL, os.environ.get("CLICKHOUSE_USER", "default"), os.environ.get("CLICKHOUSE_PASSWORD", "")
    )
    name = f"spanmeter_budgets_{uuid.uuid4().hex[:10]}"
    try:
        yield client, name
    finally:
        client.command("DROP DATABASE IF EXISTS {db:Identifier}", parameters={"db": name})
        client.close()


def write_config(path: Path, database: str, overrides: dict[str, Any]) -> Path:
    """The shipped pipelines.yaml with the budget overrides, on the server and in this test's database.

    The endpoint is `${env:CLICKHOUSE_URL}`, resolved by `spanmeter serve` from the environment the child
    inherits: the URL (and any password in it) is used as given, never written to disk nor re-expanded.
    The username and password resolve as in the shipped file (CLICKHOUSE_USER, CLICKHOUSE_PASSWORD), as
    for the test's own client; credentials in the URL win over both.
    """
    raw = deep_merge(yaml.safe_load(REPO_CONFIG.read_text()), overrides)
    raw = deep_merge(raw, {"exporters": {"clickhouse": {"endpoint": "${env:CLICKHOUSE_URL}", "database": database}}})
    path.write_text(yaml.safe_dump(raw))
    return path


def app(serve: ServeProcess) -> TracerProvider:
    """A real SDK provider sending each span over OTLP/HTTP to that child process as it ends."""
    provider = TracerProvider(resource=Resource.create({"service.name": "shared-app"}))
    exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{serve.http_port}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def spend_seen(serve: ServeProcess) -> Decimal:
    """The budget's spend as that collector reports it on GET /v1/budgets."""
    (status,) = budget_status(serve)  # the helpers read only `.http_port`, which ServeProcess has too
    return Decimal(status["spend_usd"])


def stored_events(client: Client, database: str) -> list[dict[str, Any]]:
    return list(
        client.query(
            "SELECT budget, threshold_percent, spend_usd, event_id, collector_id "
            "FROM {db:Identifier}.budget_events FINAL ORDER BY threshold_percent",
            parameters={"db": database},
        ).named_results()
    )


def delivered(client: Client, database: str) -> list[tuple[str, str, int]]:
    return [
        (str(event), str(outcome), int(attempts))
        for event, outcome, attempts in client.query(
            "SELECT event_id, outcome, attempts FROM {db:Identifier}.budget_deliveries ORDER BY delivered_at",
            parameters={"db": database},
        ).result_rows
    ]


def test_two_serve_processes_on_one_server_write_one_event_and_one_delivery_per_crossing(
    tmp_path: Path, server: tuple[Client, str]
) -> None:
    client, database = server
    with webhook_server() as hook:
        budget = {"name": "shared", "scope": {"provider": "acme"}, "limit_usd": 10, "channels": ["ops"]}
        overrides = budget_overrides([budget], {"ops": hook_channel(hook)})  # allow_private_targets: true
        processes: list[ServeProcess] = []
        try:
            # One after the other: each applies the schema before it listens, so they do not race on DDL.
            for index in (1, 2):
                config = write_config(tmp_path / f"pipelines-{index}.yaml", database, overrides)
                processes.append(ServeProcess(config, tmp_path / f"data-{index}"))
            a, b = processes
            assert a.http_port != b.http_port

            # 80 %: neither process alone gets there (5 and 4 of 10 USD); the shared store does (9).
            spend(app(a), 5)
            spend(app(b), 4)
            for serve in processes:
                wait_until(lambda s=serve: spend_seen(s) == 9, SETTLE_TIMEOUT, "both collectors see 9 USD")
            (warn,) = hook.wait_for(1, SETTLE_TIMEOUT)

            # 100 %: one dollar more on each; each process alone now counts 10 of 10 and claims the crossing.
            spend(app(a), 1)
            spend(app(b), 1)
            for serve in processes:
                wait_until(lambda s=serve: spend_seen(s) == 11, SETTLE_TIMEOUT, "both collectors see 11 USD")
            hook.wait_for(2, SETTLE_TIMEOUT)
            wait_until(lambda: len(delivered(client, database)) >= 2, SETTLE_TIMEOUT, "two delivery rows")
            time.sleep(SETTLE)
            assert len(hook.requests) == 2, [r.json() for r in hook.requests]
            exceeded = hook.requests[1]

            notified = sum(
                metric_value(s, "spanmeter_budget_notifications_total", channel="ops", outcome="delivered")
                for s in processes
            )
            claimed = sum(metric_value(s, "spanmeter_budget_crossings_total", budget="shared") for s in processes)
            assert (notified, claimed) == (2, 2)
        finally:
            exits = [stop(serve) for serve in processes]
    for code, log in exits:
        assert code == 0, log
    logs = [log for _, log in exits]

    payloads = [warn.json(), exceeded.json()]
    for request, payload, threshold in ((warn, payloads[0], 80), (exceeded, payloads[1], 100)):
        assert valid_signature(request)
        assert not valid_signature(request, secret="another-secret")
        assert payload["type"] == "budget.threshold_crossed"
        assert payload["budget"] == "shared"
        assert payload["threshold_percent"] == threshold
        assert payload["limit_usd"] == "10"
        assert request.headers["x-spanmeter-event-id"] == payload["event_id"]
    assert Decimal(payloads[0]["spend_usd"]) == 9
    assert Decimal(10) <= Decimal(payloads[1]["spend_usd"]) <= Decimal(11)
    assert payloads[0]["event_id"] != payloads[1]["event_id"]

    rows = stored_events(client, database)
    assert [(r["budget"], r["threshold_percent"]) for r in rows] == [("shared", 80), ("shared", 100)]
    for row, payload in zip(rows, payloads, strict=True):
        assert row["event_id"] == payload["event_id"]
        assert row["collector_id"] == payload["collector_id"]
        assert Decimal(row["spend_usd"]) == Decimal(payload["spend_usd"])

    # One delivery row per crossing, and one "delivered" log line per crossing across both processes.
    assert sorted(delivered(client, database)) == sorted((p["event_id"], "delivered", 1) for p in payloads)
    for payload in payloads:
        lines = [
            line
            for log in logs
            for line in log.splitlines()
            if re.search(rf"delivered notification of {payload['event_id']}\b", line)
        ]
        assert len(lines) == 1, lines


def stop(serve: ServeProcess) -> tuple[int, str]:
    """SIGTERM and wait; a child that does not stop in time is killed, so none outlives the test."""
    try:
        return serve.terminate()
    except subprocess.TimeoutExpired:
        serve.process.kill()
        _, rest = serve.process.communicate()
        return -9, "".join(serve.log) + rest
