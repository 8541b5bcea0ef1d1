"""``record_call``: the span of a call no instrumentor sees is the span an instrumentor emits for the same call.
Real OTel SDK spans; the instrumented call for comparison is the real ``openai`` SDK against the fake server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind, StatusCode

from spanmeter_instrumentation import BudgetUnavailableError, enable_budget_gate, record_call, tags
from spanmeter_instrumentation.openai import OpenAIInstrumentor
from tests.fakes.provider_server import OPENAI_CHAT_USAGE, refused_url

from .conftest import instrumented

# OPENAI_CHAT_USAGE in OTel's meaning (prompt_tokens already includes the cached ones).
CHAT_USAGE = {
    "input_tokens": OPENAI_CHAT_USAGE["prompt_tokens"],
    "output_tokens": OPENAI_CHAT_USAGE["completion_tokens"],
    "cache_read_tokens": OPENAI_CHAT_USAGE["prompt_tokens_details"]["cached_tokens"],
    "reasoning_tokens": OPENAI_CHAT_USAGE["completion_tokens_details"]["reasoning_tokens"],
}
# What the collector reads into a row: the span's kind, name, and these attributes.
READ = (
    ga.GEN_AI_OPERATION_NAME,
    ga.GEN_AI_PROVIDER_NAME,
    ga.GEN_AI_REQUEST_MODEL,
    ga.GEN_AI_RESPONSE_MODEL,
    ga.GEN_AI_USAGE_INPUT_TOKENS,
    ga.GEN_AI_USAGE_OUTPUT_TOKENS,
    ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    ga.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    ga.GEN_AI_RESPONSE_FINISH_REASONS,
    "user.id",
    "spanmeter.tag.feature",
)


def read(span: Any) -> dict[str, Any]:
    return {"name": span.name, "kind": span.kind, **{k: span.attributes.get(k) for k in READ}}


def test_a_recorded_call_is_the_span_the_instrumentor_emits(fake, spans, tracer_provider) -> None:
    client = openai.OpenAI(base_url=fake.url("openai"), api_key="k", max_retries=0)
    with instrumented(OpenAIInstrumentor(), tracer_provider), tags(feature="chat", user_id="u-1"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    instrumented_span = spans.one()
    spans.clear()

    with tags(feature="chat", user_id="u-1"):
        recorded = record_call(
            provider="openai",
            model="gpt-4o-mini",
            response_model="gpt-4o-mini-2024-07-18",
            finish_reasons=["stop"],
            tracer_provider=tracer_provider,
            **CHAT_USAGE,
        )
    span = spans.one()
    assert read(span) == read(instrumented_span)
    assert span.kind is SpanKind.CLIENT and span.name == "chat gpt-4o-mini"
    assert span.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == 25  # the fixture's numbers, not both sides' zeros
    assert span.instrumentation_scope.name == "spanmeter_instrumentation.record_call"
    assert (recorded.trace_id, recorded.span_id) == (
        format(span.context.trace_id, "032x"),
        format(span.context.span_id, "016x"),
    )


def test_times_given_as_start_and_duration_or_end(spans, tracer_provider) -> None:
    start = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    record_call(
        provider="anthropic", model="m", input_tokens=1, start_time=start, duration=1.5, tracer_provider=tracer_provider
    )
    record_call(
        provider="anthropic",
        model="m",
        input_tokens=1,
        start_time=start.replace(tzinfo=None),  # naive: UTC
        end_time=start + timedelta(seconds=2),
        tracer_provider=tracer_provider,
    )
    first, second = spans.all()
    at = int(start.timestamp()) * 10**9
    assert (first.start_time, first.end_time) == (at, at + 1_500_000_000)
    assert (second.start_time, second.end_time) == (at, at + 2_000_000_000)


def test_a_failed_call_recorded_with_its_error_type(spans, tracer_provider) -> None:
    record_call(provider="openai", model="gpt-4o", error="RateLimitError", tracer_provider=tracer_provider)
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == "RateLimitError"
    assert ga.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes


def test_as_a_context_manager_it_times_the_block_and_records_the_usage_set_inside(spans, tracer_provider) -> None:
    with tags(session_id="s-9"), record_call(provider="openai", model="gpt-4o", tracer_provider=tracer_provider) as c:
        assert spans.all() == []  # not recorded before the block ends
        time.sleep(0.05)
        c.set_usage(input_tokens=100, output_tokens=20)
        c.set_usage(cache_read_tokens=40)  # later counts add to the earlier ones
        c.set_response(model="gpt-4o-2024-08-06", id="resp-1")
    span = spans.one()
    assert span.end_time - span.start_time >= 50_000_000
    assert span.status.status_code is StatusCode.UNSET
    assert {k: span.attributes.get(k) for k in (*READ[3:7], ga.GEN_AI_RESPONSE_ID, "session.id")} == {
        ga.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06",
        ga.GEN_AI_USAGE_INPUT_TOKENS: 100,
        ga.GEN_AI_USAGE_OUTPUT_TOKENS: 20,
        ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 40,
        ga.GEN_AI_RESPONSE_ID: "resp-1",
        "session.id": "s-9",
    }


def test_an_exception_leaving_the_block_fails_the_call_and_is_raised(spans, tracer_provider) -> None:
    with (
        pytest.raises(TimeoutError, match="slow"),
        record_call(provider="openai", model="gpt-4o", tracer_provider=tracer_provider) as call,
    ):
        call.set_usage(input_tokens=10)
        raise TimeoutError("slow")
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == "TimeoutError"
    assert span.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == 10
    assert [event.name for event in span.events] == ["exception"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_tokens": -1}, "input_tokens must be an int >= 0"),
        ({"output_tokens": 1.5}, "output_tokens must be an int >= 0"),
        ({"input_tokens": 10, "cache_read_tokens": 8, "cache_write_tokens": 3}, r"\(11\) exceed input_tokens \(10\)"),
        ({"output_tokens": 2, "reasoning_tokens": 3}, r"reasoning_tokens \(3\) exceed output_tokens \(2\)"),
        ({"input_tokens": 1, "duration": -1}, "duration must be seconds >= 0"),
        ({"input_tokens": 1, "duration": float("nan")}, "duration must be seconds >= 0"),
        ({"input_tokens": 1, "duration": float("inf")}, "duration must be seconds >= 0"),
        (
            {"input_tokens": 1, "start_time": datetime(2026, 1, 2), "end_time": datetime(2026, 1, 1)},
            "end_time is before start_time",
        ),
        ({"start_time": datetime(2026, 1, 1)}, "start_time needs token counts"),
        ({"input_tokens": 1, "start_time": datetime.now(UTC) + timedelta(hours=1)}, r"now \(no end_time or duration\)"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs: dict[str, Any], message: str, spans, tracer_provider) -> None:
    with pytest.raises(ValueError, match=message):
        record_call(provider="openai", model="gpt-4o", tracer_provider=tracer_provider, **kwargs)
    assert spans.all() == []


def test_a_call_recorded_at_once_cannot_also_time_a_block(spans, tracer_provider) -> None:
    with (
        pytest.raises(TypeError, match="recorded the call at once"),
        record_call(provider="openai", model="gpt-4o", input_tokens=5, tracer_provider=tracer_provider),
    ):
        pass
    assert len(spans.all()) == 1  # the one recorded at once, not a second


def test_a_timed_block_passes_the_budget_gate_first(spans, tracer_provider, gate_off) -> None:
    enable_budget_gate(refused_url(), refresh_interval=0.2, fail_closed=True)
    ran = False
    with (
        pytest.raises(BudgetUnavailableError, match="fails closed"),
        record_call(provider="openai", model="gpt-4o", tracer_provider=tracer_provider),
    ):
        ran = True
    assert not ran and spans.all() == []
    # A call recorded after the fact was already made: the gate does not stand in its way.
    record_call(provider="openai", model="gpt-4o", input_tokens=3, tracer_provider=tracer_provider)
    assert len(spans.all()) == 1
