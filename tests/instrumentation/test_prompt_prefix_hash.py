"""The prompt prefix hash: off with content capture off unless SPANMETER_PROMPT_PREFIX_HASH enables it; salted
per deployment; over the system instructions and every message but the last."""

from __future__ import annotations

import hashlib
import hmac
import json

import anthropic
import openai
import pytest

from spanmeter_instrumentation.anthropic import AnthropicInstrumentor
from spanmeter_instrumentation.openai import OpenAIInstrumentor

from .conftest import instrumented

HASH = "spanmeter.prompt.prefix_hash"
SYSTEM = {"role": "system", "content": "Classify the ticket."}


def ask(fake, question: str, system: dict[str, str] = SYSTEM) -> None:
    client = openai.OpenAI(base_url=fake.url("openai"), api_key="k", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[system, {"role": "user", "content": question}])


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    for name in ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPANMETER_PROMPT_PREFIX_HASH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPANMETER_PROMPT_PREFIX_SALT", "salt-1")


def test_off_by_default_and_when_disabled_with_capture_on(fake, spans, tracer_provider, monkeypatch):
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        ask(fake, "printer broken")
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
        monkeypatch.setenv("SPANMETER_PROMPT_PREFIX_HASH", "false")
        ask(fake, "printer broken")
    assert all(HASH not in span.attributes for span in spans.all())


def test_on_with_capture_or_on_its_own_without_content(fake, spans, tracer_provider, monkeypatch):
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        monkeypatch.setenv("SPANMETER_PROMPT_PREFIX_HASH", "true")
        ask(fake, "printer broken")
        ask(fake, "cannot log in")  # the same prefix: only the last message differs
        ask(fake, "printer broken", {"role": "system", "content": "Summarize the ticket."})
        monkeypatch.setenv("SPANMETER_PROMPT_PREFIX_SALT", "salt-2")
        ask(fake, "printer broken")
        monkeypatch.delenv("SPANMETER_PROMPT_PREFIX_HASH")
        monkeypatch.setenv("SPANMETER_PROMPT_PREFIX_SALT", "salt-1")
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
        ask(fake, "anything")
    first, same, other_system, other_salt, with_capture = (span.attributes for span in spans.all())
    assert first[HASH] == same[HASH] == with_capture[HASH]
    assert len({first[HASH], other_system[HASH], other_salt[HASH]}) == 3
    assert "gen_ai.input.messages" not in first and "gen_ai.input.messages" in with_capture
    # An HMAC-SHA256 of the prefix in the conventions' message format, keyed by the salt, 128 bits in hex.
    prefix = {"system": [], "messages": [{"role": "system", "parts": [{"type": "text", "content": SYSTEM["content"]}]}]}
    text = json.dumps(prefix, ensure_ascii=False, separators=(",", ":"))
    assert first[HASH] == hmac.new(b"salt-1", text.encode(), hashlib.sha256).hexdigest()[:32]


def test_anthropic_system_prompt_is_the_prefix(fake, spans, tracer_provider, monkeypatch):
    monkeypatch.setenv("SPANMETER_PROMPT_PREFIX_HASH", "true")
    claude = anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0, open_telemetry=False)
    with instrumented(AnthropicInstrumentor(), tracer_provider):
        for question in ("printer broken", "cannot log in"):
            claude.messages.create(
                model="claude-haiku-4-5",
                max_tokens=5,
                system="Classify.",
                messages=[{"role": "user", "content": question}],
            )
    first, second = (span.attributes[HASH] for span in spans.all())
    assert first == second
