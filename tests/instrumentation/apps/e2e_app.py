"""A small app for the opentelemetry-instrument end-to-end test: no OpenTelemetry code of its own."""

import asyncio
import os
import sys

import anthropic
import ollama
import openai
from google import genai
from google.genai import types

import spanmeter_instrumentation

BASE = os.environ["FAKE_PROVIDER_URL"]
MESSAGES = [{"role": "user", "content": "Say hello"}]


@spanmeter_instrumentation.tags(feature="e2e-async")
async def async_call() -> None:
    client = openai.AsyncOpenAI(base_url=BASE + "/v1", api_key="k", max_retries=0)
    await client.embeddings.create(model="text-embedding-3-small", input="hello")


def main() -> None:
    with spanmeter_instrumentation.tags(feature="e2e", user_id="u-e2e", session_id="s-e2e"):
        oa = openai.OpenAI(base_url=BASE + "/v1", api_key="k", max_retries=0)
        chunks = list(oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        claude = anthropic.Anthropic(base_url=BASE, api_key="k", max_retries=0)
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MESSAGES)
        gemini = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=BASE))
        gemini.models.generate_content(model="gemini-2.5-flash", contents="Say hello")
        ollama.Client(host=BASE).chat(model="llama3.2", messages=MESSAGES)
    asyncio.run(async_call())
    # The caller sees the stream it asked for: no extra usage chunk.
    print("chunks", len(chunks), "usage_chunks", sum(1 for c in chunks if not c.choices), file=sys.stderr)


main()
