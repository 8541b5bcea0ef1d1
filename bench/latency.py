"""Acknowledgement latency of the spanmeter collector at fixed offered rates.

The project's second target: requests acknowledged within 20 ms at p99 under 10,000 spans/s. This starts
`spanmeter serve` as a child process (see ingest.py), then for each rate offers GenAI spans at that rate for
`--seconds`, in OTLP/gRPC requests of `--batch` spans (fewer at low rates: at most 10 requests a second) sent on
a fixed schedule (open loop: a slow answer does not slow the offered load) from `--senders` threads, and reports
the median and p99 time from sending a request to its answer, beside the rate the collector actually stored and
the collector's CPU from the first request until every span was stored (a share of one core, and a span): what
a trickle of traffic costs shows there.

    python bench/latency.py [--rates 10,100,1000,10000] [--seconds 10] [--batch 100] [--baseline REV]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from ingest import Collector, Versions, chunks, encode_spans, in_threads, make_spans

PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def offer(
    collector: Collector,
    rate: int,
    seconds: float,
    batch: int,
    senders: int,
    channel: Callable[[], grpc.Channel] | None = None,
    metadata: tuple[tuple[str, str], ...] = (),
) -> tuple[list[float], float]:
    """Latencies of requests offered at `rate` spans/s, and the rate stored. `channel` opens a sender's
    channel (default: plaintext to the collector); `metadata` goes with each request (e.g. a key)."""
    total = int(rate * seconds)
    bodies = [encode_spans(b).SerializeToString() for b in chunks(make_spans(total), batch)]
    interval = senders * batch / rate  # each sender's period between requests
    latencies: list[float] = []
    lock = threading.Lock()
    before = collector.stored()
    start = time.perf_counter() + 0.2

    def sender(index: int) -> None:
        mine = bodies[index::senders]
        opened = channel() if channel is not None else grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}")
        with opened:
            export = opened.unary_unary(PATH)
            for n, body in enumerate(mine):
                due = start + index * interval / senders + n * interval
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                sent = time.perf_counter()
                export(body, timeout=30, metadata=metadata)
                elapsed = time.perf_counter() - sent
                with lock:
                    latencies.append(elapsed)

    in_threads(sender, range(senders))
    collector.wait_stored(before + total)
    stored_rate = total / (time.perf_counter() - start)
    return latencies, stored_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10,100,1000,10000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument(
        "--baseline", metavar="REV", help="also measure the collector of this git revision, rate by rate"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="spanmeter-latency-"))
    versions = Versions(workdir, args.baseline, args.workers)
    rows = []
    try:
        collectors = versions.start()
        for collector in collectors.values():
            offer(collector, 1000, 2, args.batch, args.senders)  # warm-up: first connections, price lookups
        order = list(collectors.items())
        for rate_index, rate in enumerate(int(r) for r in args.rates.split(",")):
            batch = min(args.batch, max(1, rate // 10))
            # The order alternates rate by rate, as in ingest.py: the collector that runs first pays for memory
            # the one before it freed.
            for label, collector in order[::-1] if rate_index % 2 else order:
                used = collector.cpu_seconds()[0]  # the spans' encoding first: the collector idle (~1 % of a core)
                latencies, stored = offer(collector, rate, args.seconds, batch, args.senders)
                cpu = collector.cpu_seconds()[0] - used
                total = int(rate * args.seconds)
                share = cpu / (total / stored) * 100  # over the first request until the last span stored
                per_span = cpu / total * 1e6
                latencies.sort()
                p50 = statistics.median(latencies) * 1000
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
                rows.append((label, rate, stored, p50, p99, len(latencies), share, per_span))
                print(
                    f"{label}: offered {rate:>6,}/s: stored {stored:>8,.0f}/s, ack p50 {p50:7.1f} ms, "
                    f"p99 {p99:7.1f} ms, collector CPU {share:5.1f} % of a core ({per_span:,.0f} µs a span)"
                )
    finally:
        versions.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"\nack latency, OTLP/gRPC requests of up to {args.batch} spans, {args.seconds:g} s per rate, "
        f"workers {args.workers}"
    )
    print("  version    offered/s   stored/s   p50 ms   p99 ms   requests   CPU % of a core   µs a span")
    for label, rate, stored, p50, p99, count, share, per_span in rows:
        print(
            f"  {label:8s} {rate:>11,} {stored:>10,.0f} {p50:>8.1f} {p99:>8.1f} {count:>10,} {share:>17.1f}"
            f" {per_span:>11,.0f}"
        )
    print("  target: p99 <= 20 ms at 10,000 spans/s")


if __name__ == "__main__":
    main()
