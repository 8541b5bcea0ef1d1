"""An app for the collector end-to-end test: one call per ``feature`` tag, each provider's SDK
plain, streaming and async, against the fake provider server. No OpenTelemetry code of its own:
``opentelemetry-instrument`` and this distribution's entry points do everything.

Environment: ``FAKE_PROVIDER_URL`` (the fake server) and ``APP_USER`` (the ``user_id`` tag).
"""

import asyncio
import os
from collections.abc import Callable

import anthropic
import ollama
import openai
from google import genai
from google.genai import types

import spanmeter_instrumentation

BASE = os.environ["FAKE_PROVIDER_URL"]
MESSAGES = [{"role": "user", "content": "Say hello"}]


def call(feature: str, run: Callable[[], object]) -> None:
    with spanmeter_instrumentation.tags(feature=feature):
        run()


async def async_calls() -> None:
    with spanmeter_instrumentation.tags(feature="openai-embeddings-async"):
        client = openai.AsyncOpenAI(base_url=BASE + "/v1", api_key="k", max_retries=0)
        await client.embeddings.create(model="text-embedding-3-small", input="hello")
    with spanmeter_instrumentation.tags(feature="ollama-chat-async"):
        await ollama.AsyncClient(host=BASE).chat(model="llama3.2", messages=MESSAGES)


def main() -> None:
    oa = openai.OpenAI(base_url=BASE + "/v1", api_key="k", max_retries=0)
    claude = anthropic.Anthropic(base_url=BASE, api_key="k", max_retries=0)
    gemini = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=BASE))
    local = ollama.Client(host=BASE)

    def anthropic_stream() -> None:
        with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=16, messages=MESSAGES) as stream:
            stream.until_done()

    # The outer scope's tags reach every call; each call adds its own feature (nested scopes merge).
    with spanmeter_instrumentation.tags(user_id=os.environ["APP_USER"], session_id="s-e2e", team="e2e"):
        call("openai-chat", lambda: oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))
        # No stream_options: the instrumentation asks for usage on the caller's behalf.
        call(
            "openai-chat-stream",
            lambda: list(oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)),
        )
        call("openai-responses", lambda: oa.responses.create(model="gpt-4o-mini", input="Say hello"))
        call("anthropic", lambda: claude.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MESSAGES))
        call("anthropic-stream", anthropic_stream)
        call("gemini", lambda: gemini.models.generate_content(model="gemini-2.5-flash", contents="Say hello"))
        call(
            "gemini-stream",
            lambda: list(gemini.models.generate_content_stream(model="gemini-2.5-flash", contents="Say hello")),
        )
        call("ollama-chat", lambda: local.chat(model="llama3.2", messages=MESSAGES))
        call("ollama-generate-stream", lambda: list(local.generate(model="llama3.2", prompt="Say hello", stream=True)))
        asyncio.run(async_calls())


main()
