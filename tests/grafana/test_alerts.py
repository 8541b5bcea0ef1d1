"""The provisioned alert rules: each rule's query expanded as the ClickHouse plugin expands it (alert queries get
no dashboard variables) and run on seeded chDB data; the threshold expression evaluated as Grafana's `threshold`
expression does on numeric table data (one number per row, string columns as labels). Seeded trouble fires the
matching rule; clean data fires none."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from .conftest import Runner, alert_rules, provisioning
from .plugin_macros import QueryContext

RULES = {rule["uid"]: rule for rule in alert_rules()}
# Which rule each kind of seeded trouble must fire.
TRIGGERS = {
    "spike": "spanmeter-spend-spike",
    "drift": "spanmeter-prompt-drift",
    "unpriced": "spanmeter-unpriced-model",
    "budget": "spanmeter-budget-exceeded",
    "errors": "spanmeter-error-rate",
}
EVALUATORS = {
    "gt": lambda v, p: v > p[0],
    "lt": lambda v, p: v < p[0],
    "within_range": lambda v, p: p[0] < v < p[1],
    "outside_range": lambda v, p: v < p[0] or v > p[1],
}


def sql_query(rule: dict[str, Any]) -> dict[str, Any]:
    (query,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
    return query


def evaluate(rule: dict[str, Any], runner: Runner, now: datetime) -> list[tuple[dict[str, str], float, bool]]:
    """(labels, value, firing) per row of the rule's query."""
    query = sql_query(rule)
    span = query["relativeTimeRange"]
    ctx = QueryContext(
        now - timedelta(seconds=span["from"]),
        now - timedelta(seconds=span["to"]),
        timedelta(milliseconds=query["model"]["intervalMs"]),
    )
    result = runner.run(query["model"]["rawSql"], {}, ctx)
    (condition,) = [d for d in rule["data"] if d["refId"] == rule["condition"]]
    assert condition["model"]["type"] == "threshold" and condition["model"]["expression"] == query["refId"]
    evaluator = condition["model"]["conditions"][0]["evaluator"]
    value_at = result.columns.index("value")
    out = []
    for row in result.rows:
        labels = {c: str(v) for c, v in zip(result.columns, row, strict=True) if c != "value"}
        value = float(row[value_at])
        out.append((labels, value, EVALUATORS[evaluator["type"]](value, evaluator["params"])))
    return out


def test_the_rules_the_issue_asks_for_are_provisioned_once() -> None:
    assert set(RULES) == {*TRIGGERS.values(), "spanmeter-daily-spend"}
    assert len(RULES) == len(alert_rules())
    for rule in RULES.values():
        for key in ("summary", "description"):
            assert len(rule["annotations"][key]) > 40, (rule["uid"], key)
        assert rule["noDataState"] == "OK" and rule["execErrState"] == "Error"


@pytest.mark.parametrize("uid", list(RULES))
def test_alert_query_has_no_dashboard_variables_and_returns_numbers(
    seeded: dict[str, Runner], seeded_now: datetime, uid: str
) -> None:
    rule = RULES[uid]
    query = sql_query(rule)
    assert query["datasourceUid"] == provisioning("datasources")["datasources"][0]["uid"]
    sql = query["model"]["rawSql"]
    assert "$__conditionalAll" not in sql
    assert not re.search(r"\$(?!__)\w|\$\{|\[\[", sql), "alert rules cannot use dashboard variables"
    result = seeded["all"].run(sql, {}, QueryContext(seeded_now, seeded_now, timedelta(minutes=1)))
    assert "value" in result.columns
    numeric = next(t for c, t in zip(result.columns, result.types, strict=True) if c == "value")
    assert re.match(r"(Nullable\()?(Float|U?Int|Decimal)", numeric), numeric
    labels = [t for c, t in zip(result.columns, result.types, strict=True) if c != "value"]
    assert all("String" in t for t in labels), "every other column is a label: a string"


def test_clean_data_fires_nothing(seeded: dict[str, Runner], seeded_now: datetime) -> None:
    evaluated = {uid: evaluate(rule, seeded["clean"], seeded_now) for uid, rule in RULES.items()}
    firing = {uid: rows for uid, rows in evaluated.items() if any(fires for _, _, fires in rows)}
    assert not firing
    # Not silent for want of data: every rule but the unpriced one sees the clean traffic.
    assert all(evaluated[uid] for uid in RULES if uid != "spanmeter-unpriced-model"), evaluated


@pytest.mark.parametrize("trouble", list(TRIGGERS))
def test_seeded_trouble_fires_its_rule(seeded: dict[str, Runner], seeded_now: datetime, trouble: str) -> None:
    rows = evaluate(RULES[TRIGGERS[trouble]], seeded[trouble], seeded_now)
    firing = [labels for labels, _, fires in rows if fires]
    assert firing, rows
    expected = {
        "spike": {"project": "acme"},
        "drift": {"feature": "summarize"},
        "unpriced": {"model": "acme-llm-9"},
        "budget": {"budget": "monthly-acme"},
        "errors": {"service": "chat-api"},
    }[trouble]
    assert any(expected.items() <= labels.items() for labels in firing), firing


def test_spend_spike_also_trips_the_daily_spend_threshold(seeded: dict[str, Runner], seeded_now: datetime) -> None:
    rows = evaluate(RULES["spanmeter-daily-spend"], seeded["spike"], seeded_now)
    assert [labels["project"] for labels, _, fires in rows if fires] == ["acme"]


def test_contact_points_come_from_environment_variables_and_the_policy_uses_them() -> None:
    alerting = provisioning("alerting")
    (point,) = alerting["contactPoints"]
    kinds = {receiver["type"]: receiver["settings"] for receiver in point["receivers"]}
    assert set(kinds) == {"webhook", "slack", "email"}
    assert re.fullmatch(r"\$\{\w+\}", kinds["webhook"]["url"])
    assert re.fullmatch(r"\$\{\w+\}", kinds["slack"]["url"])
    assert re.fullmatch(r"\$\{\w+\}", kinds["email"]["addresses"])
    (policy,) = alerting["policies"]
    assert policy["receiver"] == point["name"]
    assert all(route["receiver"] == point["name"] for route in policy.get("routes", []))
