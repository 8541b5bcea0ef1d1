"""Budgets end to end: spans over OTLP from the real SDK, priced by a real collector on chDB, crossings
written to budget_events and delivered to a webhook server run by the test, once each."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from spanmeter.budgets import event_id
from spanmeter.service import CollectorThread

from .budget_helpers import (
    SECRET,
    budget_overrides,
    budget_status,
    hook_channel,
    spend,
    valid_signature,
    wait_until,
    webhook_server,
)
from .conftest import deep_merge, metric_value, tracer_provider, wait_for_rows

SETTLE = 0.8  # four reconcile intervals: long enough for a repeat to show up if there were one


def events(store, database):
    return store.query(
        "SELECT budget, scope_value, threshold_percent, spend_usd, limit_usd, action, event_id, collector_id "
        "FROM {db:Identifier}.budget_events FINAL ORDER BY threshold_percent, scope_value",
        parameters={"db": database},
    ).named_results()


def delivery_rows(store, database):
    return store.query(
        "SELECT channel, outcome, attempts FROM {db:Identifier}.budget_deliveries ORDER BY delivered_at",
        parameters={"db": database},
    ).result_rows


def test_crossings_notify_once_each_with_a_signed_payload_and_a_restart_repeats_none(make_config, store, database):
    with webhook_server() as hook:
        budget = {
            "name": "support-daily",
            "scope": {"service": "support-*", "provider": "acme"},
            "window": "day",
            "limit_usd": 10,
            "thresholds": [80, 100],
            "channels": ["ops"],
        }
        config = make_config(budget_overrides([budget], {"ops": hook_channel(hook)}))
        first = CollectorThread(config)
        collector = first.start()
        app = tracer_provider(collector, resource={"service.name": "support-bot"})
        other = tracer_provider(collector, resource={"service.name": "batch-jobs"})

        spend(app, 5)
        spend(other, 50)  # another service: outside the scope
        wait_for_rows(collector, 2)
        time.sleep(SETTLE)
        assert hook.requests == []

        spend(app, 3)  # 8 of 10: 80 %
        (warn,) = hook.wait_for(1)
        spend(app, 3)  # 11 of 10: 100 %
        hook.wait_for(2)
        spend(app, 1)
        wait_for_rows(collector, 5)
        time.sleep(SETTLE)
        assert len(hook.requests) == 2
        exceeded = hook.requests[1]

        for request, threshold, spent in ((warn, 80, "8"), (exceeded, 100, "11")):
            assert valid_signature(request)
            assert not valid_signature(request, secret="another-secret")
            assert request.headers["content-type"] == "application/json"
            payload = request.json()
            assert payload["type"] == "budget.threshold_crossed"
            assert payload["budget"] == "support-daily"
            assert payload["threshold_percent"] == threshold
            assert Decimal(payload["spend_usd"]) == Decimal(spent)
            assert payload["limit_usd"] == "10"
            assert payload["scope"] == {"service": "support-*", "provider": "acme"}
            assert payload["scope_value"] == "" and payload["values"] == {}
            assert payload["window"] == "day"
            assert payload["window_start"].endswith("T00:00:00.000Z")
            assert payload["action"] == "notify"
            assert request.headers["x-spanmeter-event-id"] == payload["event_id"]
        assert SECRET.encode() not in warn.body

        (status,) = budget_status(collector)
        assert Decimal(status["spend_usd"]) == 12
        assert status["percent"] == 120.0
        assert status["state"] == "exceeded"
        assert status["requests"] == 4

        rows = list(events(store, database))
        assert [(r["threshold_percent"], r["spend_usd"]) for r in rows] == [(80, Decimal(8)), (100, Decimal(11))]
        assert {r["event_id"] for r in rows} == {warn.json()["event_id"], exceeded.json()["event_id"]}
        assert metric_value(collector, "spanmeter_budget_notifications_total", channel="ops", outcome="delivered") == 2
        wait_until(lambda: len(delivery_rows(store, database)) == 2, what="two delivery rows")
        assert delivery_rows(store, database) == [("ops", "delivered", 1), ("ops", "delivered", 1)]
        first.stop()

        # Restarted mid-window: spend comes back from the store, the crossings are known, nothing repeats.
        second = CollectorThread(config)
        restarted = second.start()
        try:
            (status,) = budget_status(restarted)
            assert Decimal(status["spend_usd"]) == 12
            spend(tracer_provider(restarted, resource={"service.name": "support-bot"}), 2)
            wait_for_rows(restarted, 1)
            wait_until(lambda: Decimal(budget_status(restarted)[0]["spend_usd"]) == 14, what="spend 14")
            time.sleep(SETTLE)
            assert len(hook.requests) == 2
            assert len(list(events(store, database))) == 2
        finally:
            second.stop()


def test_two_collectors_on_one_store_write_one_event_and_notify_once(make_config, store, database, tmp_path):
    """Neither collector alone crosses 80 %; together they do, and the deterministic event id makes
    one row and one notification of it."""
    with webhook_server() as hook:
        budget = {"name": "shared", "scope": {"provider": "acme"}, "limit_usd": 10, "channels": ["ops"]}
        overrides = budget_overrides([budget], {"ops": hook_channel(hook)})
        # Each collector has a write-ahead log of its own (one collector locks a WAL directory).
        configs = [
            make_config(deep_merge(overrides, {"exporters": {"clickhouse": {"queue": {"directory": str(wal)}}}}))
            for wal in (tmp_path / "wal-a", tmp_path / "wal-b")
        ]
        threads = [CollectorThread(config) for config in configs]
        a, b = (thread.start() for thread in threads)
        try:
            spend(tracer_provider(a), 5)
            spend(tracer_provider(b), 4)
            wait_for_rows(a, 1)
            wait_for_rows(b, 1)
            (payload,) = (r.json() for r in hook.wait_for(1))
            time.sleep(SETTLE)
            assert len(hook.requests) == 1
            assert payload["threshold_percent"] == 80 and Decimal(payload["spend_usd"]) == 9
            (row,) = events(store, database)
            assert row["event_id"] == payload["event_id"]
            assert row["collector_id"] == payload["collector_id"]
            assert {a.budgets.collector_id, b.budgets.collector_id} >= {row["collector_id"]}
            for collector in (a, b):
                wait_until(lambda c=collector: Decimal(budget_status(c)[0]["spend_usd"]) == 9, what="both agree")
        finally:
            for thread in threads:
                thread.stop()


def test_each_budget_fires_for_that_user_alone(start_collector, store, database):
    with webhook_server() as hook:
        budget = {
            "name": "per-user",
            "scope": {"user": "each", "tag:team": "growth"},
            "limit_usd": 10,
            "thresholds": [100],
            "action": "block",
            "channels": ["ops"],
        }
        collector = start_collector(budget_overrides([budget], {"ops": hook_channel(hook)}))
        app = tracer_provider(collector)
        spend(app, 7, **{"user.id": "u-heavy", "spanmeter.tag.team": "growth"})
        spend(app, 3, **{"user.id": "u-light", "spanmeter.tag.team": "growth"})
        spend(app, 30, **{"user.id": "u-other-team", "spanmeter.tag.team": "platform"})
        spend(app, 30, **{"spanmeter.tag.team": "growth"})  # no user: outside a per-user budget
        spend(app, 4, **{"user.id": "u-heavy", "spanmeter.tag.team": "growth"})
        (request,) = hook.wait_for(1)
        wait_for_rows(collector, 5)
        time.sleep(SETTLE)
        assert len(hook.requests) == 1
        payload = request.json()
        assert payload["scope_value"] == "user=u-heavy"
        assert payload["values"] == {"user": "u-heavy"}
        assert payload["action"] == "block"
        assert Decimal(payload["spend_usd"]) == 11

        statuses = {s["scope_value"]: s for s in budget_status(collector)}
        assert set(statuses) == {"user=u-heavy", "user=u-light"}
        heavy, light = statuses["user=u-heavy"], statuses["user=u-light"]
        assert (heavy["state"], light["state"]) == ("exceeded", "ok")
        assert Decimal(light["spend_usd"]) == 3 and light["percent"] == 30.0
        assert heavy["values"] == {"user": "u-heavy"} and heavy["scope"] == {"user": "each", "tag:team": "growth"}
        (row,) = events(store, database)
        assert row["scope_value"] == "user=u-heavy"
        assert row["event_id"] == event_id("per-user", "user=u-heavy", _parse(payload["window_start"]), 100)


def test_status_api_fields_and_budget_status_table(start_collector, store, database):
    budgets = [
        {"name": "monthly", "window": "month", "limit_usd": 1000, "limit_requests": 4, "action": "block"},
        {"name": "rolling", "window": "rolling 6h", "limit_usd": 100, "thresholds": [50, 90]},
    ]
    collector = start_collector(budget_overrides(budgets))
    app = tracer_provider(collector)
    spend(app, 60)
    wait_for_rows(collector, 1)
    monthly, rolling = budget_status(collector)
    assert set(monthly) >= {
        "budget", "scope", "values", "scope_value", "window", "window_start", "window_end", "resets_at",
        "spend_usd", "limit_usd", "percent", "state", "projected_usd", "tokens", "limit_tokens", "requests",
        "limit_requests", "thresholds", "action",
    }  # fmt: skip
    assert monthly["window"] == "month" and monthly["window_start"].endswith("-01T00:00:00.000Z")
    assert monthly["percent"] == 25.0  # 1 of 4 requests beats 60 of 1000 USD
    assert monthly["state"] == "ok" and monthly["action"] == "block"
    assert Decimal(monthly["projected_usd"]) >= Decimal(60)
    assert rolling["window"] == "rolling 6h" and rolling["state"] == "warn" and rolling["percent"] == 60.0
    assert rolling["resets_at"] == rolling["window_end"]
    assert rolling["thresholds"] == [50, 90]
    assert json.loads(json.dumps(monthly)) == monthly
    rows = wait_until(
        lambda: (
            store.query(
                "SELECT budget, spend_usd, state FROM {db:Identifier}.budget_status FINAL ORDER BY budget",
                parameters={"db": database},
            ).result_rows
            if store.query(
                "SELECT sum(spend_usd) FROM {db:Identifier}.budget_status FINAL", parameters={"db": database}
            ).result_rows[0][0]
            == 120
            else None
        ),
        what="budget_status refreshed",
    )
    assert rows == [("monthly", Decimal(60), "ok"), ("rolling", Decimal(60), "warn")]


def test_no_budget_processor_serves_an_empty_list(collector):
    assert budget_status(collector) == []


def _parse(text):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))
