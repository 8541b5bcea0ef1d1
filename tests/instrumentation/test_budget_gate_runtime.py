"""Budgets and blocks changed at runtime, through the CLI, as two collectors and the budget gate see them.

Two collectors cannot share an embedded store across processes (chDB: one process per data directory), so the
two here are two `Collector` instances in this process on the same chDB data directory and database, each with
its own clients and reconcile thread: collector A takes the spans and the CLI's writes, collector B only reads the
store. The gate reads B, so what it refuses went CLI -> store -> B's reconcile -> B's GET /v1/budgets -> gate.
"""

from __future__ import annotations

import getpass
import json

import pytest

# This distribution's tests install without the collector; these need it.
pytest.importorskip("spanmeter", reason="the collector is not installed (pip install -e . at the repository root)")

from spanmeter.cli import main
from spanmeter_instrumentation import BudgetBlockedError, BudgetExceededError, enable_budget_gate, tags
from spanmeter_instrumentation.openai import OpenAIInstrumentor
from tests.collector.budget_helpers import REPO_CONFIG, budget_overrides, budget_status, spend, wait_until
from tests.collector.conftest import (  # noqa: F401  (the collector's fixtures; chdb_path is suite-wide)
    database,
    deep_merge,
    make_config,
    start_collector,
    wait_for_rows,
)
from tests.collector.conftest import tracer_provider as otlp_provider

from .conftest import instrumented
from .test_budget_gate import chat

SETTLE = 30.0  # seconds: every wait ends as soon as it is met; a loaded machine may need more than a few intervals


def _blocked_by(fake, budget: str) -> bool:
    try:
        chat(fake)
    except BudgetExceededError as error:
        return error.budget == budget
    return False


def _passes(fake) -> bool:
    try:
        chat(fake)
    except BudgetExceededError:
        return False
    return True


def test_a_budget_set_through_the_cli_is_enforced_by_a_second_collector_and_the_gate(
    start_collector,  # noqa: F811
    chdb_path,
    database,  # noqa: F811
    fake,
    tracer_provider,
    gate_off,
    capsys,
    tmp_path,
):
    overrides = budget_overrides([{"name": "everything", "limit_usd": 1000}])
    # Each collector has a write-ahead log of its own (one collector locks a WAL directory).
    a, b = (
        start_collector(deep_merge(overrides, {"exporters": {"clickhouse": {"queue": {"directory": str(wal)}}}}))
        for wal in (tmp_path / "wal-a", tmp_path / "wal-b")
    )
    store_args = ["--config", str(REPO_CONFIG), "--store", f"chdb://{chdb_path}", "--database", database]
    app = otlp_provider(a)
    spend(app, 6, **{"user.id": "u-heavy"})
    spend(app, 1, **{"user.id": "u-light"})
    wait_for_rows(a, 2)

    code = main(
        ["budget", "set", "per-user", "--limit-usd", "5", "--scope", "user=each", "--action", "block", *store_args]
    )
    assert code == 0, capsys.readouterr().err
    assert f"by user:{getpass.getuser()}" in capsys.readouterr().out

    # B never saw a span of it: its status comes from the store, within its reconcile interval (200 ms).
    def per_user() -> dict[str, str]:
        return {s["scope_value"]: s["state"] for s in budget_status(b) if s["budget"] == "per-user"}

    assert wait_until(
        lambda: per_user() == {"user=u-heavy": "exceeded", "user=u-light": "ok"}, SETTLE, what="B applies it"
    )

    assert main(["budget", "list", "--format", "json", *store_args]) == 0
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed["per-user"]["source"] == "runtime" and listed["per-user"]["budget"]["limit_usd"] == "5"
    assert listed["per-user"]["updated_by"] == f"user:{getpass.getuser()}"
    assert main(["budget", "list", *store_args]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["budget", "source", "window"]
    assert [line.split()[:2] for line in table[2:]] == [["per-user", "runtime"]]  # REPO_CONFIG has no budgets

    enable_budget_gate(f"http://127.0.0.1:{b.http_port}", refresh_interval=0.2)
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        before = len(fake.requests)
        with tags(user_id="u-heavy"), pytest.raises(BudgetExceededError) as raised:
            chat(fake)
        assert raised.value.budget == "per-user" and raised.value.scope_value == "user=u-heavy"
        assert len(fake.requests) == before
        with tags(user_id="u-light"):
            assert _passes(fake)

        # A new version of it (a higher limit) is applied by B and lets u-heavy through again.
        assert main(["budget", "set", "per-user", "--limit-usd", "50", "--scope", "user=each", *store_args]) == 0
        with tags(user_id="u-heavy"):
            wait_until(lambda: _passes(fake), SETTLE, what="u-heavy passes under the raised limit")
        assert main(["budget", "set", "per-user", "--limit-usd", "5", "--scope", "user=each", "--action", "block",
                     *store_args]) == 0  # fmt: skip
        with tags(user_id="u-heavy"):
            wait_until(lambda: _blocked_by(fake, "per-user"), SETTLE, what="u-heavy blocked again")

        # Removed: B stops applying it, and the gate lets the call through.
        assert main(["budget", "remove", "per-user", *store_args]) == 0
        wait_until(lambda: not per_user(), SETTLE, what="B drops it")
        with tags(user_id="u-heavy"):
            wait_until(lambda: _passes(fake), SETTLE, what="u-heavy passes once it is removed")
    wait_until(lambda: [s["budget"] for s in budget_status(a)] == ["everything"], SETTLE, what="A drops it too")
    assert main(["budget", "remove", "per-user", *store_args]) == 2
    assert "no runtime budget named 'per-user'" in capsys.readouterr().err


def test_a_block_raised_and_lifted_through_the_cli_as_the_gate_sees_it(
    start_collector,  # noqa: F811
    chdb_path,
    database,  # noqa: F811
    fake,
    tracer_provider,
    gate_off,
    capsys,
):
    collector = start_collector(budget_overrides([]))
    store_args = ["--config", str(REPO_CONFIG), "--store", f"chdb://{chdb_path}", "--database", database]
    enable_budget_gate(f"http://127.0.0.1:{collector.http_port}", refresh_interval=0.2)
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        with tags(user_id="u-loop"):
            assert _passes(fake)
        code = main(["block", "--scope", "user=u-loop", "--reason", "agent stuck in a loop", "--until", "1h",
                     *store_args])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        assert "blocked user=u-loop until " in capsys.readouterr().out

        with tags(user_id="u-loop"):
            wait_until(lambda: _blocked_by(fake, "block:user=u-loop"), SETTLE, what="the gate refuses u-loop")
            before = len(fake.requests)
            with pytest.raises(BudgetBlockedError) as raised:
                chat(fake)
        assert len(fake.requests) == before
        error = raised.value
        assert error.reason == "agent stuck in a loop" and error.actor == f"user:{getpass.getuser()}"
        assert error.until is not None and "agent stuck in a loop" in str(error)
        with tags(user_id="someone-else"):
            assert _passes(fake)  # only the blocked scope is refused

        assert main(["block", "list", "--format", "json", *store_args]) == 0
        (active,) = json.loads(capsys.readouterr().out)
        assert (active["scope_key"], active["reason"], active["action"]) == (
            "user=u-loop",
            "agent stuck in a loop",
            "block",
        )

        assert main(["unblock", "--scope", "user=u-loop", "--reason", "fixed the prompt", *store_args]) == 0
        assert capsys.readouterr().out == f"unblocked user=u-loop (by user:{getpass.getuser()})\n"
        with tags(user_id="u-loop"):
            wait_until(lambda: _passes(fake), SETTLE, what="u-loop passes once unblocked")
        assert main(["block", "list", *store_args]) == 0
        assert capsys.readouterr().out == "Nothing is blocked.\n"
        assert main(["unblock", "--scope", "user=u-loop", *store_args]) == 2
        assert "user=u-loop is not blocked" in capsys.readouterr().err

    # The audit: both changes, newest first, with who, why and until when.
    assert main(["block", "list", "--history", "--format", "json", *store_args]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [(h["action"], h["reason"], h["actor"]) for h in history] == [
        ("unblock", "fixed the prompt", f"user:{getpass.getuser()}"),
        ("block", "agent stuck in a loop", f"user:{getpass.getuser()}"),
    ]
    assert history[1]["until"] is not None and history[0]["until"] is None

    # Refusals name what is wrong, before anything is written.
    assert main(["block", "--scope", "user=each", "--reason", "x", *store_args]) == 2
    assert "scope: user needs a value or a * pattern (not each)" in capsys.readouterr().err
    assert main(["block", "--scope", "colour=red", "--reason", "x", *store_args]) == 2
    assert "scope: unknown key 'colour'" in capsys.readouterr().err
    assert main(["block", "--scope", "user=u-1", "--reason", "x", "--until", "yesterday", *store_args]) == 2
    assert "--until: expected a duration" in capsys.readouterr().err
    assert main(["block", "--scope", "user=u-1", *store_args]) == 2
    assert "block needs --scope and --reason" in capsys.readouterr().err
