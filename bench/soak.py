"""Sustained ingest: the collector under a steady all-GenAI stream for minutes, not a burst of a few seconds.

`ingest.py` measures rounds of 700,000 spans: seconds of work, whose merges and memory may not have settled.
Here sender threads send pre-encoded requests (raw gRPC, as `ingest.py --raw grpc`) without pause for
`--seconds`, retrying UNAVAILABLE after a backoff as the SDK's exporters do, and every `--interval` seconds the
collector's stored count, CPU and resident memory are read: the rate a long-running collector keeps while its
table grows and its parts are merged level after level, and whether its memory stays flat. The collector runs
with the shipped pipelines.yaml, as a user runs it. At the end it is stopped (SIGTERM: it stores what it
accepted), and its store is opened to count the rows: every acknowledged span must be there, once (or counted
as a resent call it recognised).

    python bench/soak.py [--spans 300000] [--seconds 180] [--interval 10] [--warmup 30] [--senders 4]

The requests are sent again and again, each sender its own share of them. The collector recognises a resent
call within the segment it stores and among the 50,000 calls it remembers: with `--spans` in the hundreds of
thousands most sends are new rows, and those it recognises (a sender that ran alone for a while, the others
backing off) are counted from its metrics and reconciled. The parse ceiling and the minimal gRPC server are
measured in the same run, before the collector starts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from ingest import Collector, chunks, decode_ceiling, dotted, export_until_accepted, make_spans, merged, minimal_rate
from minimal_server import MinimalServer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

DROPPED = "spanmeter_spans_dropped"
"""Spans the collector accepted and did not store (resent calls it recognised)."""
DRAIN_TIMEOUT = 300
"""Seconds the collector has to store what it acknowledged once the senders stop (it took 5-10 s)."""
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
COUNT_ROWS = """
import json, sys
from spanmeter.store import connect
client = connect(sys.argv[1])
rows = client.command(f"SELECT count() FROM {sys.argv[2]}.genai_spans")
parts = client.query(
    "SELECT count(), max(level), sum(rows) FROM system.parts WHERE database = {db:String} AND table = 'genai_spans' "
    "AND active", parameters={"db": sys.argv[2]}).result_rows[0]
print(json.dumps({"rows": int(rows), "parts": int(parts[0]), "max_level": int(parts[1])}))
"""


class Senders:
    """Threads sending their share of the requests in a loop until stopped, each on a channel of its own; counts
    the spans acknowledged (durable in the collector's WAL)."""

    def __init__(self, port: int, bodies: list[bytes], spans_per_body: list[int], senders: int) -> None:
        self._stop = threading.Event()
        self._acknowledged = [0] * senders
        self._retries = [0] * senders
        self._errors: list[str] = []
        self._threads = [
            threading.Thread(
                target=self._send, args=(index, port, bodies[index::senders], spans_per_body[index::senders])
            )
            for index in range(senders)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stops the senders; raises if one stopped on an error of its own (not a full WAL, which it retries)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise RuntimeError(f"{len(self._errors)} senders failed, the first: {self._errors[0]}")

    @property
    def acknowledged(self) -> int:
        return sum(self._acknowledged)

    @property
    def retries(self) -> int:
        return sum(self._retries)

    def _send(self, index: int, port: int, bodies: list[bytes], counts: list[int]) -> None:
        try:
            self._send_until_stopped(index, port, bodies, counts)
        except Exception as exc:
            self._errors.append(repr(exc))

    def _send_until_stopped(self, index: int, port: int, bodies: list[bytes], counts: list[int]) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            export = channel.unary_unary(EXPORT)
            while not self._stop.is_set():
                for body, count in zip(bodies, counts, strict=True):
                    if self._stop.is_set():
                        return
                    self._retries[index] += export_until_accepted(export, body)
                    self._acknowledged[index] += count


@dataclass
class Sample:
    at: float
    acknowledged: int
    stored: int
    cpu: float
    system: float
    rss: int


def sample(collector: Collector, senders: Senders, started: float) -> Sample:
    cpu, system = collector.cpu_seconds()
    return Sample(
        time.perf_counter() - started,
        senders.acknowledged,
        collector.stored(),
        cpu,
        system,
        collector.memory("VmRSS"),
    )


def count_rows(store: Path, database: str) -> dict[str, Any]:
    """Rows and active parts of the stopped collector's genai_spans, read in a process of its own."""
    out = subprocess.run(
        [sys.executable, "-c", COUNT_ROWS, f"chdb://{store}", database], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=300_000, help="distinct spans, sent again and again")
    parser.add_argument("--batch", type=int, default=512, help="spans per export request (the SDK's default)")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=180.0, help="how long the senders send")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between two readings")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds left out of the steady-state figures")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipelines.yaml key of the collector, dotted (exporters.clickhouse.batch.max_rows=50000)",
    )
    args = parser.parse_args()
    if args.spans < 100_000:
        parser.error("--spans below 100,000: most sends would be recognised as resent (see the module's docstring)")

    print(f"building {args.spans} spans...", file=sys.stderr)
    batches = chunks(make_spans(args.spans), args.batch)
    bodies = [encode_spans(batch).SerializeToString() for batch in batches]
    counts = [len(batch) for batch in batches]
    del batches
    decode = statistics.median(decode_ceiling(bodies, args.spans) for _ in range(3))
    minimal_server = MinimalServer()
    try:
        minimal = statistics.median(minimal_rate(minimal_server, bodies, args.spans, args.senders) for _ in range(3))
    finally:
        minimal_server.stop()

    workdir = Path(tempfile.mkdtemp(prefix="spanmeter-soak-"))
    overrides: dict[str, Any] = {}
    for setting in args.set:
        key, _, value = setting.partition("=")
        overrides = merged(overrides, dotted(key, yaml.safe_load(value)))
    database = os.environ.get("SPANMETER_DATABASE", "spanmeter")
    samples: list[Sample] = []
    collector: Collector | None = None
    try:
        collector = Collector(workdir, overrides=overrides or None)
        senders = Senders(collector.grpc_port, bodies, counts, args.senders)
        started = time.perf_counter()
        samples.append(sample(collector, senders, started))
        senders.start()
        print(" seconds  stored spans/s  acknowledged/s  CPU µs a span  kernel  resident MiB", file=sys.stderr)
        for due in window_ends(args.seconds, args.interval):
            time.sleep(max(0.0, due - (time.perf_counter() - started)))
            samples.append(sample(collector, senders, started))
            report_window(samples[-2], samples[-1])
        senders.stop()
        acknowledged = senders.acknowledged
        stopped = time.perf_counter()
        while collector.stored() + collector.counter(DROPPED) < acknowledged:
            if time.perf_counter() - stopped > DRAIN_TIMEOUT:
                raise SystemExit(
                    f"{acknowledged:,} spans acknowledged, {collector.stored():,} stored and "
                    f"{collector.counter(DROPPED):,} recognised as resent {DRAIN_TIMEOUT} s after the senders stopped"
                )
            time.sleep(0.1)
        drained = time.perf_counter() - stopped
        stored, duplicates = collector.stored(), collector.counter(DROPPED)
        peak = collector.peak_memory()
        collector.stop()
        store = count_rows(workdir / "store", database)
    finally:
        if collector is not None and collector.process.poll() is None:
            collector.process.kill()
            collector.process.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    steady = [s for s in samples if s.at >= args.warmup]
    windows = [rate(a, b) for a, b in itertools.pairwise(steady)]
    first, last = steady[0], steady[-1]
    used = last.cpu - first.cpu
    stored_in_steady = last.stored - first.stored
    print(
        f"\nspanmeter soak, {args.seconds:.0f} s of all-GenAI traffic ({args.spans} distinct spans, requests of "
        f"{args.batch}, {args.senders} senders), {os.cpu_count()} cores"
    )
    print(f"  protobuf decode alone (the ceiling)     {decode:>10,.0f} spans/s")
    print(f"  minimal grpc.aio server (parse, ack)    {minimal:>10,.0f} spans/s")
    print(
        f"  stored, from {args.warmup:.0f} s on: median of {len(windows)} windows {statistics.median(windows):>10,.0f} "
        f"spans/s (lowest {min(windows):,.0f}, highest {max(windows):,.0f}; whole span "
        f"{stored_in_steady / (last.at - first.at):,.0f})"
    )
    print(
        f"  collector CPU a span stored             {used / stored_in_steady * 1e6:>10.1f} µs "
        f"({(last.system - first.system) / used:.0%} in the kernel)"
    )
    print(
        f"  collector resident memory               {first.rss / 2**20:>10,.0f} MiB at {first.at:.0f} s, "
        f"{last.rss / 2**20:,.0f} at {last.at:.0f} s, highest {max(s.rss for s in steady) / 2**20:,.0f} "
        f"(peak VmHWM {peak / 2**20:,.0f})"
    )
    print(
        f"  acknowledged {acknowledged:,} spans; stored {stored:,}, recognised as resent {duplicates:,}; "
        f"{senders.retries:,} sends retried (WAL full)"
    )
    print(f"  drained in {drained:.1f} s after the senders stopped")
    print(
        f"  in the store after the collector stopped: {store['rows']:,} rows in {store['parts']} active parts "
        f"(highest merge level {store['max_level']})"
    )
    if store["rows"] != stored or stored + duplicates != acknowledged:
        raise SystemExit(
            f"the store holds {store['rows']:,} rows: not the {stored:,} counted stored, or not the "
            f"{acknowledged:,} acknowledged less {duplicates:,} recognised as resent"
        )


def window_ends(seconds: float, interval: float) -> list[float]:
    ends = [interval * n for n in range(1, int(seconds / interval) + 1)]
    return ends if ends and ends[-1] >= seconds else [*ends, seconds]


def rate(before: Sample, after: Sample) -> float:
    return (after.stored - before.stored) / (after.at - before.at)


def report_window(before: Sample, after: Sample) -> None:
    seconds = after.at - before.at
    stored = after.stored - before.stored
    used = after.cpu - before.cpu
    print(
        f"{after.at:8.0f}  {stored / seconds:14,.0f}  {(after.acknowledged - before.acknowledged) / seconds:14,.0f}  "
        f"{used / stored * 1e6 if stored else 0:13.1f}  {(after.system - before.system) / used if used else 0:6.0%}  "
        f"{after.rss / 2**20:12,.0f}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
