"""Limits a sender cannot push past: spans per second per key, requests at once, values per `each` budget.
Each refusal is retryable (the SDKs' own retries then deliver) and counted in a metric."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SpanExportResult

from spanmeter.keys import create_key
from spanmeter.service import Collector

from .budget_helpers import budget_overrides, budget_status, spend
from .conftest import deep_merge, emit, http_request, metric_value, tracer_provider, wait_for_rows
from .test_auth import AUTH, exporter
from .test_durability import count_rows, make_spans
from .test_pricing_e2e import genai_attributes


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_rate_limited_key_gets_retryable_answers_and_the_sdk_delivers_every_span(
    start_collector: Callable[..., Collector], store: Client, database: str, transport: str
) -> None:
    limited = {"extensions": {"spanmeter_keys": {"rate_limit": {"spans_per_second": 150, "burst": 100}}}}
    collector = start_collector(deep_merge(AUTH, limited))
    key, _ = create_key(store, database, "team-a", "bulk", "ingest")
    time.sleep(0.3)  # the collectors' periodic key read (200 ms) has it
    sender = exporter(collector, transport, key)
    started = time.monotonic()
    for _ in range(4):  # 400 spans at once against 100 + 150/s: most requests are told to wait
        assert sender.export(make_spans(100)) is SpanExportResult.SUCCESS
    took = time.monotonic() - started
    wait_for_rows(collector, 400)
    assert count_rows(store, database)[:2] == (400, 400)
    assert metric_value(collector, "spanmeter_spans_refused_total", reason="rate_limited") >= 100
    assert took >= 1.5, f"400 spans at 150/s after a burst of 100 cannot take {took:.2f}s"


def test_requests_past_max_concurrent_requests_are_answered_retryable(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector({"receivers": {"otlp": {"protocols": {"http": {"max_concurrent_requests": 1}}}}})
    body = encode_spans(make_spans(3)).SerializeToString()
    # A request whose body is still arriving holds the one slot.
    slow = socket.create_connection(("127.0.0.1", collector.http_port))
    head = (
        f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    slow.sendall(head.encode() + body[:10])
    deadline = time.monotonic() + 5  # until the server has taken the slow request into its one slot
    while (status := http_request(collector, "/v1/traces", body, {"Content-Type": "application/x-protobuf"})[0]) != 503:
        assert time.monotonic() < deadline, f"a second request at once was answered {status}"
        time.sleep(0.1)
    slow.sendall(body[10:])
    assert b"200 OK" in slow.recv(4096)
    slow.close()
    status, _, _ = http_request(collector, "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
    assert status == 200  # a resend of the same spans: accepted, stored once
    wait_for_rows(collector, 3)
    assert count_rows(store, database)[:2] == (3, 3)


def test_an_each_budget_tracks_at_most_max_each_values_per_window(start_collector: Callable[..., Collector]) -> None:
    budget = {"name": "per-user", "scope": {"user": "each"}, "limit_usd": 100}
    collector = start_collector(budget_overrides([budget], max_each_values=2))
    provider = tracer_provider(collector)
    for user in ("u-1", "u-2", "u-3", "u-1"):
        spend(provider, 1, **{"user.id": user})
    wait_for_rows(collector, 4)
    deadline = time.monotonic() + 5
    while len(budget_status(collector)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # reconciles (every 200 ms) read the store, which holds u-3's span: still not tracked
    tracked = {entry["values"]["user"]: Decimal(entry["spend_usd"]) for entry in budget_status(collector)}
    assert tracked == {"u-1": 2, "u-2": 1}
    assert metric_value(collector, "spanmeter_budget_each_values_capped_total", budget="per-user") == 1


def test_tags_past_max_attributes_are_left_out_and_counted(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector({"processors": {"genai": {"max_attributes": 16}}})
    provider = tracer_provider(collector)
    many = {f"spanmeter.tag.t{n:03d}": f"v{n}" for n in range(40)}
    emit(provider, "chat", genai_attributes("openai", "gpt-4o-mini", {"input": 10, "output": 1}, **many))
    emit(
        provider,
        "chat",
        genai_attributes("openai", "gpt-4o-mini", {"input": 10, "output": 1}, **{"spanmeter.tag.a": "1"}),
    )
    wait_for_rows(collector, 2)
    sizes = sorted(
        n
        for (n,) in store.query(
            "SELECT length(mapKeys(tags)) FROM {db:Identifier}.genai_spans", parameters={"db": database}
        ).result_rows
    )
    assert sizes == [1, 16]
    assert metric_value(collector, "spanmeter_spans_tags_capped_total") == 1
