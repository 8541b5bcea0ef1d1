"""Time the instrumentation adds to each SDK call, measured against the uninstrumented call in the same run.

The real SDK clients (openai, anthropic, google-genai, ollama) call the fake provider server of
tests/fakes over loopback. The server runs in a child process, so that its work does not compete with
the measured calls for this process's GIL. The instrumented calls have the spanmeter instrumentor of
their library, a real SDK TracerProvider with the tag processor, and a BatchSpanProcessor exporting
to an exporter that only counts spans. That is the whole client-side cost of a deployment, minus the
network send of the batch.

Each case alternates rounds of uninstrumented and instrumented calls, so that drift on these shared,
noisy machines hits both alike. Each call is timed on its own, and the stream cases include reading
the stream to its end. The table gives per-call medians, the time added (instrumented minus
uninstrumented median) and their ratio.

    python bench/instrumentation_overhead.py [--calls 600] [--rounds 6] [--case openai-chat ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import ollama
import openai
from google import genai
from google.genai import types
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from spanmeter_instrumentation import install_tag_processor, tags
from spanmeter_instrumentation.anthropic import AnthropicInstrumentor
from spanmeter_instrumentation.google_genai import GoogleGenAIInstrumentor
from spanmeter_instrumentation.ollama import OllamaInstrumentor
from spanmeter_instrumentation.openai import OpenAIInstrumentor

REPO = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "Say hello"}]
WARMUP = 20
CLOSERS: list[Callable[[], Any]] = []  # what a case opened that must close before its event loop does

SERVER = """
import sys
from tests.fakes.provider_server import provider_server
with provider_server() as server:
    print(server.base_url, flush=True)
    sys.stdin.read()
"""


class CountingExporter(SpanExporter):
    """Takes every batch and keeps nothing but the count: the exporter costs (almost) nothing."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@dataclass
class Case:
    name: str
    instrumentor: Callable[[], Any] | None
    # (base_url, tracer provider or None) -> one call; with a provider, the call is instrumented by the
    # client itself (anthropic's native tracing) rather than by an instrumentor.
    make_call: Callable[[str, TracerProvider | None], Callable[[], Any]]


def openai_client(base: str, _: TracerProvider | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)


def anthropic_client(base: str, provider: TracerProvider | None) -> anthropic.Anthropic:
    """No native spans unless given a provider: then the SDK's own tracing, to that provider."""
    native: Any = {"traces": {"enabled": True}, "tracer_provider": provider} if provider else False
    return anthropic.Anthropic(base_url=base, api_key="k", max_retries=0, open_telemetry=native)


def openai_chat(base: str, provider: TracerProvider | None) -> Callable[[], Any]:
    client = openai_client(base, provider)
    return lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def openai_chat_stream(base: str, provider: TracerProvider | None) -> Callable[[], Any]:
    client = openai_client(base, provider)
    return lambda: list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))


def openai_chat_async(base: str, provider: TracerProvider | None) -> Callable[[], Any]:
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
    loop = asyncio.new_event_loop()
    CLOSERS.append(lambda: (loop.run_until_complete(client.close()), loop.close()))
    return lambda: loop.run_until_complete(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))


def anthropic_create(base: str, provider: TracerProvider | None) -> Callable[[], Any]:
    client = anthropic_client(base, provider)
    return lambda: client.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MESSAGES)


def anthropic_stream(base: str, provider: TracerProvider | None) -> Callable[[], Any]:
    client = anthropic_client(base, provider)

    def call() -> None:
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=16, messages=MESSAGES) as stream:
            stream.until_done()

    return call


def gemini_generate(base: str, _: TracerProvider | None) -> Callable[[], Any]:
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=base))
    return lambda: client.models.generate_content(model="gemini-2.5-flash", contents="Say hello")


def ollama_chat(base: str, _: TracerProvider | None) -> Callable[[], Any]:
    client = ollama.Client(host=base)
    return lambda: client.chat(model="llama3.2", messages=MESSAGES)


def ollama_chat_stream(base: str, _: TracerProvider | None) -> Callable[[], Any]:
    client = ollama.Client(host=base)
    return lambda: list(client.chat(model="llama3.2", messages=MESSAGES, stream=True))


CASES = (
    Case("openai chat", OpenAIInstrumentor, openai_chat),
    Case("openai chat stream", OpenAIInstrumentor, openai_chat_stream),
    Case("openai chat async", OpenAIInstrumentor, openai_chat_async),
    Case("anthropic messages", AnthropicInstrumentor, anthropic_create),
    Case("anthropic stream", AnthropicInstrumentor, anthropic_stream),
    Case("anthropic native tracing", None, anthropic_create),
    Case("gemini generate_content", GoogleGenAIInstrumentor, gemini_generate),
    Case("ollama chat", OllamaInstrumentor, ollama_chat),
    Case("ollama chat stream", OllamaInstrumentor, ollama_chat_stream),
)


@contextmanager
def fake_server() -> Iterator[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


@contextmanager
def instrumented(case: Case, provider: TracerProvider) -> Iterator[None]:
    if case.instrumentor is None:
        yield
        return
    instrumentor = case.instrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def timed(call: Callable[[], Any], count: int) -> list[int]:
    times = []
    with tags(feature="bench", user_id="u-bench"):  # the app's code, instrumented or not
        for _ in range(count):
            start = time.perf_counter_ns()
            call()
            times.append(time.perf_counter_ns() - start)
    return times


def measure(case: Case, base: str, calls: int, rounds: int) -> tuple[list[int], list[int], int]:
    """(uninstrumented call times, instrumented call times, spans exported) in ns."""
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install_tag_processor(provider)
    bare_call = case.make_call(base, None)
    per_round = max(1, calls // rounds)
    bare: list[int] = []
    instrumented_times: list[int] = []
    timed(bare_call, WARMUP)
    for _ in range(rounds):
        bare += timed(bare_call, per_round)
        with instrumented(case, provider):
            # A client made after instrument(), as apps make them; natively traced clients need the provider.
            call = case.make_call(base, provider if case.instrumentor is None else None)
            timed(call, WARMUP)
            instrumented_times += timed(call, per_round)
    provider.force_flush()
    provider.shutdown()
    while CLOSERS:
        CLOSERS.pop()()
    return bare, instrumented_times, exporter.spans - rounds * WARMUP


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600, help="calls per case and mode")
    parser.add_argument("--rounds", type=int, default=6, help="alternations of uninstrumented/instrumented")
    parser.add_argument("--case", action="append", help="run only these cases (by name)")
    args = parser.parse_args(argv)
    cases = [case for case in CASES if not args.case or case.name in args.case]

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; {args.calls} calls per case and mode")
    print(f"openai {openai.__version__}, anthropic {anthropic.__version__}, ollama {_version('ollama')}, ", end="")
    print(f"google-genai {_version('google-genai')}, opentelemetry-sdk {_version('opentelemetry-sdk')}")
    header = f"{'case':<26} {'bare µs':>9} {'instr. µs':>10} {'added µs':>9} {'ratio':>6} {'spans':>6}"
    print(header)
    print("-" * len(header))
    with fake_server() as base:
        for case in cases:
            bare, instr, spans = measure(case, base, args.calls, args.rounds)
            bare_median, instr_median = statistics.median(bare) / 1e3, statistics.median(instr) / 1e3
            print(
                f"{case.name:<26} {bare_median:>9.0f} {instr_median:>10.0f} {instr_median - bare_median:>9.0f} "
                f"{instr_median / bare_median:>6.2f} {spans:>6}"
            )
            if spans != len(instr):
                raise SystemExit(f"{case.name}: {spans} spans exported for {len(instr)} instrumented calls")


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


if __name__ == "__main__":
    main()
