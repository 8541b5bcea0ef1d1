"""`spanmeter budget status` and `spanmeter budget events`: table and JSON, from a running collector and its store."""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal

from spanmeter.cli import main
from tests.fakes.provider_server import refused_url

from .budget_helpers import (
    PROVIDER,
    REPO_CONFIG,
    budget_overrides,
    budget_status,
    hook_channel,
    spend,
    wait_until,
    webhook_server,
)
from .conftest import emit, tracer_provider, wait_for_rows

TWO_TOKENS = {"gen_ai.usage.input_tokens": 2, "gen_ai.usage.output_tokens": 0}


def test_status_and_events_as_table_and_json(start_collector, chdb_path, database, capsys):
    with webhook_server() as hook:
        budgets = [
            {"name": "per-user", "scope": {"user": "each"}, "limit_usd": 10, "action": "block", "channels": ["ops"]},
            {"name": "total", "limit_usd": 100},
        ]
        collector = start_collector(budget_overrides(budgets, {"ops": hook_channel(hook)}))
        app = tracer_provider(collector)
        spend(app, 12, **{"user.id": "u-1"})
        spend(app, 1, **{"user.id": "u-2"})
        wait_for_rows(collector, 2)
        hook.wait_for(2)
        api = f"http://127.0.0.1:{collector.http_port}"

        assert main(["budget", "status", "--collector", api, "--format", "json"]) == 0
        entries = json.loads(capsys.readouterr().out)
        assert [(e["budget"], e["scope_value"], e["state"]) for e in entries] == [
            ("per-user", "user=u-1", "exceeded"),
            ("per-user", "user=u-2", "ok"),
            ("total", "", "ok"),
        ]
        assert main(["budget", "status", "--collector", api]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[:4] == ["budget", "scope", "window", "spend"]
        assert table[2].split()[:7] == ["per-user", "user=u-1", "day", "12.0000", "10.00", "120.0%", "exceeded"]

        store_args = ["--config", str(REPO_CONFIG), "--store", f"chdb://{chdb_path}", "--database", database]
        deadline = time.monotonic() + 10
        while True:  # until both deliveries are recorded
            assert main(["budget", "events", "--since", "7d", "--format", "json", *store_args]) == 0
            events = json.loads(capsys.readouterr().out)
            if sum(len(e["deliveries"]) for e in events) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert sorted((e["budget"], e["scope_value"], e["threshold_percent"]) for e in events) == [
            ("per-user", "user=u-1", 80),
            ("per-user", "user=u-1", 100),
        ]
        assert all(
            e["deliveries"] == [{"channel": "ops", "outcome": "delivered", "attempts": 1, "detail": ""}] for e in events
        )
        assert {Decimal(e["spend_usd"]) for e in events} == {Decimal(12)}
        assert main(["budget", "events", "--since", "7d", *store_args]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[:3] == ["created", "(UTC)", "budget"]
        assert len(lines) == 4 and all("ops: delivered" in line for line in lines[2:])

        assert main(["budget", "events", "--since", "soon", *store_args]) == 2
        assert "--since expects" in capsys.readouterr().err


def test_status_without_a_collector_fails_cleanly(capsys):
    assert main(["budget", "status", "--collector", refused_url()]) == 1
    assert "cannot read budget status from the collector" in capsys.readouterr().err


def test_small_amounts_keep_their_digits_in_status_and_log(start_collector, capsys, caplog):
    """A $0.002 budget once showed as 0.00 in `budget status` and was logged `0.01 of 0.002 USD`."""
    overrides = budget_overrides([{"name": "tiny", "limit_usd": "0.002", "thresholds": [100]}])
    # $0.0015 per input token: two tokens cost exactly 0.003 USD.
    overrides["processors"]["pricing"]["overrides"].append(
        {"model": "tiny-model", "provider": PROVIDER, "input_per_mtok": 1500, "output_per_mtok": 0}
    )
    with caplog.at_level(logging.WARNING):
        collector = start_collector(overrides)
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": PROVIDER}
        emit(tracer_provider(collector), "chat", {**attributes, "gen_ai.request.model": "tiny-model", **TWO_TOKENS})
        wait_until(lambda: [e["state"] for e in budget_status(collector)] == ["exceeded"], what="tiny exceeded")
        crossed = wait_until(
            lambda: [r.getMessage() for r in caplog.records if "reached 100%" in r.getMessage()], what="the log"
        )
    assert "budget 'tiny' reached 100% (0.003 of 0.002 USD, day window" in crossed[0]

    assert main(["budget", "status", "--collector", f"http://127.0.0.1:{collector.http_port}"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[:7] == ["tiny", "-", "day", "0.0030", "0.002", "150.0%", "exceeded"]


def test_budgets_outside_the_pipeline_are_warned_about_and_status_says_why(start_collector, capsys, caplog):
    overrides = budget_overrides([{"name": "total", "limit_usd": 10}])
    overrides["service"]["pipelines"]["traces"]["processors"] = ["genai", "pricing", "tags"]
    with caplog.at_level(logging.WARNING):
        collector = start_collector(overrides)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "processors.budget is configured but not in service.pipelines.traces.processors: it has no effect "
        "(its 1 budget(s) are not checked)"
    ) in warnings
    api = f"http://127.0.0.1:{collector.http_port}"

    assert main(["budget", "status", "--collector", api]) == 0
    out = capsys.readouterr().out
    assert "No budgets configured" not in out
    assert out.startswith("Budgets are configured (processors.budget: 1) but 'budget' is not in ")
    assert "service.pipelines.traces.processors, so the collector checks none" in out

    assert main(["budget", "status", "--collector", api, "--format", "json"]) == 0
    result = capsys.readouterr()
    assert json.loads(result.out) == []
    assert "'budget' is not in service.pipelines.traces.processors" in result.err
