"""One call, one row: resent spans, and one call reported by two instrumentations, are stored once;
distinct calls that look alike are not merged."""

from __future__ import annotations

import time

from clickhouse_connect.driver.client import Client
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.export import SpanExportResult

from spanmeter.service import Collector

from .conftest import rows, span_exporter, tracer_provider, wait_for_rows
from .test_durability import make_spans
from .test_pricing_e2e import genai_attributes

USAGE = {"input": 170, "output": 15, "cache_read": 50, "cache_write": 100}


def settle(collector: Collector, expected: int) -> None:
    wait_for_rows(collector, expected)
    time.sleep(0.3)  # anything wrongly stored would have arrived by now
    assert collector.exporter.stored_rows == expected


def test_a_resent_request_is_stored_once(collector: Collector, store: Client, database: str) -> None:
    exporter = span_exporter(collector, "grpc")
    spans = make_spans(5)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.export(spans) is SpanExportResult.SUCCESS  # an exporter retrying after a lost answer
    settle(collector, 5)
    assert len(rows(store, database)) == 5


def test_one_call_traced_by_the_sdk_and_an_instrumentation_is_one_row(
    collector: Collector, store: Client, database: str
) -> None:
    """Anthropic 2.x traces itself; OpenLLMetry's span of the same call is a separate root (same response id),
    OpenInference's is the native span's parent (same trace, same usage)."""
    provider = tracer_provider(collector)
    tracer = provider.get_tracer("tests")
    native = genai_attributes("anthropic", "claude-sonnet-4-5", USAGE, **{"gen_ai.response.id": "msg_1"})
    # Two roots (two traces) over the same time: the instrumentation's span around the SDK's own.
    instrumentation = tracer.start_span(
        "anthropic.chat", context=Context(), attributes={**native, "llm.request.type": "chat"}
    )
    tracer.start_span("anthropic.messages.create", context=Context(), attributes=native).end()
    instrumentation.end()

    outer = genai_attributes("anthropic", "claude-sonnet-4-5", USAGE)  # no response id
    with (
        tracer.start_as_current_span("messages.create", attributes=outer),
        tracer.start_as_current_span("anthropic.messages.create", attributes={**native, "gen_ai.response.id": "msg_2"}),
    ):
        pass
    settle(collector, 2)
    stored = rows(store, database)
    assert sorted(row["response_model"] for row in stored) == ["claude-sonnet-4-5"] * 2
    assert sum(row["input_tokens"] for row in stored) == 2 * USAGE["input"]
    assert collector.metrics.spans_dropped.labels("duplicate_call")._value.get() == 2


def test_alike_but_separate_calls_are_all_counted(collector: Collector, store: Client, database: str) -> None:
    """The same usage in one trace: one call after the other (an agent loop), and calls in parallel (one step
    fanning out), are separate calls."""
    provider = tracer_provider(collector)
    tracer = provider.get_tracer("tests")
    attributes = genai_attributes("openai", "gpt-4o-mini", {"input": 100, "output": 1})
    with tracer.start_as_current_span("agent"):
        for _ in range(3):
            with tracer.start_as_current_span("chat gpt-4o-mini", attributes=attributes):
                time.sleep(0.002)
        parallel = [tracer.start_span("chat gpt-4o-mini", attributes=attributes) for _ in range(3)]
        for span in parallel:
            span.end()
    assert trace.get_current_span() is trace.INVALID_SPAN
    settle(collector, 6)
    assert len(rows(store, database)) == 6


def test_a_reused_response_id_does_not_merge_different_calls(
    collector: Collector, store: Client, database: str
) -> None:
    """Some OpenAI-compatible servers answer every call with the same id: different usage, different calls."""
    provider = tracer_provider(collector)
    tracer = provider.get_tracer("tests")
    first = tracer.start_span(
        "chat",
        context=Context(),
        attributes=genai_attributes("openai", "gpt-4o", {"input": 10, "output": 1}, **{"gen_ai.response.id": "same"}),
    )
    tracer.start_span(
        "chat",
        context=Context(),
        attributes=genai_attributes("openai", "gpt-4o", {"input": 20, "output": 2}, **{"gen_ai.response.id": "same"}),
    ).end()
    first.end()
    settle(collector, 2)
    assert sorted(row["input_tokens"] for row in rows(store, database)) == [10, 20]
