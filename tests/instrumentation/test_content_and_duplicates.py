"""Content capture (off by default, util-genai's values) and one span per call."""

from __future__ import annotations

import json
import logging

import anthropic
import openai
import pytest
import wrapt
from google import genai
from google.genai import types
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

from spanmeter_instrumentation.anthropic import AnthropicInstrumentor
from spanmeter_instrumentation.google_genai import GoogleGenAIInstrumentor
from spanmeter_instrumentation.ollama import OllamaInstrumentor
from spanmeter_instrumentation.openai import OpenAIInstrumentor
from tests.fakes.provider_server import TEXT

from .conftest import instrumented

CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
ASSISTANT_OUTPUT = [{"role": "assistant", "parts": [{"type": "text", "content": TEXT}], "finish_reason": "stop"}]


def openai_client(fake):
    return openai.OpenAI(base_url=fake.url("openai"), api_key="k", max_retries=0)


@pytest.mark.parametrize("value", ["SPAN_ONLY", "span_and_event", "true"])
def test_openai_content_on_span_plain_and_stream(fake, spans, tracer_provider, monkeypatch, value):
    monkeypatch.setenv(CAPTURE, value)
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        openai_client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        list(openai_client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    for span in spans.all():
        assert json.loads(span.attributes[ga.GEN_AI_INPUT_MESSAGES]) == [
            {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
            {"role": "user", "parts": [{"type": "text", "content": "Say hello"}]},
        ]
        assert json.loads(span.attributes[ga.GEN_AI_OUTPUT_MESSAGES]) == ASSISTANT_OUTPUT


@pytest.mark.parametrize("value", ["", "NO_CONTENT", "EVENT_ONLY", "false"])
def test_no_content_on_span_otherwise(fake, spans, tracer_provider, monkeypatch, value):
    monkeypatch.setenv(CAPTURE, value)
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        openai_client(fake).responses.create(model="gpt-4.1", input="secret prompt", instructions="secret")
    attributes = spans.one().attributes
    assert not {ga.GEN_AI_INPUT_MESSAGES, ga.GEN_AI_OUTPUT_MESSAGES, ga.GEN_AI_SYSTEM_INSTRUCTIONS} & set(attributes)
    assert "secret" not in json.dumps(dict(attributes))


def test_system_instructions_for_providers_that_send_them_apart(fake, spans, tracer_provider, monkeypatch):
    monkeypatch.setenv(CAPTURE, "SPAN_ONLY")
    claude = anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0, open_telemetry=False)
    gemini = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=fake.base_url))
    with (
        instrumented(AnthropicInstrumentor(), tracer_provider),
        instrumented(GoogleGenAIInstrumentor(), tracer_provider),
        instrumented(OpenAIInstrumentor(), tracer_provider),
    ):
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=9, system="Be brief.", messages=MESSAGES[1:])
        gemini.models.generate_content(
            model="gemini-2.5-flash",
            contents="Say hello",
            config=types.GenerateContentConfig(system_instruction="Be brief."),
        )
        openai_client(fake).responses.create(model="gpt-4.1", input="Say hello", instructions="Be brief.")
    claude_span, gemini_span, responses_span = spans.all()
    for span in (claude_span, gemini_span, responses_span):
        assert json.loads(span.attributes[ga.GEN_AI_SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief."}]
        assert json.loads(span.attributes[ga.GEN_AI_INPUT_MESSAGES]) == [
            {"role": "user", "parts": [{"type": "text", "content": "Say hello"}]}
        ]
        output = json.loads(span.attributes[ga.GEN_AI_OUTPUT_MESSAGES])
        assert output[0]["parts"] == [{"type": "text", "content": TEXT}]
    assert json.loads(claude_span.attributes[ga.GEN_AI_OUTPUT_MESSAGES])[0]["finish_reason"] == "end_turn"


def test_streamed_content_is_joined(fake, spans, tracer_provider, monkeypatch):
    import ollama

    monkeypatch.setenv(CAPTURE, "SPAN_ONLY")
    with instrumented(OllamaInstrumentor(), tracer_provider):
        list(ollama.Client(host=fake.base_url).chat(model="llama3.2", messages=MESSAGES[1:], stream=True))
    assert json.loads(spans.one().attributes[ga.GEN_AI_OUTPUT_MESSAGES]) == ASSISTANT_OUTPUT


def test_skips_a_method_another_instrumentation_already_wrapped(fake, spans, tracer_provider, caplog):
    from openai.resources.embeddings import Embeddings

    original = Embeddings.__dict__["create"]
    Embeddings.create = wrapt.FunctionWrapper(
        original, lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs)
    )
    try:
        with caplog.at_level(logging.WARNING), instrumented(OpenAIInstrumentor(), tracer_provider):
            openai_client(fake).embeddings.create(model="text-embedding-3-small", input="a")
            openai_client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        Embeddings.create = original
    assert [s.name for s in spans.all()] == ["chat gpt-4o-mini"]
    assert "Embeddings.create is already wrapped by another instrumentation" in caplog.text


def test_skips_a_call_inside_another_instrumentations_model_span(fake, spans, tracer_provider, caplog):
    tracer = tracer_provider.get_tracer("other.genai.instrumentation")
    with caplog.at_level(logging.WARNING), instrumented(OpenAIInstrumentor(), tracer_provider):
        attributes = {ga.GEN_AI_OPERATION_NAME: "chat", ga.GEN_AI_REQUEST_MODEL: "gpt-4o-mini"}
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=trace_kind_client(), attributes=attributes):
            openai_client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [s.instrumentation_scope.name for s in spans.all()] == ["other.genai.instrumentation"]
    assert "skipping ours so each call has one span" in caplog.text


def trace_kind_client():
    from opentelemetry.trace import SpanKind

    return SpanKind.CLIENT
