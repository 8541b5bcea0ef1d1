"""The engine decoder beside the Python reader, on the same requests, in one run (the throughput work's first step).

Reads N GenAI spans shaped like ingest.py's (requests of `--batch` spans) three ways: protobuf (upb) parsing alone
(the Python ceiling), spanmeter's Python reader (`GenAIProcessor.decode`), and ClickHouse (chDB) decoding the
length-delimited requests with `collector/engine/otlp_traces.proto` and the SQL generated from the otel_genai
table, its result read as Arrow (`query_arrow`). Medians over rounds, and ratios.

    python bench/engine_decode.py [--spans 50000] [--batch 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ingest import chunks, encode_spans, make_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spanmeter.config import GenAIProcessorConfig
from spanmeter.conventions import CONVENTIONS
from spanmeter.engine import SCHEMA_FILE, decode_sql, length_delimited
from spanmeter.processors import GenAIProcessor
from spanmeter.store import connect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    bodies = [encode_spans(batch).SerializeToString() for batch in chunks(make_spans(args.spans), args.batch)]
    workdir = Path(tempfile.mkdtemp(prefix="spanmeter-engine-"))
    path = workdir / "requests.bin"
    path.write_bytes(length_delimited(bodies))
    client = connect(f"chdb://{workdir / 'store'}")
    sql = decode_sql(next(c for c in CONVENTIONS if c.name == "otel_genai"))
    settings = {"format_schema": f"{SCHEMA_FILE}:ExportTraceServiceRequest"}
    reader = GenAIProcessor(GenAIProcessorConfig())
    rates: dict[str, list[float]] = {"parse": [], "python": [], "engine": []}
    for round_index in range(args.rounds):
        started = time.perf_counter()
        requests = [ExportTraceServiceRequest.FromString(body) for body in bodies]
        rates["parse"].append(args.spans / (time.perf_counter() - started))
        started = time.perf_counter()
        rows = sum(len(reader.decode(request).records) for request in requests)
        rates["python"].append(rows / (time.perf_counter() - started))
        started = time.perf_counter()
        table = client.query_arrow(sql, parameters={"path": str(path)}, settings=settings)
        rates["engine"].append(table.num_rows / (time.perf_counter() - started))
        assert table.num_rows == rows == args.spans, (table.num_rows, rows)
        print(
            f"round {round_index + 1}: parse {rates['parse'][-1]:>10,.0f}  python {rates['python'][-1]:>9,.0f}  "
            f"engine {rates['engine'][-1]:>9,.0f} spans/s"
        )
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\nGenAI spans read, {args.spans} x {args.rounds} rounds, requests of {args.batch}, {os.cpu_count()} cores")
    print(f"  protobuf parse alone (upb)        {median['parse']:>10,.0f} spans/s")
    print(f"  Python reader (GenAIProcessor)    {median['python']:>10,.0f} spans/s")
    ratio = median["engine"] / median["python"]
    print(f"  engine (chDB, otel_genai SQL)     {median['engine']:>10,.0f} spans/s   {ratio:.1f}x the Python reader")


if __name__ == "__main__":
    main()
