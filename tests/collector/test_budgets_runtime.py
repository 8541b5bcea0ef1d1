"""Runtime budgets and blocks through the API (keys, validation, audit), beside configured budgets, in
`budget status` with no collector running, and budgets changed by a reload. The CLI with two collectors and the
gate: tests/instrumentation/test_budget_gate_runtime.py; SIGHUP on `spanmeter serve`: test_reload.py."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from spanmeter.cli import main
from spanmeter.keys import create_key
from spanmeter.service import Collector, CollectorThread

from .budget_helpers import REPO_CONFIG, budget_overrides, budget_status, spend, wait_until
from .conftest import deep_merge, tracer_provider, wait_for_rows
from .test_auth import AUTH, BOOTSTRAP


def call(collector: Collector, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-Spanmeter-User": "alice"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{collector.http_port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_the_api_needs_an_admin_key_to_change_validates_like_the_config_and_audits_the_key(
    start_collector, store, database
):
    collector = start_collector(deep_merge(budget_overrides([{"name": "configured", "limit_usd": 100}]), AUTH))
    reader_key, _ = create_key(store, database, "team-a", "dashboards", "read")
    ingest_key, _ = create_key(store, database, "team-a", "app", "ingest")
    budget = {"name": "team-a-daily", "scope": {"project": "team-a"}, "limit_usd": "20", "action": "block"}

    status, body = call(collector, "POST", "/v1/budgets/definitions", budget, reader_key)
    assert status == 403 and "is not an admin key" in body["error"]
    status, body = call(collector, "POST", "/v1/budgets/definitions", budget, BOOTSTRAP)
    assert (status, body.get("updated_by")) == (200, "key:bootstrap"), body  # the key, not the header's claim

    # Refused like pipelines.yaml would refuse it, each field named; nothing stored.
    bad = {"name": "bad", "limit_usd": -1, "window": "weekly", "scope": {"colour": "red"}, "owner": "me"}
    status, body = call(collector, "POST", "/v1/budgets/definitions", bad, BOOTSTRAP)
    assert status == 400
    for field in ("limit_usd: ", "window: expected day, month or rolling Nh", "scope: ", "owner: unknown field"):
        assert field in body["error"], body["error"]
    status, body = call(collector, "POST", "/v1/budgets/definitions", {**budget, "name": "configured"}, BOOTSTRAP)
    assert status == 400 and body["error"].startswith("name: 'configured' is a budget of pipelines.yaml")

    other = {"name": "team-b-daily", "scope": {"project": "team-b"}, "limit_usd": "5"}
    per_project = {"name": "each-project", "scope": {"project": "each"}, "limit_usd": "50"}
    for extra in (other, per_project):
        assert call(collector, "POST", "/v1/budgets/definitions", extra, BOOTSTRAP)[0] == 200

    # A project's key sees its project's budgets and those split per project, not another project's limits nor
    # those summed across projects (as GET /v1/budgets shows it); an admin key sees all.
    status, listed = call(collector, "GET", "/v1/budgets/definitions", key=reader_key)
    assert status == 200
    assert [(d["name"], d["source"], d["updated_by"]) for d in listed] == [
        ("each-project", "runtime", "key:bootstrap"),
        ("team-a-daily", "runtime", "key:bootstrap"),
    ]
    assert listed[1]["budget"]["limit_usd"] == "20" and listed[1]["budget"]["action"] == "block"
    status, listed = call(collector, "GET", "/v1/budgets/definitions", key=BOOTSTRAP)
    assert [d["name"] for d in listed] == ["configured", "each-project", "team-a-daily", "team-b-daily"]

    # A block naming no project blocks every project, so a project's key (its gate) sees it.
    block = {"scope": "model=gpt-4o*", "reason": "price spike", "until": "30m"}
    status, raised = call(collector, "POST", "/v1/budgets/blocks", block, reader_key)
    assert status == 403
    status, raised = call(collector, "POST", "/v1/budgets/blocks", block, BOOTSTRAP)
    assert status == 200 and (raised["actor"], raised["scope"]) == ("key:bootstrap", {"model": "gpt-4o*"})
    wait_until(  # this collector applies it at once (its next reconcile, started now)
        lambda: (
            [b["scope_key"] for b in call(collector, "GET", "/v1/budgets", key=ingest_key)[1]["blocks"]]
            == ["model=gpt-4o*"]
        ),
        what="the block in the gate's status",
    )
    status, body = call(collector, "POST", "/v1/budgets/blocks", {"scope": {"user": "u"}, "reason": " "}, BOOTSTRAP)
    assert status == 400 and body["error"].startswith("reason: ")

    status, _ = call(collector, "DELETE", "/v1/budgets/blocks?scope=model%3Dgpt-4o*", key=BOOTSTRAP)
    assert status == 200
    wait_until(lambda: call(collector, "GET", "/v1/budgets", key=ingest_key)[1]["blocks"] == [], what="block lifted")
    status, body = call(collector, "DELETE", "/v1/budgets/blocks?scope=model%3Dgpt-4o*", key=BOOTSTRAP)
    assert status == 404 and "is not blocked" in body["error"]
    status, history = call(collector, "GET", "/v1/budgets/blocks?history=true", key=reader_key)
    assert [(h["action"], h["actor"]) for h in history] == [("unblock", "key:bootstrap"), ("block", "key:bootstrap")]

    # Another project's block is not team-a's to see; its own and the admin's view show theirs.
    for scope in ("project=team-b,user=u-9", "project=team-a,user=u-1"):
        assert call(collector, "POST", "/v1/budgets/blocks", {"scope": scope, "reason": "abuse"}, BOOTSTRAP)[0] == 200
    status, seen = call(collector, "GET", "/v1/budgets/blocks", key=reader_key)
    assert [b["scope_key"] for b in seen] == ["project=team-a,user=u-1"]
    status, seen = call(collector, "GET", "/v1/budgets/blocks", key=BOOTSTRAP)
    assert [b["scope_key"] for b in seen] == ["project=team-a,user=u-1", "project=team-b,user=u-9"]

    status, _ = call(collector, "DELETE", "/v1/budgets/definitions/team-a-daily", key=reader_key)
    assert status == 403
    status, body = call(collector, "DELETE", "/v1/budgets/definitions/team-a-daily", key=BOOTSTRAP)
    assert (status, body) == (200, {"name": "team-a-daily", "removed": True})
    status, body = call(collector, "DELETE", "/v1/budgets/definitions/team-a-daily", key=BOOTSTRAP)
    assert status == 404 and "no runtime budget named 'team-a-daily'" in body["error"]


def test_a_runtime_budget_never_shadows_a_configured_one(start_collector, store, database, chdb_path, capsys, caplog):
    collector = start_collector(budget_overrides([{"name": "total", "limit_usd": 100}]))
    store_args = ["--config", str(REPO_CONFIG), "--store", f"chdb://{chdb_path}", "--database", database]
    # REPO_CONFIG has no budgets, so this CLI cannot tell: the collector, whose file has `total`, decides.
    with caplog.at_level(logging.WARNING):
        assert main(["budget", "set", "total", "--limit-usd", "1", *store_args]) == 0
        capsys.readouterr()
        _, listed = call(collector, "GET", "/v1/budgets/definitions")
        assert [(d["name"], d["source"], d["shadowed"]) for d in listed] == [
            ("total", "config", False),
            ("total", "runtime", True),
        ]
        wait_until(
            lambda: any("runtime budget 'total' is not applied" in r.getMessage() for r in caplog.records),
            what="the warning",
        )
    spend(tracer_provider(collector), 3)
    wait_for_rows(collector, 1)
    (entry,) = wait_until(lambda: [s for s in budget_status(collector) if Decimal(s["spend_usd"]) == 3], what="spend")
    assert (entry["budget"], entry["limit_usd"], entry["state"]) == ("total", "100", "ok")  # not 1 USD: exceeded

    # A CLI whose file names it refuses it outright.
    config = write_config(collector, chdb_path, database, [{"name": "total", "limit_usd": 100}])
    assert main(["budget", "set", "total", "--limit-usd", "1", "--config", str(config)]) == 2
    assert "name: 'total' is a budget of pipelines.yaml" in capsys.readouterr().err
    assert main(["budget", "list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    assert [line.split()[:2] for line in lines] == [["total", "config"], ["total", "runtime"]]
    assert "(shadowed by config)" in lines[1]

    assert main(["budget", "set", "x", "--limit-usd", "ten", "--window", "rolling 0h", *store_args]) == 2
    err = capsys.readouterr().err
    assert "limit_usd: " in err and "window: expected day, month or rolling Nh" in err


def write_config(collector: Collector, chdb_path: Path, database: str, budgets: list[dict[str, Any]]) -> Path:
    """A pipelines file on this test's store whose HTTP receiver is a port nothing listens on: no collector."""
    raw = deep_merge(yaml.safe_load(REPO_CONFIG.read_text()), budget_overrides(budgets))
    raw["exporters"]["clickhouse"].update({"endpoint": f"chdb://{chdb_path}", "database": database})
    raw["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = "127.0.0.1:9"  # discard: refused
    path = chdb_path.parent / f"{database}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_budget_status_answers_without_a_collector(make_config, chdb_path, database, capsys):
    budgets = [{"name": "per-user", "scope": {"user": "each"}, "limit_usd": 10}]
    thread = CollectorThread(make_config(budget_overrides(budgets)))
    collector = thread.start()
    try:
        app = tracer_provider(collector)
        spend(app, 12, **{"user.id": "u-1"})
        spend(app, 4, **{"user.id": "u-2"})
        wait_for_rows(collector, 2)
    finally:
        thread.stop()
    config = write_config(collector, chdb_path, database, budgets)
    assert main(["budget", "set", "all-users", "--limit-usd", "20", "--config", str(config)]) == 0
    capsys.readouterr()

    assert main(["budget", "status", "--config", str(config), "--format", "json"]) == 0
    result = capsys.readouterr()
    assert "no collector answers; budget status from the store" in result.err
    entries = json.loads(result.out)
    assert [(e["budget"], e["scope_value"], Decimal(e["spend_usd"]), e["state"]) for e in entries] == [
        ("per-user", "user=u-1", Decimal(12), "exceeded"),
        ("per-user", "user=u-2", Decimal(4), "ok"),
        ("all-users", "", Decimal(16), "warn"),
    ]
    assert main(["budget", "status", "--config", str(config), "--store", f"chdb://{chdb_path}"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2].split()[:7] == ["per-user", "user=u-1", "day", "12.0000", "10.00", "120.0%", "exceeded"]
    assert table[4].split()[:3] == ["all-users", "-", "day"]


def test_a_reload_changes_budgets_and_keeps_the_spend_of_those_unchanged(start_collector, make_config):
    kept = {"name": "kept", "limit_usd": 10}
    collector = start_collector(budget_overrides([kept, {"name": "dropped", "limit_usd": 10}]))
    spend(tracer_provider(collector), 5)
    wait_for_rows(collector, 1)
    wait_until(
        lambda: {s["budget"]: Decimal(s["spend_usd"]) for s in budget_status(collector)} == {"kept": 5, "dropped": 5}
    )

    added = {"name": "added", "scope": {"provider": "acme"}, "limit_usd": 4, "action": "block"}
    assert collector.reload(make_config(budget_overrides([kept, added]))) == []
    by_name = {s["budget"]: s for s in budget_status(collector)}
    assert by_name.keys() == {"kept", "added"} and Decimal(by_name["kept"]["spend_usd"]) == 5  # kept at once
    wait_until(
        lambda: {s["budget"]: s["state"] for s in budget_status(collector)} == {"kept": "ok", "added": "exceeded"}
    )
