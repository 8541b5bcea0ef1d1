"""`spanmeter budget status` and `spanmeter budget events`: table and JSON, from a running collector and its store."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from spanmeter.cli import main
from tests.fakes.provider_server import refused_url

from .budget_helpers import REPO_CONFIG, budget_overrides, hook_channel, spend, webhook_server
from .conftest import tracer_provider, wait_for_rows


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
