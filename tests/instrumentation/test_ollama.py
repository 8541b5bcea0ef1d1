"""Ollama: the real ``ollama`` client against the fake server (NDJSON streams)."""

from __future__ import annotations

import asyncio
from typing import Any

import ollama
import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.trace import SpanKind, StatusCode

from spanmeter_instrumentation.ollama import OllamaInstrumentor
from tests.fakes.provider_server import TEXT, TEXT_PIECES, refused_url

from .conftest import assert_uninstrument_restores, instrumented

MODEL = "llama3.2"
MESSAGES = [{"role": "user", "content": "Say hello"}]
USAGE_ATTRIBUTES = {ga.GEN_AI_USAGE_INPUT_TOKENS: 26, ga.GEN_AI_USAGE_OUTPUT_TOKENS: 11}


def usage_of(span: Any) -> dict[str, Any]:
    return {k: span.attributes.get(k) for k in USAGE_ATTRIBUTES}


def test_chat_and_generate(fake, spans, tracer_provider):
    c = ollama.Client(host=fake.base_url)
    options = {"temperature": 0.1, "num_predict": 32, "stop": ["Q"]}
    baseline = c.chat(model=MODEL, messages=MESSAGES, options=options)
    with instrumented(OllamaInstrumentor(), tracer_provider):
        result = c.chat(model=MODEL, messages=MESSAGES, options=options)
        generated = c.generate(MODEL, "Say hello")
    assert result.model_dump() == baseline.model_dump()
    assert generated.response == TEXT
    chat, generate = spans.all()
    assert chat.name == f"chat {MODEL}" and chat.kind is SpanKind.CLIENT
    expected = {
        ga.GEN_AI_OPERATION_NAME: "chat",
        ga.GEN_AI_PROVIDER_NAME: "ollama",
        ga.GEN_AI_REQUEST_MODEL: MODEL,
        ga.GEN_AI_RESPONSE_MODEL: MODEL,
        ga.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        ga.GEN_AI_REQUEST_TEMPERATURE: 0.1,
        ga.GEN_AI_REQUEST_MAX_TOKENS: 32,
        ga.GEN_AI_REQUEST_STOP_SEQUENCES: ("Q",),
        SERVER_ADDRESS: "127.0.0.1",
        SERVER_PORT: int(fake.base_url.rsplit(":", 1)[1]),
        **USAGE_ATTRIBUTES,
    }
    assert {k: chat.attributes.get(k) for k in expected} == expected
    assert generate.name == f"text_completion {MODEL}"  # positional model and prompt are read too
    assert usage_of(generate) == USAGE_ATTRIBUTES


def test_chat_stream_sync_and_async(fake, spans, tracer_provider):
    def run_sync() -> list[Any]:
        return list(ollama.Client(host=fake.base_url).chat(model=MODEL, messages=MESSAGES, stream=True))

    async def run_async() -> list[Any]:
        stream = await ollama.AsyncClient(host=fake.base_url).generate(model=MODEL, prompt="hi", stream=True)
        return [chunk async for chunk in stream]

    baseline = run_sync()
    with instrumented(OllamaInstrumentor(), tracer_provider):
        chunks = run_sync()
        async_chunks = asyncio.run(run_async())
    assert [c.model_dump() for c in chunks] == [c.model_dump() for c in baseline]
    assert len(chunks) == len(TEXT_PIECES) + 1
    assert "".join(c.response for c in async_chunks) == TEXT
    chat, generate = spans.all()
    for span in (chat, generate):
        assert usage_of(span) == USAGE_ATTRIBUTES
        assert span.attributes[ga.GEN_AI_REQUEST_STREAM] is True
        assert ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes
    assert generate.attributes[ga.GEN_AI_OPERATION_NAME] == "text_completion"


def test_async_chat_and_embed(fake, spans, tracer_provider):
    async def run() -> tuple[Any, Any]:
        c = ollama.AsyncClient(host=fake.base_url)
        return await c.chat(model=MODEL, messages=MESSAGES), await c.embed(model="nomic-embed-text", input=["a", "b"])

    with instrumented(OllamaInstrumentor(), tracer_provider):
        chat_result, embedded = asyncio.run(run())
        ollama.Client(host=fake.base_url).embed(model="nomic-embed-text", input="a")
    assert chat_result.message.content == TEXT and len(embedded.embeddings) == 2
    chat, embed_async, embed_sync = spans.all()
    assert usage_of(chat) == USAGE_ATTRIBUTES
    assert embed_async.name == "embeddings nomic-embed-text"
    assert embed_async.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == 26
    assert ga.GEN_AI_USAGE_OUTPUT_TOKENS not in embed_sync.attributes


@pytest.mark.parametrize("model", ["error-429", "error-500"])
def test_http_errors(fake, spans, tracer_provider, model):
    with instrumented(OllamaInstrumentor(), tracer_provider), pytest.raises(ollama.ResponseError) as raised:
        ollama.Client(host=fake.base_url).chat(model=model, messages=MESSAGES)
    assert raised.value.status_code == int(model[-3:])
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == "ResponseError"


def test_stream_error_and_connection_refused(fake, spans, tracer_provider):
    with instrumented(OllamaInstrumentor(), tracer_provider):
        with pytest.raises(ollama.ResponseError):
            list(ollama.Client(host=fake.base_url).chat(model="error-500", messages=MESSAGES, stream=True))
        with pytest.raises(ConnectionError):
            ollama.Client(host=refused_url()).chat(model=MODEL, messages=MESSAGES)
    streamed, refused = spans.all()
    assert streamed.attributes[ERROR_TYPE] == "ResponseError"
    assert refused.attributes[ERROR_TYPE] == "ConnectionError"
    assert refused.status.status_code is StatusCode.ERROR


def test_uninstrument_restores_exactly(tracer_provider):
    owners, names = (ollama.Client, ollama.AsyncClient), ("chat", "generate", "embed")
    assert_uninstrument_restores(OllamaInstrumentor(), tracer_provider, owners, names)
