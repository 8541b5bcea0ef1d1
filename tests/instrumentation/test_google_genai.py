"""Google GenAI: the real ``google-genai`` SDK against the fake Gemini API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS
from opentelemetry.trace import SpanKind, StatusCode

from spanmeter_instrumentation.google_genai import GoogleGenAIInstrumentor
from tests.fakes.provider_server import TEXT, TEXT_PIECES

from .conftest import assert_uninstrument_restores, instrumented

MODEL = "gemini-2.5-flash"
# Gemini: prompt 40 (16 of them cached content), 9 candidate + 6 thinking tokens = 15 output tokens.
USAGE_ATTRIBUTES = {
    ga.GEN_AI_USAGE_INPUT_TOKENS: 40,
    ga.GEN_AI_USAGE_OUTPUT_TOKENS: 15,
    ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 16,
    ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 6,
}


_clients: list[genai.Client] = []


def client(fake: Any) -> genai.Client:
    """Kept alive: a genai Client closes its HTTP client when it is garbage-collected."""
    _clients.append(genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=fake.base_url)))
    return _clients[-1]


def usage_of(span: Any) -> dict[str, Any]:
    return {k: span.attributes.get(k) for k in USAGE_ATTRIBUTES}


def test_generate_content(fake, spans, tracer_provider):
    config = types.GenerateContentConfig(temperature=0.3, max_output_tokens=99, top_k=5, stop_sequences=["Z"])
    baseline = client(fake).models.generate_content(model=MODEL, contents="Say hello", config=config)
    with instrumented(GoogleGenAIInstrumentor(), tracer_provider):
        result = client(fake).models.generate_content(model=MODEL, contents="Say hello", config=config)
    assert result.model_dump() == baseline.model_dump()
    assert result.text == TEXT
    span = spans.one()
    assert span.name == f"generate_content {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert usage_of(span) == USAGE_ATTRIBUTES
    expected = {
        ga.GEN_AI_OPERATION_NAME: "generate_content",
        ga.GEN_AI_PROVIDER_NAME: "gcp.gemini",
        ga.GEN_AI_REQUEST_MODEL: MODEL,
        ga.GEN_AI_RESPONSE_MODEL: MODEL,
        ga.GEN_AI_RESPONSE_ID: "gem-fake-1",
        ga.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        ga.GEN_AI_REQUEST_TEMPERATURE: 0.3,
        ga.GEN_AI_REQUEST_MAX_TOKENS: 99,
        ga.GEN_AI_REQUEST_TOP_K: 5,
        ga.GEN_AI_REQUEST_STOP_SEQUENCES: ("Z",),
        SERVER_ADDRESS: "127.0.0.1",
    }
    assert {k: span.attributes.get(k) for k in expected} == expected


def test_generate_content_stream_sync_and_async(fake, spans, tracer_provider):
    def run_sync() -> list[Any]:
        return list(client(fake).models.generate_content_stream(model=MODEL, contents="Say hello"))

    async def run_async() -> list[Any]:
        stream = await client(fake).aio.models.generate_content_stream(model=MODEL, contents="Say hello")
        return [chunk async for chunk in stream]

    baseline = run_sync()
    with instrumented(GoogleGenAIInstrumentor(), tracer_provider):
        chunks = run_sync()
        async_chunks = asyncio.run(run_async())
    assert [c.model_dump() for c in chunks] == [c.model_dump() for c in baseline]
    assert [c.text for c in chunks] == [c.text for c in async_chunks] == list(TEXT_PIECES)
    sync_span, async_span = spans.all()
    for span in (sync_span, async_span):
        assert usage_of(span) == USAGE_ATTRIBUTES
        assert span.attributes[ga.GEN_AI_REQUEST_STREAM] is True
        assert span.attributes[ga.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
        assert ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes
    assert fake.last(":streamGenerateContent").query == {"alt": ["sse"]}


def test_async_generate_and_embed(fake, spans, tracer_provider):
    async def run() -> tuple[Any, Any]:
        aio = client(fake).aio
        result = await aio.models.generate_content(model=MODEL, contents="hi")
        embedded = await aio.models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
        return result, embedded

    with instrumented(GoogleGenAIInstrumentor(), tracer_provider):
        result, embedded = asyncio.run(run())
        client(fake).models.embed_content(
            model="gemini-embedding-001", contents="a", config=types.EmbedContentConfig(output_dimensionality=3)
        )
    assert result.text == TEXT and len(embedded.embeddings) == 2
    generate, embed_async, embed_sync = spans.all()
    assert usage_of(generate) == USAGE_ATTRIBUTES
    assert embed_async.name == "embeddings gemini-embedding-001"
    assert embed_async.attributes[ga.GEN_AI_OPERATION_NAME] == "embeddings"
    assert embed_sync.attributes[ga.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 3


@pytest.mark.parametrize(("model", "error"), [("error-429", errors.ClientError), ("error-500", errors.ServerError)])
def test_http_errors(fake, spans, tracer_provider, model, error):
    with instrumented(GoogleGenAIInstrumentor(), tracer_provider), pytest.raises(error) as raised:
        client(fake).models.generate_content(model=model, contents="hi")
    assert raised.value.code == int(model[-3:])
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == error.__qualname__


def test_stream_error_surfaces_while_iterating(fake, spans, tracer_provider):
    with instrumented(GoogleGenAIInstrumentor(), tracer_provider), pytest.raises(errors.ClientError):
        list(client(fake).models.generate_content_stream(model="error-429", contents="hi"))
    span = spans.one()
    assert span.attributes[ERROR_TYPE] == "ClientError"
    assert span.status.status_code is StatusCode.ERROR


def test_uninstrument_restores_exactly(tracer_provider):
    from google.genai.models import AsyncModels, Models

    names = ("_generate_content", "_generate_content_stream", "_embed_content")
    assert_uninstrument_restores(GoogleGenAIInstrumentor(), tracer_provider, (Models, AsyncModels), names)
