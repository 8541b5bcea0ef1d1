"""The engine reader beside the Python reader, on the same requests, in one run (the throughput work).

Reads GenAI spans shaped like ingest.py's (requests of `--request` spans) three ways: protobuf (upb) parsing alone
(the Python ceiling), spanmeter's Python reader (parse + `GenAIProcessor.decode` + `to_arrow`), and the engine
(`EngineReader.read`: ClickHouse (chDB) reading the length-delimited requests with `collector/engine/otlp_traces.proto`
and the SQL generated from the convention tables, rows as Arrow). Throughput at batches of `--spans` spans, and the
fixed cost of a batch of one request (`--request` spans). Medians over rounds, and ratios; CPU seconds of this
process beside wall seconds (the machine is shared: CPU time is the steadier figure). Then where the engine's time
goes: its query alone on the same request files, ClickHouse's protobuf parse alone (the same structure, no
expression), the query's analysis and plan (`EXPLAIN PLAN`, no data), and the reader's Python around the query.

    python bench/engine_decode.py [--spans 50000] [--request 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from ingest import chunks, encode_spans, make_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spanmeter.config import GenAIProcessorConfig
from spanmeter.engine import EngineReader
from spanmeter.engine.reader import _SETTINGS, STRUCTURE, Query, write_length_delimited
from spanmeter.engine.sql import literal
from spanmeter.exporters.clickhouse import to_arrow
from spanmeter.processors import GenAIProcessor
from spanmeter.store import connect


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], int], rounds: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds of `run` over `rounds`, and what it returned (rows)."""
    walls, cpus, rows = [], [], 0
    for _ in range(rounds):
        wall, used = time.perf_counter(), cpu()
        rows = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu() - used)
    return statistics.median(walls), statistics.median(cpus), rows


def main() -> None:
    # The request file in memory where the system has it (tmpfs): its write is then a copy, not disk I/O.
    workdir = Path(tempfile.mkdtemp(prefix="spanmeter-engine-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        run(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the store and request files (in memory on tmpfs)


def run(workdir: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--request", type=int, default=100, help="spans per request")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    bodies = [encode_spans(batch).SerializeToString() for batch in chunks(make_spans(args.spans), args.request)]
    config = GenAIProcessorConfig.model_validate({"redaction": {"attributes": False}})
    engine = EngineReader(config, connect(f"chdb://{workdir / 'store'}"), workdir)
    reference = GenAIProcessor(config)
    latest = time.time_ns() + 3600 * 10**9

    def parse(batch: list[bytes]) -> int:
        return len([ExportTraceServiceRequest.FromString(body) for body in batch]) * args.request

    def python(batch: list[bytes]) -> int:
        records = [
            record
            for body in batch
            for record in reference.decode(ExportTraceServiceRequest.FromString(body), latest=latest).records
        ]
        return to_arrow(records).num_rows

    def read(batch: list[bytes]) -> int:
        result = engine.read(batch, [latest] * len(batch))
        assert not result.fallback
        return result.table.num_rows

    print(f"{args.spans:,} GenAI spans in requests of {args.request}, {args.rounds} rounds, {os.cpu_count()} cores")
    print(f"{'':36}{'wall s':>8}{'cpu s':>8}{'spans/s (cpu)':>15}")
    results = {}
    for name, run in (("protobuf parse alone (upb)", parse), ("Python reader + to_arrow", python), ("engine", read)):
        wall, used, _ = timed(lambda run=run: run(bodies), args.rounds)
        results[name] = used
        print(f"  {name:34}{wall:8.3f}{used:8.3f}{args.spans / used:15,.0f}")
    print(f"  engine / Python reader: {results['Python reader + to_arrow'] / results['engine']:.1f}x (cpu)")
    one = bodies[:1]
    for name, run in (("Python reader + to_arrow", python), ("engine", read)):
        wall, used, _ = timed(lambda run=run: run(one), args.rounds)
        print(f"  one request of {args.request} spans, {name:26}{wall * 1000:8.1f} ms wall {used * 1000:8.1f} ms cpu")
    split(engine, config, bodies, workdir, latest, args.spans, args.rounds, results["engine"])


def split(
    engine: EngineReader,
    config: GenAIProcessorConfig,
    bodies: list[bytes],
    workdir: Path,
    latest: int,
    spans: int,
    rounds: int,
    total: float,
) -> None:
    """The engine's CPU a span, taken apart: the query on request files written once, the protobuf parse alone,
    the analysis and plan of the query, and what `EngineReader.read` does in Python around the query."""
    client = engine._client
    active = engine._active(pa.chunked_array([pa.array(bodies, pa.large_binary())]))
    query = Query(config, engine._conventions, active, engine._read_keys).sql()
    half = -(-len(bodies) // 2)
    for first in range(0, len(bodies), half):
        write_length_delimited(workdir / f"split-{first}.bin", bodies[first : first + half])
    parameters = {"path": str(workdir / "split-*.bin"), "latest": [latest] * len(bodies)}
    settings = ", ".join(f"{name} = {literal(value)}" for name, value in _SETTINGS.items())
    source = f"file({{path:String}}, 'Protobuf', {literal(STRUCTURE)})"
    parse = f"SELECT sum(length(resource_spans)) FROM {source} SETTINGS {settings}"
    _, query_cpu, _ = timed(lambda: client.query_arrow(query, parameters=parameters, use_strings=True).num_rows, rounds)
    _, parse_cpu, _ = timed(lambda: client.query(parse, parameters=parameters).row_count, rounds)
    _, plan_cpu, _ = timed(lambda: client.query(f"EXPLAIN PLAN {query}", parameters=parameters).row_count, rounds)
    print(f"  where the engine's {total / spans * 1e6:.1f} µs CPU a span goes ({len(query):,} characters of SQL):")
    for name, used in (
        ("its query on the request files", query_cpu),
        ("  of which ClickHouse's protobuf parse alone", parse_cpu),
        ("  of which analysis and plan (EXPLAIN PLAN)", plan_cpu),
        ("the reader's Python around the query", total - query_cpu),
    ):
        print(f"    {name:46}{used / spans * 1e6:6.1f} µs a span ({used * 1000:,.0f} ms a batch)")


if __name__ == "__main__":
    main()
