"""`spanmeter demo`: a collector on the embedded store, a realistic day of GenAI traffic sent to
it through the real OpenTelemetry SDK and OTLP exporter, and the resulting spend report.

The traffic: three services, four providers, cached and reasoning tokens, features, users and
sessions, a few failed calls, one model nobody has a price for (stored as `unpriced`), and waste for the
findings to point out (printed last, the three largest savings first).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..config import Config
from ..findings.api import pricing_config
from ..findings.model import Period
from ..findings.runner import run_findings
from ..report import ReportRequest, run_report
from ..service import Collector, CollectorThread
from ..store import StoreError, connect, database_exists
from .common import (
    CommandError,
    add_config_argument,
    default_config,
    fail,
    load_or_exit,
    own_command,
    positive_int,
    setup_logging,
    store_config,
)
from .findings import render as render_findings
from .report import render

DEMO_MARKER = "spanmeter-demo"
DEFAULT_DATA = "./.spanmeter-demo"

__all__ = ["DEMO_MARKER", "CallOrigin", "DemoCall", "demo_calls", "register", "run", "send_calls"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "demo", help="send a day of sample GenAI traffic and print its report", description=__doc__
    )
    add_config_argument(parser)
    parser.add_argument("--data", default=DEFAULT_DATA, help=f"embedded store directory (default: {DEFAULT_DATA})")
    parser.add_argument("--calls", type=positive_int, default=2000, help="LLM calls to simulate (default: 2000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed, for the same traffic every run")
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class CallOrigin:
    """Who made a call, with what: the dimensions the demo's reports group by."""

    service: str
    feature: str
    user: str
    session: str
    provider: str
    model: str
    operation: str


@dataclass(frozen=True)
class DemoCall(CallOrigin):
    start: datetime
    duration_ms: int
    input_tokens: int
    output_tokens: int
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    error: str = ""
    prompt_prefix: str = ""
    """Names the call's prompt prefix; sent as its salted hash, as the instrumentation does."""


# (service, feature, provider, model, operation, weight)
_MIX = (
    ("support-bot", "chat", "openai", "gpt-4o-2024-08-06", "chat", 30),
    ("support-bot", "chat", "openai", "gpt-4o-mini", "chat", 25),
    ("support-bot", "search", "openai", "text-embedding-3-small", "embeddings", 15),
    ("doc-pipeline", "summarize", "anthropic", "claude-sonnet-4-5", "chat", 15),
    ("doc-pipeline", "extract", "anthropic", "claude-haiku-4-5", "chat", 8),
    ("research-agent", "agent", "openai", "o3-mini", "chat", 4),
    ("research-agent", "agent", "gcp.gemini", "gemini-2.5-flash", "generate_content", 6),
    ("research-agent", "agent", "acme", "acme-llm-7b", "chat", 2),
    # Waste the findings point out: a classifier on a large model (right-size), the same long contract template
    # sent without prompt caching (cache unused), and FAQ answers asked again within minutes (repeated calls).
    ("support-bot", "ticket-router", "openai", "gpt-4o-2024-08-06", "chat", 12),
    ("doc-pipeline", "contract-review", "anthropic", "claude-sonnet-4-5", "chat", 6),
    ("support-bot", "faq", "openai", "gpt-4o-2024-08-06", "chat", 8),
)
FAQ_BURSTS = 12
"""FAQ calls come in this many bursts a day, a couple of minutes each: the same questions, asked again."""


def demo_calls(count: int, seed: int, now: datetime | None = None) -> list[DemoCall]:
    """A deterministic day of calls, busier in working hours, ending now."""
    rng = random.Random(seed)
    end = now or datetime.now(UTC)
    weights = [m[-1] for m in _MIX]
    users = [f"u-{i:03d}" for i in range(1, 41)]
    calls = []
    for _ in range(count):
        service, feature, provider, model, operation, _w = rng.choices(_MIX, weights)[0]
        day_start = end - timedelta(days=1) + timedelta(minutes=5)  # inside "the last 24h" for a while
        busy = [4 if 7 <= (day_start + timedelta(hours=h)).hour <= 19 else 1 for h in range(24)]
        start = day_start + timedelta(hours=rng.choices(range(24), busy)[0], seconds=rng.randrange(3600))
        if feature == "faq":
            start = day_start + timedelta(hours=2 * rng.randrange(FAQ_BURSTS), seconds=rng.randrange(120))
        start = min(start, end - timedelta(seconds=5))
        user = "u-007" if rng.random() < 0.15 else rng.choice(users)  # one heavy user
        session = f"s-{user}-{rng.randrange(4)}"
        who = CallOrigin(service, feature, user, session, provider, model, operation)
        calls.append(_call(rng, start, who))
    return calls


def _call(rng: random.Random, start: datetime, who: CallOrigin) -> DemoCall:
    provider, model = who.provider, who.model
    if who.operation == "embeddings":
        return DemoCall(
            **vars(who),
            start=start,
            duration_ms=rng.randint(40, 200),
            input_tokens=rng.randint(50, 800),
            output_tokens=0,
        )
    prompt = rng.randint(300, 6000)
    output = rng.randint(40, 900)
    cache_read = cache_write = reasoning = 0
    prefix = ""
    if who.feature == "ticket-router":  # a label out of a short ticket
        prompt, output = rng.randint(80, 400), rng.randint(1, 8)
    elif who.feature == "contract-review":  # one of three long templates, never cached
        template = rng.randrange(3)
        prompt, prefix = 4000 + 500 * template + rng.randint(0, 300), f"contract-template-{template}"
    elif who.feature == "faq":  # one of five questions, the same tokens each time
        question = rng.randrange(5)
        prompt, output, prefix = 600 + 40 * question, 120 + 10 * question, f"faq-{question}"
    elif provider == "anthropic":
        # Long shared system prompts: mostly read from cache, sometimes written.
        cache_read = int(prompt * 0.7) if rng.random() < 0.8 else 0
        cache_write = int(prompt * 0.2) if cache_read == 0 else 0
    elif model.startswith("gpt-4o"):
        cache_read = (prompt // 1024) * 512 if rng.random() < 0.4 else 0
    if model in ("o3-mini", "gemini-2.5-flash"):
        reasoning = rng.randint(100, 2000)
        output += reasoning
    error = "RateLimitError" if rng.random() < 0.02 else ""
    if error:
        prompt = output = cache_read = cache_write = reasoning = 0
    elif who.feature == "summarize" and rng.random() < 0.08:
        error = "APITimeoutError"  # after the tokens were generated, and billed
    return DemoCall(
        **vars(who),
        start=start,
        duration_ms=rng.randint(300, 9000),
        input_tokens=prompt,
        output_tokens=output,
        cache_read=cache_read,
        cache_write=cache_write,
        reasoning=reasoning,
        error=error,
        prompt_prefix=prefix,
    )


def send_calls(calls: list[DemoCall], grpc_endpoint: str) -> None:
    """Emit each call as a GenAI CLIENT span under an HTTP server span, one TracerProvider per service,
    through the OTLP/gRPC exporter: exactly what an instrumented app would send."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

    providers: dict[str, TracerProvider] = {}
    for call in calls:
        provider = providers.get(call.service)
        if provider is None:
            resource = Resource.create({"service.name": call.service, "deployment.environment.name": "production"})
            provider = TracerProvider(resource=resource)
            exporter = OTLPSpanExporter(endpoint=grpc_endpoint, insecure=True)
            queue = 2 * len(calls) + 1  # every span queued: none dropped however fast the loop runs
            batch = min(512, queue)  # the SDK refuses a batch larger than its queue
            provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue, max_export_batch_size=batch))
            providers[call.service] = provider
        tracer = provider.get_tracer("spanmeter.demo")
        start_ns = int(call.start.timestamp() * 1e9)
        end_ns = start_ns + call.duration_ms * 1_000_000
        parent = tracer.start_span(f"POST /api/{call.feature}", kind=SpanKind.SERVER, start_time=start_ns)
        span = tracer.start_span(
            f"{call.operation} {call.model}",
            context=set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            start_time=start_ns + 1_000_000,
            attributes=_attributes(call),
        )
        if call.error:
            span.set_status(Status(StatusCode.ERROR, "rate limited"))
        span.end(end_time=end_ns - 1_000_000)
        parent.end(end_time=end_ns)
    for provider in providers.values():
        provider.shutdown()


def _attributes(call: DemoCall) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": call.operation,
        "gen_ai.provider.name": call.provider,
        "gen_ai.request.model": call.model,
        "user.id": call.user,
        "session.id": call.session,
        "spanmeter.tag.feature": call.feature,
        "spanmeter.tag.team": "growth" if call.service == "support-bot" else "platform",
    }
    if call.prompt_prefix:
        prefix = hashlib.sha256(f"spanmeter-demo-salt:{call.prompt_prefix}".encode()).hexdigest()
        attributes["spanmeter.prompt.prefix_hash"] = prefix
    if call.error:
        attributes["error.type"] = call.error
    if call.error and not call.input_tokens:
        return attributes
    attributes.update(
        {
            "gen_ai.response.model": call.model,
            "gen_ai.usage.input_tokens": call.input_tokens,
            "gen_ai.usage.output_tokens": call.output_tokens,
        }
    )
    if call.operation != "embeddings":
        attributes["gen_ai.response.finish_reasons"] = ["stop"]
    for key, value in (
        ("gen_ai.usage.cache_read.input_tokens", call.cache_read),
        ("gen_ai.usage.cache_creation.input_tokens", call.cache_write),
        ("gen_ai.usage.reasoning.output_tokens", call.reasoning),
    ):
        if value:
            attributes[key] = value
    return attributes


def _demo_config(config: Config, data: str) -> Config:
    """The given pipeline, on a store of its own and on ports the OS picks (a running collector is left alone)."""
    exporters = {
        cid: body.model_copy(
            update={"endpoint": f"chdb://{data}", "queue": body.queue.model_copy(update={"directory": f"{data}-wal"})}
        )
        if cid.startswith("clickhouse")
        else body
        for cid, body in config.exporters.items()
    }
    receivers = {}
    for rid, body in config.receivers.items():
        protocols = body.protocols.model_copy(
            update={
                name: proto.model_copy(update={"endpoint": "127.0.0.1:0"})
                for name in ("grpc", "http")
                if (proto := getattr(body.protocols, name)) is not None
            }
        )
        receivers[rid] = body.model_copy(update={"protocols": protocols})
    return config.model_copy(update={"exporters": exporters, "receivers": receivers})


def _wait_stored(collector: Collector, expected: int, timeout: float = 300.0) -> int:
    """Until every call is stored (a busy machine reads slowly), so the report shows them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if collector.exporter.stored_rows >= expected:
            break
        time.sleep(0.1)
    return collector.exporter.stored_rows


def _fresh_store(data: str, database: str) -> bool:
    """Empty the demo's database, so each run's report shows exactly what that run sent (re-runs would
    add up otherwise); True when there was data to drop. Only a store the demo made, and marked, is
    emptied (the default directory is the demo's by name): `--data` pointed at a real store is refused."""
    marker = Path(data) / DEMO_MARKER
    client = connect(f"chdb://{data}")
    try:
        parameters = {"database": database}
        exists = database_exists(client, database)
        if exists and not marker.exists() and os.path.abspath(data) != os.path.abspath(DEFAULT_DATA):
            raise CommandError(
                f"{data} holds a spanmeter store the demo did not create, and the demo empties its store at "
                "each run: give it a directory of its own with --data (or remove that directory)"
            )
        if exists:
            client.command("DROP DATABASE {database:Identifier} SYNC", parameters=parameters)
        marker.write_text("a store of `spanmeter demo`, emptied at each run\n", encoding="utf-8")
        return exists
    finally:
        client.close()


def run(args: argparse.Namespace) -> int:
    config = _demo_config(load_or_exit(args.config), args.data)
    setup_logging("warning")
    calls = demo_calls(args.calls, args.seed)
    database = store_config(config).database
    try:
        emptied = _fresh_store(args.data, database)
        thread = CollectorThread(config)
        collector = thread.start()
    except (StoreError, OSError) as exc:
        return fail(f"cannot start the demo collector: {exc}")
    fresh = "the previous run's data dropped: each run starts empty" if emptied else "new"
    try:
        print(
            f"spanmeter demo: collector on 127.0.0.1:{collector.grpc_port} (gRPC), store {args.data} ({fresh})",
            file=sys.stderr,
        )
        print(
            f"sending {len(calls)} LLM calls from 3 services through the OTel SDK's OTLP exporter...", file=sys.stderr
        )
        send_calls(calls, f"127.0.0.1:{collector.grpc_port}")
        stored = _wait_stored(collector, len(calls))
        print(f"stored {stored} GenAI spans in ClickHouse (embedded)\n", file=sys.stderr)
        window = ReportRequest.since("model", "24h", now=datetime.now(UTC) + timedelta(seconds=1))
        client = connect(f"chdb://{args.data}")
        for by in ("model", "feature", "user"):
            request = ReportRequest(by, window.start, window.end)
            rows = run_report(client, database, request)
            sys.stdout.write(render(rows, "table", request, limit=5 if by == "user" else 0) + "\n")
        period = Period(window.start, window.end)
        found = run_findings(client, database, period, config.findings, pricing_config(config))
        sys.stdout.write(render_findings(found[:3], "table", period))
    finally:
        thread.stop()
    print(f"Next: {_report_hint(args)}", file=sys.stderr)
    return 0


def _report_hint(args: argparse.Namespace) -> str:
    """A `report` command on the demo's store that runs as printed: this spanmeter, this config."""
    words = [own_command(), "report"]
    if args.config != default_config():
        words += ["--config", shlex.quote(args.config)]
    words += ["--store", shlex.quote(f"chdb://{args.data}"), "--by tag:team --since 24h --format json"]
    return " ".join(words)
