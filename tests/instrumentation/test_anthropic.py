"""Anthropic: the real ``anthropic`` SDK against the fake server.

anthropic 2.x traces itself; most tests turn that off per client (``open_telemetry=False``)
to exercise our spans, and one checks that we stand aside when it is on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS
from opentelemetry.trace import SpanKind, StatusCode

from spanmeter_instrumentation import tags
from spanmeter_instrumentation.anthropic import AnthropicInstrumentor
from tests.fakes.provider_server import ANTHROPIC_USAGE, TEXT, refused_url

from .conftest import assert_uninstrument_restores, instrumented

MODEL = "claude-sonnet-4-6"
MESSAGES = [{"role": "user", "content": "Say hello"}]
# Anthropic: 20 uncached + 50 cache reads + 100 cache writes = 170 input tokens in OTel's meaning.
USAGE_ATTRIBUTES = {
    ga.GEN_AI_USAGE_INPUT_TOKENS: 170,
    ga.GEN_AI_USAGE_OUTPUT_TOKENS: 15,
    ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 50,
    ga.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 100,
}


def client(base_url: str, **options: Any) -> anthropic.Anthropic:
    options.setdefault("open_telemetry", False)
    return anthropic.Anthropic(base_url=base_url, api_key="test-key", max_retries=0, **options)


def async_client(base_url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base_url, api_key="test-key", max_retries=0, open_telemetry=False)


def usage_of(span: Any) -> dict[str, Any]:
    return {k: span.attributes.get(k) for k in USAGE_ATTRIBUTES}


def test_create_span_with_cache_tokens_in_otel_meaning(fake, spans, tracer_provider):
    kwargs = dict(model=MODEL, max_tokens=100, messages=MESSAGES, stop_sequences=["END"])  # 2.x has no temperature
    baseline = client(fake.url("anthropic")).messages.create(**kwargs)
    with instrumented(AnthropicInstrumentor(), tracer_provider):
        result = client(fake.url("anthropic")).messages.create(**kwargs)
    assert result.model_dump() == baseline.model_dump()
    assert result.usage.input_tokens == ANTHROPIC_USAGE["input_tokens"]  # the caller still sees Anthropic's count
    span = spans.one()
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert usage_of(span) == USAGE_ATTRIBUTES
    expected = {
        ga.GEN_AI_OPERATION_NAME: "chat",
        ga.GEN_AI_PROVIDER_NAME: "anthropic",
        ga.GEN_AI_REQUEST_MODEL: MODEL,
        ga.GEN_AI_RESPONSE_MODEL: MODEL,
        ga.GEN_AI_RESPONSE_ID: "msg_fake_1",
        ga.GEN_AI_RESPONSE_FINISH_REASONS: ("end_turn",),
        ga.GEN_AI_REQUEST_MAX_TOKENS: 100,
        ga.GEN_AI_REQUEST_STOP_SEQUENCES: ("END",),
        SERVER_ADDRESS: "127.0.0.1",
    }
    assert {k: span.attributes.get(k) for k in expected} == expected


def test_create_stream_true(fake, spans, tracer_provider):
    def run() -> list[Any]:
        return list(
            client(fake.url("anthropic")).messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
        )

    baseline = run()
    with instrumented(AnthropicInstrumentor(), tracer_provider):
        events = run()
    assert [e.model_dump() for e in events] == [e.model_dump() for e in baseline]
    assert len(events) == 8
    span = spans.one()
    assert usage_of(span) == USAGE_ATTRIBUTES
    assert span.attributes[ga.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert span.attributes[ga.GEN_AI_REQUEST_STREAM] is True
    assert ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes


def test_stream_helper_sync_and_async(fake, spans, tracer_provider):
    def run_sync() -> tuple[str, Any]:
        with client(fake.url("anthropic")).messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
            text = "".join(stream.text_stream)
            return text, stream.get_final_message()

    async def run_async() -> Any:
        async with async_client(fake.url("anthropic")).messages.stream(
            model=MODEL, max_tokens=100, messages=MESSAGES
        ) as stream:
            return await stream.get_final_message()

    with instrumented(AnthropicInstrumentor(), tracer_provider):
        text, final = run_sync()
        async_final = asyncio.run(run_async())
    assert text == TEXT
    assert final.usage.output_tokens == 15 and async_final.content[0].text == TEXT
    sync_span, async_span = spans.all()
    for span in (sync_span, async_span):
        assert usage_of(span) == USAGE_ATTRIBUTES
        assert span.attributes[ga.GEN_AI_RESPONSE_ID] == "msg_fake_1"


def test_async_create(fake, spans, tracer_provider):
    async def run() -> Any:
        return await async_client(fake.url("anthropic")).messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)

    with instrumented(AnthropicInstrumentor(), tracer_provider):
        result = asyncio.run(run())
    assert result.content[0].text == TEXT
    assert usage_of(spans.one()) == USAGE_ATTRIBUTES


@pytest.mark.parametrize(
    ("model", "error"), [("error-429", anthropic.RateLimitError), ("error-500", anthropic.InternalServerError)]
)
def test_http_errors(fake, spans, tracer_provider, model, error):
    with instrumented(AnthropicInstrumentor(), tracer_provider), pytest.raises(error):
        client(fake.url("anthropic")).messages.create(model=model, max_tokens=10, messages=MESSAGES)
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == error.__qualname__
    assert [e.name for e in span.events] == ["exception"]


def test_connection_refused(spans, tracer_provider):
    with instrumented(AnthropicInstrumentor(), tracer_provider), pytest.raises(anthropic.APIConnectionError):
        client(refused_url()).messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert spans.one().attributes[ERROR_TYPE] == "APIConnectionError"


def test_stands_aside_where_the_sdk_traces_natively(fake, spans, tracer_provider):
    native = client(fake.url("anthropic"), open_telemetry={"tracer_provider": tracer_provider})
    with instrumented(AnthropicInstrumentor(), tracer_provider), tags(feature="native", user_id="u2"):
        native.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
        with native.messages.stream(model=MODEL, max_tokens=10, messages=MESSAGES) as stream:
            stream.until_done()
    plain, streamed = spans.all()
    for span in (plain, streamed):
        assert span.name == "anthropic.messages.create"  # the SDK's own span, and no second one of ours
        assert span.instrumentation_scope.name == "com.anthropic.sdk.python"
        assert span.attributes["spanmeter.tag.feature"] == "native"
        assert span.attributes["user.id"] == "u2"
    # the SDK already counts input tokens in OTel's meaning, and names cache writes cache_write
    assert plain.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == 170
    assert plain.attributes["gen_ai.usage.cache_write.input_tokens"] == 100


def test_uninstrument_restores_exactly(fake, spans, tracer_provider):
    from anthropic.resources.messages import AsyncMessages, Messages

    owners, names = (Messages, AsyncMessages), ("create", "parse", "stream")
    assert_uninstrument_restores(AnthropicInstrumentor(), tracer_provider, owners, names)
