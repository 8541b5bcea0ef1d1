"""Mixed traffic: an app's whole OTLP stream, 5 % GenAI spans among ordinary HTTP and DB spans, beside the parse
ceiling and a minimal gRPC server measured in the same run.

Requests of 512 spans (the SDK's default), encoded by the SDK's OTLP encoder (one resource, spans grouped by
instrumentation scope: Flask, SQLAlchemy, the contrib OpenAI instrumentation), are sent already encoded over raw
gRPC channels from 4 sender threads to:

- `spanmeter serve` (the shipped pipelines.yaml, its own embedded store): every span processed, the GenAI ones
  stored (it waits for `/metrics` to say so);
- a minimal `grpc.aio` server in a child process that only parses each request and acknowledges it: the most a
  Python gRPC receiver does;

and times protobuf (upb) parsing the same bodies in this process: the ceiling. Medians over rounds, and ratios.

    python bench/mixed.py [--spans 102400] [--batch 512] [--senders 4] [--rounds 3] [--genai 0.05] [--baseline REV]

With `--baseline REV` the collector of that git revision (a worktree) runs beside this one, round by round.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import MODELS, THROUGHPUT, Collector, Versions, decode_ceiling, minimal_rate, send_raw
from minimal_server import MinimalServer

ROUTES = ("/api/items/{id}", "/api/cart", "/api/users/{id}/orders", "/healthz")
QUERIES = (
    "SELECT id, name, price FROM items WHERE id = $1 AND tenant_id = $2",
    "UPDATE carts SET updated_at = now() WHERE user_id = $1",
    "SELECT o.id, o.total FROM orders o WHERE o.user_id = $1 ORDER BY o.created_at DESC LIMIT 20",
)


def make_bodies(count: int, batch: int, genai_share: float, seed: int) -> tuple[list[bytes], int]:
    """Encoded requests of `batch` spans, `genai_share` of them GenAI calls; and how many GenAI spans in all.
    Ordinary spans carry what the HTTP and DB instrumentations write (stable semantic conventions)."""
    rnd = random.Random(seed)
    bodies: list[bytes] = []
    genai = 0
    for first in range(0, count, batch):
        memory = InMemorySpanExporter()
        provider = TracerProvider(
            resource=Resource.create({"service.name": "shop", "deployment.environment.name": "prod"})
        )
        provider.add_span_processor(SimpleSpanProcessor(memory))
        http = provider.get_tracer("opentelemetry.instrumentation.flask", "0.52b0")
        db = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", "0.52b0")
        ai = provider.get_tracer("opentelemetry.instrumentation.openai_v2", "2.1b0")
        for index in range(first, min(first + batch, count)):
            draw = rnd.random()
            if draw < genai_share:
                genai += 1
                system, model = MODELS[index % len(MODELS)]
                ai.start_span(
                    f"chat {model}",
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": system,
                        "gen_ai.request.model": model,
                        "gen_ai.response.model": model,
                        "gen_ai.response.id": f"resp-{seed}-{index}",
                        "gen_ai.response.finish_reasons": ["stop"],
                        "gen_ai.usage.input_tokens": 1200 + index % 97,
                        "gen_ai.usage.output_tokens": 300 + index % 13,
                        "server.address": "api.example.com",
                        "server.port": 443,
                    },
                ).end()
            elif draw < 0.5:
                route = ROUTES[index % len(ROUTES)]
                http.start_span(
                    f"GET {route}",
                    attributes={
                        "http.request.method": "GET",
                        "url.full": f"https://shop.example.com{route.replace('{id}', str(index))}?ref=home",
                        "url.scheme": "https",
                        "http.route": route,
                        "http.response.status_code": 200,
                        "server.address": "shop.example.com",
                        "server.port": 443,
                        "client.address": f"10.0.{index % 256}.17",
                        "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
                        "network.protocol.version": "1.1",
                    },
                ).end()
            else:
                query = QUERIES[index % len(QUERIES)]
                db.start_span(
                    query.split(" ", 1)[0],
                    attributes={
                        "db.system.name": "postgresql",
                        "db.system": "postgresql",
                        "db.namespace": "shop",
                        "db.operation.name": query.split(" ", 1)[0],
                        "db.statement": query,
                        "db.query.text": query,
                        "server.address": "db.internal",
                        "server.port": 5432,
                    },
                ).end()
        provider.shutdown()
        bodies.append(encode_spans(memory.get_finished_spans()).SerializeToString())
    return bodies, genai


def to_collector(
    collector: Collector, bodies: list[bytes], spans: int, genai: int, senders: int
) -> tuple[float, float]:
    """(spans/s until every request is answered, i.e. every span processed and the GenAI ones durable in the
    WAL; spans/s until the GenAI ones are in the store too, which adds up to `batch.max_age` of waiting)."""
    before = collector.stored()
    started = time.perf_counter()
    send_raw(collector.grpc_port, bodies, senders)
    acknowledged = time.perf_counter() - started
    collector.wait_stored(before + genai)
    return spans / acknowledged, spans / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=102_400)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--genai", type=float, default=0.05, help="share of GenAI spans (default 0.05)")
    parser.add_argument("--baseline", metavar="REV", help="also run the collector of this git revision")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="spanmeter-mixed-"))
    versions = Versions(workdir, args.baseline, common=THROUGHPUT)
    minimal = MinimalServer()
    results: dict[str, list[float]] = {}
    try:
        collectors = versions.start()
        for round_index in range(args.rounds):
            rates: dict[str, float] = {}
            order = list(collectors.items())  # alternating: the first to run after the setup pays for cold memory
            for label, collector in order[::-1] if round_index % 2 else order:
                # New GenAI calls every time: the collector recognises a call sent twice and stores it once.
                bodies, genai = make_bodies(args.spans, args.batch, args.genai, seed=round_index * 100 + len(rates))
                rates[label], rates[f"{label} stored"] = to_collector(
                    collector, bodies, args.spans, genai, args.senders
                )
            rates["minimal"] = minimal_rate(minimal, bodies, args.spans, args.senders)
            rates["parse"] = decode_ceiling(bodies, args.spans)
            for name, rate in rates.items():
                results.setdefault(name, []).append(rate)
            shown = ", ".join(f"{name} {rate:,.0f}" for name, rate in rates.items())
            print(f"round {round_index + 1} ({genai} GenAI spans): {shown} spans/s", file=sys.stderr)
    finally:
        versions.stop()
        minimal.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in results.items()}
    print(
        f"\nspanmeter, mixed traffic: {args.spans} spans ({args.genai:.0%} GenAI) in requests of {args.batch} from "
        f"{args.senders} senders, pre-encoded gRPC, x {args.rounds} rounds, {os.cpu_count()} cores (medians)"
    )
    print(f"  protobuf parse alone (the ceiling)       {median['parse']:>10,.0f} spans/s   100.0 %")
    print(
        f"  minimal grpc.aio server (parse, ack)     {median['minimal']:>10,.0f} spans/s   "
        f"{median['minimal'] / median['parse']:6.1%} of the ceiling"
    )
    for label in versions.collectors:
        rate = median[label]
        print(
            f"  spanmeter [{label:>8}], all answered   {rate:>10,.0f} spans/s   {rate / median['parse']:6.1%} of the "
            f"ceiling, {rate / median['minimal']:6.1%} of the minimal server"
        )
        print(f"  spanmeter [{label:>8}], GenAI in store {median[f'{label} stored']:>10,.0f} spans/s")
    if args.baseline:
        for kind in ("", " stored"):
            ratio = median[f"this{kind}"] / median[f"{args.baseline}{kind}"]
            print(f"  this / {args.baseline}{kind or ' answered'}: {ratio:.2f}")


if __name__ == "__main__":
    main()
