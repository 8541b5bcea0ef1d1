"""One app, instrumented by the library named on the command line, making the same LLM calls against
the fake provider server and exporting its spans over OTLP/HTTP to a spanmeter collector.

    python python_app.py LIBRARY CALLS...   (env: FAKE_PROVIDER_URL, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)

Runs in the interpreter that has LIBRARY installed (the conventions venv, or the project's own for
`spanmeter`); it imports nothing from the collector. Each library sets up tracing its own documented way.
"""

from __future__ import annotations

import os
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


def instrument(library: str, provider: TracerProvider) -> None:
    if library == "spanmeter":
        from spanmeter_instrumentation import install_tag_processor
        from spanmeter_instrumentation.anthropic import AnthropicInstrumentor
        from spanmeter_instrumentation.google_genai import GoogleGenAIInstrumentor
        from spanmeter_instrumentation.openai import OpenAIInstrumentor

        install_tag_processor(provider)
        for instrumentor in (OpenAIInstrumentor(), AnthropicInstrumentor(), GoogleGenAIInstrumentor()):
            instrumentor.instrument(tracer_provider=provider)
    elif library == "openllmetry":
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
        AnthropicInstrumentor().instrument(tracer_provider=provider)
    elif library == "openinference":
        from openinference.instrumentation.anthropic import AnthropicInstrumentor
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
        AnthropicInstrumentor().instrument(tracer_provider=provider)
    elif library == "otel_contrib_openai":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif library == "otel_contrib":
        from opentelemetry.instrumentation.google_genai import GoogleGenAiSdkInstrumentor

        GoogleGenAiSdkInstrumentor().instrument(tracer_provider=provider)
    elif library == "openlit":
        import openlit

        # openlit configures tracing from the global provider and OTEL_* variables.
        openlit.init(disable_metrics=True, disable_batch=True, capture_message_content=False)
    elif library == "logfire":
        import logfire

        logfire.configure(send_to_logfire=False, console=False, service_name="logfire")
        logfire.instrument_openai()
        logfire.instrument_anthropic()
    elif library == "pydantic_ai":
        from pydantic_ai import Agent

        Agent.instrument_all(True)
    elif library == "langsmith":
        os.environ.update(LANGSMITH_OTEL_ENABLED="true", LANGSMITH_TRACING="true", LANGSMITH_OTEL_ONLY="true")
        os.environ.setdefault("LANGSMITH_API_KEY", "unused")
    else:
        raise SystemExit(f"unknown library {library!r}")


def call(library: str, name: str, base: str) -> None:
    if name == "openai_chat" and library == "pydantic_ai":
        from pydantic_ai import Agent
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=f"{base}/v1", api_key="k"))
        Agent(model).run_sync("hi")
    elif name == "openai_chat":
        import openai

        client = openai.OpenAI(base_url=f"{base}/v1", api_key="k")
        if library == "langsmith":
            from langsmith.wrappers import wrap_openai

            client = wrap_openai(client)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    elif name == "openai_embeddings":
        import openai

        client = openai.OpenAI(base_url=f"{base}/v1", api_key="k")
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    elif name == "anthropic_messages":
        import anthropic

        client = anthropic.Anthropic(base_url=base, api_key="k")
        if library == "langsmith":
            from langsmith.wrappers import wrap_anthropic

            client = wrap_anthropic(client)
        client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    elif name == "gemini_generate":
        from google import genai

        client = genai.Client(api_key="k", http_options={"base_url": base})
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    else:
        raise SystemExit(f"unknown call {name!r}")


def main() -> None:
    library, calls = sys.argv[1], sys.argv[2:]
    base = os.environ["FAKE_PROVIDER_URL"].rstrip("/")
    provider = TracerProvider(resource=Resource.create({"service.name": library}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    instrument(library, provider)
    for name in calls:
        call(library, name, base)
    if library == "langsmith":
        from langsmith.run_trees import get_cached_client

        get_cached_client().flush()  # LangSmith turns runs into spans on a background thread
    provider.shutdown()


if __name__ == "__main__":
    main()
