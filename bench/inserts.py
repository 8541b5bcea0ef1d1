"""What a stored row costs the embedded store, inserts and merges together, with a schema change and without.

Each run is a fresh process and store with today's schema: the rows of 50,000 GenAI spans (as `bench/ingest.py`
makes them, read and priced by the collector's own stages, not timed) are inserted into genai_spans again and
again as new calls (fresh trace and span ids, a second later each time: the same rows again would sort next to
their copies and compress and merge as no traffic does), through every view, a pause between inserts as a
collector under load leaves. The process's CPU is counted from the first insert until some seconds after the
last, so the merges those inserts cause count too (they cost about as much as the inserts). `--variant` is SQL
run on the store before the inserts (`{db}` names its database); runs with and without it alternate, and the
medians and their ratio are printed. `--without-views` drops every materialized view the schema made, in both
runs, to measure genai_spans alone. `--grouped N`: the variant inserts the same rows N batches at a time (a group
of WAL segments under a backlog, `batch.max_insert_rows`), a pause N times as long between its inserts.
`--arrow-files`: the variant's inserts are read from Arrow files, not Native ones (store.InsertSpool).

    python bench/inserts.py --variant "ALTER TABLE {db}.genai_spans MODIFY SETTING ..." [--runs 4]
    python bench/inserts.py --grouped 4
    python bench/inserts.py --variant @bench/variants/rollup_feed.sql
    python bench/inserts.py --without-views --variant "SYSTEM STOP MERGES {db}.genai_spans"
    python bench/inserts.py --arrow-files --rows 100000 --inserts 20
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ingest.make_spans

DATABASE = "bench"


def run_once(
    root: Path,
    variant: str,
    without_views: bool,
    rows: int,
    inserts: int,
    pause: float,
    settle: float,
    grouped: int,
    arrow_files: bool,
) -> dict[str, object]:
    from ingest import chunks, make_spans
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from spanmeter import native
    from spanmeter.config import GenAIProcessorConfig, PricingProcessorConfig
    from spanmeter.decoding import InlineReader
    from spanmeter.exporters.accepted import request_record
    from spanmeter.exporters.clickhouse import INSERT_SETTINGS, TABLE
    from spanmeter.rows import ColumnStages, RowBuilder
    from spanmeter.store import InsertSpool, apply_schema, connect, insert_arrow
    from spanmeter.telemetry import CollectorMetrics

    bodies = [encode_spans(batch).SerializeToString() for batch in chunks(make_spans(rows), 512)]
    requests = pa.concat_tables([request_record(body, None, 512, time.time_ns()) for body in bodies])
    client = connect(f"chdb://{root / 'store'}")
    apply_schema(client, DATABASE)
    if without_views:
        views = client.query(
            "SELECT name FROM system.tables WHERE database = {db:String} AND engine = 'MaterializedView'",
            parameters={"db": DATABASE},
        ).result_columns
        for view in views[0] if views else ():
            client.command("DROP VIEW {db:Identifier}.{view:Identifier}", parameters={"db": DATABASE, "view": view})
    for statement in filter(None, (part.strip() for part in variant.split(";"))):
        client.command(statement.format(db=DATABASE))
    genai, pricing = GenAIProcessorConfig.model_validate({}), PricingProcessorConfig.model_validate({})
    (root / "scratch").mkdir()
    columns = ColumnStages(genai, pricing, None, root / "scratch", lambda: client)
    table = (
        RowBuilder(InlineReader(genai, [pricing]), [], CollectorMetrics(), columns=columns).build(requests, False).table
    )
    if arrow_files:
        native._native = None  # type: ignore[assignment]  # as a collector built without it: Arrow insert files
    spool = InsertSpool(root / "spool")
    spool.directory.mkdir()
    start, making = _cpu(), 0.0
    for first in range(0, inserts, grouped):
        made = time.thread_time()
        fresh = pa.concat_tables([_fresh(table, index) for index in range(first, min(first + grouped, inserts))])
        making += time.thread_time() - made  # this thread's, not the engine's: not the store's cost
        settings = INSERT_SETTINGS | {"insert_deduplication_token": uuid.uuid4().hex}
        insert_arrow(client, f"{DATABASE}.{TABLE}", fresh, settings, spool)
        time.sleep(pause * grouped)
    time.sleep(settle)
    used = _cpu() - start - making
    parts = client.query(
        "SELECT part_type, count(), sum(rows), sum(bytes_on_disk) FROM system.parts"
        " WHERE database = {db:String} AND table = {table:String} AND active GROUP BY part_type ORDER BY part_type",
        parameters={"db": DATABASE, "table": TABLE},
    ).result_rows
    return {"us_per_row": used / (inserts * table.num_rows) * 1e6, "parts": [list(part) for part in parts]}


def _fresh(table: pa.Table, index: int) -> pa.Table:
    """The rows as another batch of calls: new trace and span ids, `index` seconds later. The same rows inserted
    again would sort next to their copies and compress (and merge) as no real traffic does."""
    rng = np.random.default_rng(index)
    count = table.num_rows
    traces, spans = rng.bytes(16 * count).hex(), rng.bytes(8 * count).hex()
    columns = {
        "trace_id": pa.array([traces[i * 32 : i * 32 + 32] for i in range(count)]),
        "span_id": pa.array([spans[i * 16 : i * 16 + 16] for i in range(count)]),
        "timestamp": pc.add(table.column("timestamp"), pa.scalar(index * 10**9, pa.duration("ns"))),
    }
    for name, column in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variant",
        default="",
        help="SQL statements, separated by ;, run before the inserts ({db} is the database), or @FILE holding them",
    )
    parser.add_argument("--without-views", action="store_true", help="every materialized view dropped, in both runs")
    parser.add_argument("--runs", type=int, default=4, help="runs of each, alternated")
    parser.add_argument("--rows", type=int, default=50_000, help="rows an insert (batch.max_rows)")
    parser.add_argument("--grouped", type=int, default=1, help="the variant inserts this many batches at once")
    parser.add_argument("--arrow-files", action="store_true", help="the variant inserts from Arrow files")
    parser.add_argument("--inserts", type=int, default=40)
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between inserts")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds counted after the last insert")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant.startswith("@"):
        args.variant = Path(args.variant[1:]).read_text()
    if args.child is not None:
        with tempfile.TemporaryDirectory(prefix="spanmeter-inserts-") as root:
            result = run_once(
                Path(root), args.child, args.without_views, args.rows, args.inserts, args.pause, args.settle,
                args.grouped, args.arrow_files,
            )  # fmt: skip
        print(json.dumps(result))
        return
    figures: dict[str, list[float]] = {"schema": [], "variant": []}
    for run in range(args.runs):
        order = ("schema", "variant") if run % 2 == 0 else ("variant", "schema")
        for name in order:
            sql = args.variant if name == "variant" else ""
            command = [sys.executable, __file__, "--variant", args.variant, "--child", sql]
            command += ["--without-views"] if args.without_views else []
            command += ["--rows", str(args.rows), "--inserts", str(args.inserts)]
            command += ["--pause", str(args.pause), "--settle", str(args.settle)]
            command += ["--grouped", str(args.grouped if name == "variant" else 1)]
            command += ["--arrow-files"] if args.arrow_files and name == "variant" else []
            child = subprocess.run(command, capture_output=True, text=True)
            if child.returncode:
                raise SystemExit(f"the {name} run failed:\n" + "\n".join(child.stderr.splitlines()[-5:]))
            result = json.loads(child.stdout.strip().splitlines()[-1])
            figures[name].append(result["us_per_row"])
            parts = ", ".join(
                f"{count} {kind} ({rows:,} rows, {size / rows:.0f} B a row)"
                for kind, count, rows, size in result["parts"]
            )
            print(f"run {run + 1}: {name:7} {result['us_per_row']:6.2f} µs a row  active parts: {parts}")
    schema, variant = statistics.median(figures["schema"]), statistics.median(figures["variant"])
    print(f"{args.inserts} inserts of {args.rows:,} rows, {args.runs} runs each (medians)")
    print(f"  schema   {schema:6.2f} µs of CPU a row, inserts and merges")
    print(f"  variant  {variant:6.2f} µs of CPU a row   ({variant / schema:.2f}x)")


if __name__ == "__main__":
    main()
