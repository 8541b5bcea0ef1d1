"""The budget gate against a real collector (chDB, OTLP) serving GET /v1/budgets: the real OpenAI SDK calls the
fake provider through our instrumentor; a call in the scope of an exceeded `block` budget raises before the
provider is called, others pass."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

# This distribution's tests install without the collector; this one test needs it.
pytest.importorskip("spanmeter", reason="the collector is not installed (pip install -e . at the repository root)")

from spanmeter_instrumentation import BudgetExceededError, enable_budget_gate, tags
from spanmeter_instrumentation.openai import OpenAIInstrumentor
from tests.collector.budget_helpers import budget_overrides, budget_status, spend, wait_until
from tests.collector.conftest import (  # noqa: F401  (the collector's fixtures; chdb_path is suite-wide)
    database,
    make_config,
    start_collector,
    wait_for_rows,
)
from tests.collector.conftest import tracer_provider as otlp_provider

from .conftest import instrumented
from .test_budget_gate import chat


def test_blocked_scope_raises_before_the_provider_and_other_scopes_pass(
    start_collector,  # noqa: F811  (the fixture imported above)
    fake,
    spans,
    tracer_provider,
    gate_off,
):
    budgets = [
        {"name": "user-cap", "scope": {"user": "each"}, "limit_usd": 10, "thresholds": [100], "action": "block"},
        {"name": "team-cap", "scope": {"tag:team": "lab*"}, "limit_usd": 5, "action": "block"},
        {"name": "watch-only", "scope": {"provider": "*"}, "limit_usd": 1, "action": "notify"},
    ]
    collector = start_collector(budget_overrides(budgets))
    app = otlp_provider(collector)
    spend(app, 12, **{"user.id": "u-heavy"})
    spend(app, 2, **{"user.id": "u-light"})
    spend(app, 6, **{"spanmeter.tag.team": "lab-7"})
    wait_for_rows(collector, 3)
    assert {s["budget"]: s["state"] for s in budget_status(collector) if s["scope_value"] != "user=u-light"} == {
        "user-cap": "exceeded",
        "team-cap": "exceeded",
        "watch-only": "exceeded",
    }

    enable_budget_gate(f"http://127.0.0.1:{collector.http_port}", refresh_interval=0.2)
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        before = len(fake.requests)
        with tags(user_id="u-heavy"), pytest.raises(BudgetExceededError) as raised:
            chat(fake)
        assert len(fake.requests) == before
        error = raised.value
        assert error.budget == "user-cap" and error.scope_value == "user=u-heavy"
        assert (error.spend_usd, error.limit_usd) == (Decimal(12), Decimal(10))
        assert isinstance(error.resets_at, datetime) and error.resets_at.hour == 0
        assert "user-cap" in str(error)

        with tags(team="lab-7", user_id="u-light"), pytest.raises(BudgetExceededError) as raised:
            chat(fake)
        assert raised.value.budget == "team-cap"
        assert len(fake.requests) == before
        assert spans.all() == []  # no call, no span

        # Under budget, another user, another team, and a notify-only budget over its limit: all pass.
        with tags(user_id="u-light", team="platform"):
            assert chat(fake).choices[0].message.content
        assert chat(fake).choices[0].message.content
        assert len(fake.requests) == before + 2

        # Spend moves: once u-light goes over, the gate's next refresh blocks it too.
        spend(app, 9, **{"user.id": "u-light"})
        with tags(user_id="u-light"):
            wait_until(lambda: _blocked(fake), what="u-light blocked")


def _blocked(fake) -> bool:
    try:
        chat(fake)
    except BudgetExceededError as error:
        return error.scope_value == "user=u-light"
    return False
