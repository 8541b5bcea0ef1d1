"""OpenAI: the real ``openai`` SDK against the fake server, spans from the real OTel SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.trace import SpanKind, StatusCode

from spanmeter_instrumentation import tags
from spanmeter_instrumentation.openai import OpenAIInstrumentor
from tests.fakes.provider_server import OPENAI_CHAT_USAGE, TEXT, refused_url

from .conftest import assert_uninstrument_restores, instrumented

MESSAGES = [{"role": "user", "content": "Say hello"}]
CHAT_USAGE_ATTRIBUTES = {
    ga.GEN_AI_USAGE_INPUT_TOKENS: 25,
    ga.GEN_AI_USAGE_OUTPUT_TOKENS: 12,
    ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 10,
    ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 4,
}
RESPONSES_USAGE_ATTRIBUTES = {
    ga.GEN_AI_USAGE_INPUT_TOKENS: 30,
    ga.GEN_AI_USAGE_OUTPUT_TOKENS: 15,
    ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 8,
    ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 5,
}


def client(fake: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url("openai"), api_key="test-key", max_retries=0)


def async_client(fake: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.url("openai"), api_key="test-key", max_retries=0)


def dump(items: list[Any]) -> list[dict[str, Any]]:
    return [item.model_dump() for item in items]


def assert_server(span: Any, fake: Any) -> None:
    assert span.attributes[SERVER_ADDRESS] == "127.0.0.1"
    assert span.attributes[SERVER_PORT] == int(fake.base_url.rsplit(":", 1)[1])


def test_chat_create_span_and_untouched_result(fake, spans, tracer_provider):
    kwargs = dict(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2, top_p=0.9, max_tokens=50, seed=7, stop="x")
    baseline = client(fake).chat.completions.create(**kwargs)
    assert spans.all() == []
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        result = client(fake).chat.completions.create(**kwargs)
    assert result.model_dump() == baseline.model_dump()
    assert type(result) is type(baseline)
    span = spans.one()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert_server(span, fake)
    assert {k: span.attributes[k] for k in CHAT_USAGE_ATTRIBUTES} == CHAT_USAGE_ATTRIBUTES
    expected = {
        ga.GEN_AI_OPERATION_NAME: "chat",
        ga.GEN_AI_PROVIDER_NAME: "openai",
        ga.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        ga.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        ga.GEN_AI_RESPONSE_ID: "chatcmpl-fake-1",
        ga.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        ga.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        ga.GEN_AI_REQUEST_TOP_P: 0.9,
        ga.GEN_AI_REQUEST_MAX_TOKENS: 50,
        ga.GEN_AI_REQUEST_SEED: 7,
        ga.GEN_AI_REQUEST_STOP_SEQUENCES: ("x",),
        ga.GEN_AI_OPENAI_RESPONSE_SYSTEM_FINGERPRINT: "fp_fake",
        ga.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER: "default",
    }
    assert {k: span.attributes.get(k) for k in expected} == expected
    assert ga.GEN_AI_INPUT_MESSAGES not in span.attributes  # content capture is off by default
    assert ga.GEN_AI_REQUEST_STREAM not in span.attributes


def test_chat_stream_injects_usage_and_hides_the_usage_chunk(fake, spans, tracer_provider):
    def run() -> list[Any]:
        return list(client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    baseline = run()
    assert "stream_options" not in fake.last("/chat/completions").body
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        chunks = run()
    assert fake.last("/chat/completions").body["stream_options"] == {"include_usage": True}
    assert len(chunks) == len(baseline) == 5
    assert [c.choices[0].delta.content for c in chunks] == [c.choices[0].delta.content for c in baseline]
    assert all(c.choices for c in chunks)
    span = spans.one()
    assert {k: span.attributes[k] for k in CHAT_USAGE_ATTRIBUTES} == CHAT_USAGE_ATTRIBUTES
    assert span.attributes[ga.GEN_AI_REQUEST_STREAM] is True
    assert span.attributes[ga.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert span.attributes[ga.GEN_AI_RESPONSE_ID] == "chatcmpl-fake-1"
    assert 0 <= span.attributes[ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] < span.end_time - span.start_time


def test_chat_stream_keeps_usage_chunk_the_caller_asked_for(fake, spans, tracer_provider):
    kwargs = dict(model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    baseline = dump(list(client(fake).chat.completions.create(**kwargs)))
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        chunks = dump(list(client(fake).chat.completions.create(**kwargs)))
    assert chunks == baseline
    assert len(chunks) == 6 and chunks[-1]["choices"] == []
    assert spans.one().attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == OPENAI_CHAT_USAGE["prompt_tokens"]


def test_stream_usage_injection_can_be_switched_off(fake, spans, tracer_provider):
    with instrumented(OpenAIInstrumentor(), tracer_provider, stream_usage=False):
        chunks = list(client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert "stream_options" not in fake.last("/chat/completions").body
    assert len(chunks) == 5
    span = spans.one()
    assert ga.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes
    assert span.attributes[ga.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)


def test_chat_stream_as_context_manager_and_stream_helper(fake, spans, tracer_provider):
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        with client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
            first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        with client(fake).chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as helper:
            events = [event.type for event in helper]
            final = helper.get_final_completion()
    assert final.choices[0].message.content == TEXT
    assert final.usage is None  # the caller did not ask for usage, so the helper does not see it either
    assert "content.done" in events
    closed_early, helper_span = spans.all()
    assert closed_early.attributes[ga.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert helper_span.attributes[ga.GEN_AI_USAGE_OUTPUT_TOKENS] == 12


def test_chat_async_and_async_stream(fake, spans, tracer_provider):
    async def run() -> tuple[Any, list[Any]]:
        aclient = async_client(fake)
        result = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
        return result, chunks

    baseline, baseline_chunks = asyncio.run(run())
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        result, chunks = asyncio.run(run())
    assert result.model_dump() == baseline.model_dump()
    assert dump(chunks) == dump(baseline_chunks)
    plain, streamed = spans.all()
    for span in (plain, streamed):
        assert {k: span.attributes[k] for k in CHAT_USAGE_ATTRIBUTES} == CHAT_USAGE_ATTRIBUTES
        assert span.name == "chat gpt-4o-mini"
    assert ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in streamed.attributes


def test_responses_create_stream_and_helper(fake, spans, tracer_provider):
    def run() -> tuple[Any, list[Any], Any]:
        c = client(fake)
        plain = c.responses.create(model="gpt-4.1", input="Say hello", max_output_tokens=64)
        events = list(c.responses.create(model="gpt-4.1", input="Say hello", stream=True))
        with c.responses.stream(model="gpt-4.1", input="Say hello") as stream:
            for _ in stream:
                pass
            final = stream.get_final_response()
        return plain, events, final

    baseline = run()
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        plain, events, final = run()
    assert plain.model_dump() == baseline[0].model_dump()
    assert dump(events) == dump(baseline[1])
    assert final.output_text == TEXT
    assert len(spans.all()) == 3
    for span in spans.all():
        assert span.name == "chat gpt-4.1"
        assert {k: span.attributes[k] for k in RESPONSES_USAGE_ATTRIBUTES} == RESPONSES_USAGE_ATTRIBUTES
        assert span.attributes[ga.GEN_AI_RESPONSE_ID] == "resp_fake_1"
        assert span.attributes[ga.GEN_AI_RESPONSE_MODEL] == "gpt-4.1-2024-07-18"
        assert span.attributes[ga.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert spans.all()[0].attributes[ga.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert "stream_options" not in fake.last("/responses").body


def test_responses_async_stream(fake, spans, tracer_provider):
    async def run() -> list[Any]:
        stream = await async_client(fake).responses.create(model="gpt-4.1", input="hi", stream=True)
        return [event async for event in stream]

    with instrumented(OpenAIInstrumentor(), tracer_provider):
        events = asyncio.run(run())
    assert events[-1].type == "response.completed"
    span = spans.one()
    assert span.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == 30
    assert span.attributes[ga.GEN_AI_REQUEST_STREAM] is True


def test_embeddings_sync_and_async(fake, spans, tracer_provider):
    baseline = client(fake).embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        result = client(fake).embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=3)
        asyncio.run(async_client(fake).embeddings.create(model="text-embedding-3-small", input="a"))
    assert [d.embedding for d in result.data] == [d.embedding for d in baseline.data]
    sync_span, async_span = spans.all()
    assert sync_span.name == "embeddings text-embedding-3-small"
    assert sync_span.attributes[ga.GEN_AI_OPERATION_NAME] == "embeddings"
    assert sync_span.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert sync_span.attributes[ga.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 3
    assert ga.GEN_AI_USAGE_OUTPUT_TOKENS not in sync_span.attributes
    assert async_span.attributes[ga.GEN_AI_RESPONSE_MODEL] == "text-embedding-3-small"


@pytest.mark.parametrize(
    ("model", "error"), [("error-429", openai.RateLimitError), ("error-500", openai.InternalServerError)]
)
def test_http_errors_are_recorded_and_reraised(fake, spans, tracer_provider, model, error):
    with instrumented(OpenAIInstrumentor(), tracer_provider), pytest.raises(error) as raised:
        client(fake).chat.completions.create(model=model, messages=MESSAGES)
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == error.__qualname__
    assert span.events[0].name == "exception"
    assert span.events[0].attributes["exception.type"].endswith(error.__qualname__)
    assert raised.value.status_code == int(model[-3:])


def test_connection_refused_async(spans, tracer_provider):
    async def run() -> None:
        aclient = openai.AsyncOpenAI(base_url=refused_url() + "/v1", api_key="k", max_retries=0)
        await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)

    with instrumented(OpenAIInstrumentor(), tracer_provider), pytest.raises(openai.APIConnectionError):
        asyncio.run(run())
    span = spans.one()
    assert span.attributes[ERROR_TYPE] == "APIConnectionError"
    assert span.status.status_code is StatusCode.ERROR


def test_tags_are_stamped_on_the_span(fake, spans, tracer_provider):
    with instrumented(OpenAIInstrumentor(), tracer_provider), tags(feature="chat", user_id="u1", session_id="s1"):
        client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    attributes = spans.one().attributes
    assert attributes["spanmeter.tag.feature"] == "chat"
    assert attributes["user.id"] == "u1"
    assert attributes["session.id"] == "s1"


def test_uninstrument_restores_the_library_exactly(fake, spans, tracer_provider):
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import AsyncEmbeddings, Embeddings
    from openai.resources.responses import AsyncResponses, Responses

    assert_uninstrument_restores(
        OpenAIInstrumentor(),
        tracer_provider,
        (Completions, AsyncCompletions, Responses, AsyncResponses),
        ("create", "parse"),
    )
    assert_uninstrument_restores(OpenAIInstrumentor(), tracer_provider, (Embeddings, AsyncEmbeddings), ("create",))
    client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert spans.all() == []
