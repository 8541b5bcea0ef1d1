"""Findings over seeded traffic in a real chDB store: each kind fires on the waste laid over clean traffic, with
the savings each test computes from genai-prices itself; clean traffic gives none."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client

from spanmeter.config import ConfigError, load_config
from spanmeter.findings import Finding, FindingsConfig
from spanmeter.findings.model import Period
from spanmeter.findings.runner import run_findings
from spanmeter.store import apply_schema

from .conftest import REPO
from .findings_seed import END, LAST_DAY, Calls, clean, price

PERIOD = Period(END - timedelta(days=30), END)
# The seeded scopes are small (cents a month): every rule reports any saving, so clean traffic must give none
# on its own merits, not because its savings are small.
CONFIG = FindingsConfig.model_validate(
    {rule: {"min_savings_usd": 0} for rule in ("right_size", "cache_unused", "repeated_calls", "paid_failures",
                                               "prompt_growth", "anomalies")}
)  # fmt: skip
MONTH_SCALE = Decimal(30) / Decimal(30)  # the period is 30 days
_MICRO = Decimal("0.000001")


def seeded(store: Client, calls: Calls) -> str:
    database = f"f_{uuid.uuid4().hex[:10]}"
    apply_schema(store, database)
    calls.insert(store, database)
    return database


def only(findings: list[Finding], kind: str, **scope: str) -> Finding:
    matching = [f for f in findings if f.kind == kind and all(f.scope.get(k) == v for k, v in scope.items())]
    assert len(matching) == 1, (kind, scope, [(f.kind, f.scope) for f in findings])
    return matching[0]


@pytest.fixture(scope="module")
def waste(store: Client) -> tuple[str, dict[str, Decimal]]:
    """Clean traffic plus one scope per kind of waste; returns the database and the savings each should report,
    computed here from genai-prices."""
    calls = Calls()
    clean(calls)
    expected: dict[str, Decimal] = {}

    # right_size: 60 classification-like calls (200 in, 5 out) on gpt-4o; gpt-4.1-nano is the cheapest candidate.
    spent = sum(
        calls.add(END - timedelta(hours=12 * n + 5), "support", "classify", "openai", "gpt-4o", 200, 5)
        for n in range(60)
    )
    nano = price("openai", "gpt-4.1-nano", 200, 5).total_price * 60
    expected["right_size"] = ((spent - nano) * MONTH_SCALE).quantize(_MICRO)

    # cache_unused: 40 calls of one 3,000-token prefix to claude-3-5-haiku, 17 hours apart, never a cache read.
    for n in range(40):
        calls.add(END - timedelta(hours=17 * n + 2), "rag", "answer", "anthropic", "claude-3-5-haiku", 3000, 200,
                  prefix_hash="feedc0ffee000001")  # fmt: skip
    full = price("anthropic", "claude-3-5-haiku", 3000, 0).input_price
    cached = price("anthropic", "claude-3-5-haiku", 3000, 0, cache_read=3000).input_price
    expected["cache_unused"] = (39 * (full - cached) * MONTH_SCALE).quantize(_MICRO)

    # repeated_calls: 10 bursts of 3 identical calls 10 s apart: 20 repeats an app cache would have answered.
    repeats = Decimal(0)
    for burst in range(10):
        for n in range(3):
            cost = calls.add(END - timedelta(days=2 * burst + 1, seconds=-10 * n), "faq", "faq", "openai",
                             "gpt-4o-mini", 900, 100, prefix_hash="0dd0dd0dd0dd0dd0")  # fmt: skip
            repeats += cost if n else 0
    expected["repeated_calls"] = (repeats * MONTH_SCALE).quantize(_MICRO)

    # paid_failures: 8 timeouts that still used 2,000 + 500 tokens each.
    failed = sum(
        calls.add(
            END - timedelta(days=3 * n + 1),
            "agent",
            "plan",
            "openai",
            "gpt-4o",
            2000,
            500,
            status="ERROR",
            error_type="timeout",
        )
        for n in range(8)
    )
    expected["paid_failures"] = (failed * MONTH_SCALE).quantize(_MICRO)

    # prompt_growth: 30 calls a week, 2,000 input tokens a call four weeks ago growing to 3,200 in the last week.
    for week, tokens in enumerate((3200, 2800, 2400, 2000)):
        for n in range(30):
            calls.add(END - timedelta(days=7 * week + 0.2 * n + 0.5), "assistant", "history", "openai", "gpt-4o",
                      tokens, 300)  # fmt: skip
    rate = price("openai", "gpt-4o", 1_000_000, 0).input_price / 1_000_000
    expected["prompt_growth"] = ((3200 - 2000) * 30 * rate * Decimal(30) / Decimal(7)).quantize(_MICRO)

    # anomaly: the steady heavy user makes 225 more calls than its usual 25 on the last complete day.
    extra = sum(
        calls.add(
            LAST_DAY + timedelta(hours=2, seconds=20 * n),
            "batch",
            "tagging",
            "openai",
            "gpt-4o-mini",
            100,
            60,
            user="u-heavy",
        )
        for n in range(225)
    )
    expected["anomaly"] = extra.quantize(_MICRO)
    return seeded(store, calls), expected


@pytest.fixture(scope="module")
def found(store: Client, waste: tuple[str, dict[str, Decimal]]) -> list[Finding]:
    return run_findings(store, waste[0], PERIOD, CONFIG)


def test_right_size_prices_the_same_tokens_on_the_cheapest_candidate(
    found: list[Finding], waste: tuple[str, dict[str, Decimal]]
) -> None:
    finding = only(found, "right_size", feature="classify")
    assert finding.savings_usd_per_month == waste[1]["right_size"]
    assert finding.evidence["candidate_model"] == "gpt-4.1-nano"
    assert finding.evidence["calls"] == 60
    assert finding.scope == {"project": "acme", "service": "support", "feature": "classify", "provider": "openai",
                             "model": "gpt-4o"}  # fmt: skip
    assert len(finding.trace_ids) == 3


def test_cache_unused_prices_repeated_prefixes_as_cache_reads(
    found: list[Finding], waste: tuple[str, dict[str, Decimal]]
) -> None:
    finding = only(found, "cache_unused")
    assert finding.scope["feature"] == "answer"
    assert finding.savings_usd_per_month == waste[1]["cache_unused"]
    assert finding.evidence["cacheable_tokens"] == 39 * 3000


def test_repeated_calls_within_the_window(found: list[Finding], waste: tuple[str, dict[str, Decimal]]) -> None:
    finding = only(found, "repeated_calls")
    assert finding.scope["feature"] == "faq"
    assert finding.evidence["repeats"] == 20
    assert finding.savings_usd_per_month == waste[1]["repeated_calls"]


def test_paid_failures(found: list[Finding], waste: tuple[str, dict[str, Decimal]]) -> None:
    finding = only(found, "paid_failures")
    assert finding.scope["error_type"] == "timeout"
    assert finding.evidence["calls"] == 8
    assert finding.savings_usd_per_month == waste[1]["paid_failures"]


def test_prompt_growth_costs_the_growth_at_current_traffic(
    found: list[Finding], waste: tuple[str, dict[str, Decimal]]
) -> None:
    finding = only(found, "prompt_growth")
    assert finding.scope["feature"] == "history"
    assert finding.evidence["tokens_per_call_by_week"] == {"week_-3": 2000.0, "week_-2": 2400.0, "week_-1": 2800.0,
                                                           "week_0": 3200.0}  # fmt: skip
    assert abs(finding.savings_usd_per_month - waste[1]["prompt_growth"]) <= _MICRO


def test_anomaly_per_user_service_and_feature_with_the_weekday_band(
    found: list[Finding], waste: tuple[str, dict[str, Decimal]]
) -> None:
    anomalies = [f for f in found if f.kind == "anomaly"]
    assert {tuple(sorted(f.scope)) for f in anomalies} == {("project", "user"), ("project", "service"),
                                                           ("feature", "project")}  # fmt: skip
    user = only(anomalies, "anomaly", user="u-heavy")
    assert user.start == LAST_DAY
    assert user.savings_usd_per_month == waste[1]["anomaly"]
    band = user.evidence["bands"]["calls"]
    assert (band["value"], band["expected"], band["low"], band["high"]) == ("250", "25", "12.5", "37.5")
    assert {f.start for f in anomalies} == {LAST_DAY}


def test_findings_come_largest_savings_first(found: list[Finding]) -> None:
    savings = [f.savings_usd_per_month for f in found]
    assert savings == sorted(savings, reverse=True)
    assert {f.kind for f in found} == {"right_size", "cache_unused", "repeated_calls", "paid_failures",
                                       "prompt_growth", "anomaly"}  # fmt: skip


def test_clean_traffic_gives_no_finding(store: Client) -> None:
    calls = Calls()
    clean(calls)
    assert run_findings(store, seeded(store, calls), PERIOD, CONFIG) == []


def test_weekly_seasonality_is_not_an_anomaly(store: Client) -> None:
    """The clean traffic's weekly report makes 120 calls on Mondays and 25 on other days: against the days just
    before it a Monday is far out of any band, against the Mondays before it, it is usual."""
    calls = Calls()
    clean(calls)
    monday = next(LAST_DAY - timedelta(days=d) for d in range(7) if (LAST_DAY - timedelta(days=d)).weekday() == 0)
    days_before = [120 if (monday - timedelta(days=d)).weekday() == 0 else 25 for d in range(1, 5)]
    assert sorted(days_before)[2] * 1.5 < 120  # a band from the previous days (median +50%) would flag it
    found = run_findings(store, seeded(store, calls), PERIOD, CONFIG)
    assert not [f for f in found if f.scope.get("service") == "reports" or f.scope.get("feature") == "weekly"]


def test_project_scoping(found: list[Finding], store: Client, waste: tuple[str, dict[str, Decimal]]) -> None:
    assert found
    other = Period(PERIOD.start, PERIOD.end, project="someone-else")
    assert run_findings(store, waste[0], other, CONFIG) == []


def test_the_prefix_hash_column_is_filled_from_the_span_attribute(
    store: Client, waste: tuple[str, dict[str, Decimal]]
) -> None:
    counts = store.query(
        "SELECT prompt_prefix_hash, count() FROM {db:Identifier}.genai_spans WHERE feature = 'answer' GROUP BY 1",
        parameters={"db": waste[0]},
    ).result_rows
    assert counts == [("feedc0ffee000001", 40)]


@pytest.mark.parametrize(
    ("findings", "key"),
    [
        ({"right_size": {"max_input_tokens": 0}}, "findings.right_size.max_input_tokens"),
        ({"anomalies": {"dimensions": ["team"]}}, "findings.anomalies.dimensions"),
        ({"interval": "soon"}, "findings.interval"),
        ({"since": "2h"}, "findings.since"),
        ({"repeated_calls": {"windw": "5m"}}, "findings.repeated_calls.windw"),
    ],
)
def test_a_wrong_threshold_is_named_by_its_key(tmp_path: Path, findings: dict[str, Any], key: str) -> None:
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({**raw, "findings": findings}))
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(path, env={})
