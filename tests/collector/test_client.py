"""`spanmeter.Client` against a real running collector (loopback HTTP, the real store): typed answers with exact
money, paging, errors carrying the status and the server's text, and keys."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client as StoreClient

import spanmeter
from spanmeter.calls import CallRow, Cursor
from spanmeter.client import ApiError, BudgetState, Client
from spanmeter.keys import create_key
from spanmeter.receivers.calls_json import CallIn
from spanmeter.report import ReportRow
from spanmeter.service import Collector

from .budget_helpers import MODEL, PROVIDER, budget_overrides
from .conftest import deep_merge, http_request, rows, wait_for_rows
from .test_auth import AUTH

# $1 per input token (budget_helpers.PRICE): a call with N input tokens costs exactly N USD.
CALLS = [
    {"provider": PROVIDER, "model": MODEL, "input_tokens": 5, "tags": {"feature": "search", "user_id": "u-1"}},
    CallIn(provider=PROVIDER, model=MODEL, input_tokens=2, error="Timeout", tags={"feature": "chat"}),
    {"provider": PROVIDER, "model": MODEL, "input_tokens": 1, "duration_ms": 20, "tags": {"feature": "chat"}},
]
BUDGET = {"name": "per-feature", "scope": {"feature": "each"}, "limit_usd": 10, "thresholds": [40, 100]}


def budgets_when(
    client: Client, ready: Callable[[list[BudgetState]], bool], timeout: float = 10.0
) -> list[BudgetState]:
    deadline = time.monotonic() + timeout
    while not ready(found := client.budgets().budgets):
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    return found


def test_the_client_answers_with_typed_objects(
    start_collector: Callable[..., Collector], store: StoreClient, database: str
) -> None:
    collector = start_collector(budget_overrides([BUDGET]))
    client = spanmeter.Client(f"http://127.0.0.1:{collector.http_port}/")
    recorded = client.record_calls(CALLS)
    assert recorded.accepted == 3
    wait_for_rows(collector, 3)
    stored = {row["span_id"]: row for row in rows(store, database)}
    assert [ids.span_id for ids in recorded.calls] == [
        span for span, _ in sorted(stored.items(), key=lambda item: -item[1]["total_cost"])
    ]

    report = client.report(by="feature", since="1h")
    assert all(isinstance(row, ReportRow) for row in report)
    assert [(r.group, r.requests, r.input_tokens, r.total_cost) for r in report] == [
        ("search", 1, 5, Decimal(5)),
        ("chat", 2, 3, Decimal(3)),
    ]

    first = client.calls(limit=2)
    assert all(isinstance(call, CallRow) for call in first.calls) and isinstance(first.cursor, Cursor)
    rest = client.calls(limit=2, cursor=first.cursor)
    every = list(client.iter_calls(limit=2))
    assert [c.span_id for c in every] == [c.span_id for c in first.calls + rest.calls]
    assert sorted(c.span_id for c in every) == sorted(stored)
    (failed,) = client.calls(status="error").calls
    assert (failed.feature, failed.error_type, failed.total_cost) == ("chat", "Timeout", Decimal(2))
    (costly,) = client.calls(min_cost=Decimal("4.5")).calls
    assert (costly.feature, costly.user, costly.total_cost) == ("search", "u-1", Decimal(5))

    states = budgets_when(
        client,
        lambda found: (
            {b.values.get("feature"): b.spend_usd for b in found}
            == {
                "search": Decimal(5),
                "chat": Decimal(3),
            }
        ),
    )
    by_feature = {state.values["feature"]: state for state in states}
    assert (by_feature["search"].state, by_feature["search"].limit_usd) == ("warn", Decimal(10))
    assert by_feature["chat"].state == "ok" and by_feature["chat"].requests == 2
    assert by_feature["chat"].extra["thresholds"] == [40, 100]

    with pytest.raises(ApiError) as refused:
        client.calls(limit=5000)
    assert refused.value.status == 400
    assert refused.value.message == "limit must be a whole number from 1 to 1000; got '5000'"
    with pytest.raises(ApiError) as bad_report:
        client.report(by="colour")
    assert bad_report.value.status == 400 and "colour" in bad_report.value.message


def test_refused_calls_and_an_unreachable_collector_raise_api_error() -> None:
    """No collector needed: a bad call is refused before sending (sent, it would be an ApiError: unreachable)."""
    client = Client("http://127.0.0.1:9", timeout=2)
    with pytest.raises(ValueError, match="input_tokens"):
        client.record_calls([{"provider": "openai", "model": "gpt-4o", "input_tokens": -1}])
    with pytest.raises(ApiError) as unreachable:
        client.report()
    assert unreachable.value.status is None and "cannot reach the collector" in unreachable.value.message


def test_the_client_sends_its_key(
    start_collector: Callable[..., Collector], store: StoreClient, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = start_collector(deep_merge(AUTH, budget_overrides([])))
    url = f"http://127.0.0.1:{collector.http_port}"
    ingest, _ = create_key(store, database, "team-a", "batch", "ingest")
    read, _ = create_key(store, database, "team-a", "notebook", "read")
    call = {"provider": PROVIDER, "model": MODEL, "input_tokens": 4}

    with pytest.raises(ApiError) as anonymous:
        Client(url).report()
    assert anonymous.value.status == 401 and "no project key" in anonymous.value.message
    with pytest.raises(ApiError) as reader_sending:
        Client(url, read).record_calls([call])
    assert reader_sending.value.status == 403 and "cannot send spans" in reader_sending.value.message
    assert read not in repr(Client(url, read))

    assert Client(url, ingest).record_calls([call]).accepted == 1
    wait_for_rows(collector, 1)
    monkeypatch.setenv("SPANMETER_API_KEY", read)  # the key the CLI reads too
    (row,) = Client(url).report(by="project")
    assert (row.group, row.total_cost) == ("team-a", Decimal(4))


def test_findings_are_read_into_their_objects(start_collector: Callable[..., Collector]) -> None:
    from spanmeter.findings.model import Finding

    collector = start_collector(budget_overrides([]))  # the price of MODEL
    client = Client(f"http://127.0.0.1:{collector.http_port}")
    failed = {"provider": PROVIDER, "model": MODEL, "input_tokens": 10, "error": "Timeout"}
    client.record_calls([failed] * 5)  # paid for and failed, often enough for the paid_failures rule
    wait_for_rows(collector, 5)
    found = client.findings("1d")
    status, _, body = http_request(collector, "/v1/findings?since=1d")
    assert status == 200

    def same(finding: dict[str, Any]) -> dict[str, Any]:  # the period ends when each request was answered
        return {k: v for k, v in finding.items() if k not in ("start", "end", "trace_ids")}

    assert [same(finding.to_json()) for finding in found] == [same(f) for f in json.loads(body)["findings"]]
    assert [(f.kind, type(f)) for f in found] == [("paid_failures", Finding)]
    assert found[0].savings_usd_per_month > 0
    with pytest.raises(ApiError) as refused:
        client.findings("a fortnight")
    assert refused.value.status == 400 and "since" in refused.value.message
