"""The write-ahead log and what it promises: a request spanning many months is stored, rows ClickHouse
refuses are set aside without holding anything up, a damaged segment gives up its good records, and
health says what is true."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter.cli import main
from spanmeter.exporters.accepted import REQUESTS_SCHEMA, request_record, rows_in
from spanmeter.exporters.clickhouse import by_month
from spanmeter.exporters.wal import Segment, WalFull, WalWriteError, WriteAheadLog
from spanmeter.service import Collector, CollectorThread
from spanmeter.store import InsertSpool, insert_arrow

from .conftest import emit, http_request, metric_value, span_exporter, wait_for_rows
from .test_durability import FAST_RETRY, count_rows, make_spans, post
from .test_pricing_e2e import genai_attributes


def spans_in_months(months: int) -> list[ReadableSpan]:
    """One GenAI span per month, going back `months` months from 2026-11."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "backlog"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for index in range(months):
        year, month = divmod(2026 * 12 + 10 - index, 12)
        start = int(datetime(year, month + 1, 15, tzinfo=UTC).timestamp() * 1e9)
        emit(provider, "chat", genai_attributes("openai", "gpt-4o-mini", {"input": 10, "output": 2}), start)
    return list(memory.get_finished_spans())


def test_a_request_spanning_101_months_is_stored_and_nothing_behind_it_waits(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector(FAST_RETRY)
    exporter = span_exporter(collector, "http-protobuf")
    assert exporter.export(spans_in_months(101)) is SpanExportResult.SUCCESS
    assert exporter.export(make_spans(5)) is SpanExportResult.SUCCESS
    # 101 inserts, one a month, each through every rollup's view: ~20 s on a loaded host, more beside a second worker.
    wait_for_rows(collector, 106, timeout=60)
    assert count_rows(store, database) == (106, 106, 106)
    partitions = store.query(
        "SELECT uniqExact(toYYYYMM(timestamp)) FROM {db:Identifier}.genai_spans", parameters={"db": database}
    ).result_rows[0][0]
    assert partitions == 101 + 0  # make_spans' month is among the 101


def test_a_batch_is_inserted_in_one_part_a_month_in_the_order_months_came() -> None:
    """One insert per partition however the months interleave (rows of a day that began last month, sent
    around midnight on the 1st, came as one insert per row before); each month's rows in their order."""
    months = [(2026, 1), (2026, 1), (2026, 2), (2026, 1), (2026, 3), (2026, 2), (2026, 3)]
    stamps = [int(datetime(year, month, 10, tzinfo=UTC).timestamp() * 1e9) for year, month in months]
    table = pa.table({"timestamp": pa.array(stamps, pa.timestamp("ns", tz="UTC")), "n": list(range(7))})
    runs = by_month(table)
    assert [(label, part.column("n").to_pylist()) for label, part in runs] == [
        ("202601", [0, 1, 3]),
        ("202602", [2, 5]),
        ("202603", [4, 6]),
    ]
    assert by_month(table.slice(0, 2))[0][0] == "202601"  # one month: the whole batch, as before
    alternating = pa.table({"timestamp": pa.array([stamps[i % 2 * 2] for i in range(1000)], table.schema[0].type)})
    assert [(label, part.num_rows) for label, part in by_month(alternating)] == [("202601", 500), ("202602", 500)]


# --- rows ClickHouse refuses -------------------------------------------------------------------


def config_file(collector: Collector, tmp_path: Path) -> Path:
    """A pipelines file naming this collector's WAL directory and database, for the CLI."""
    store = collector.store_config
    path = tmp_path / "cli-pipelines.yaml"
    path.write_text(
        json.dumps(
            {
                "receivers": {"otlp": {}},
                "processors": {"genai": {}, "pricing": {}},
                "exporters": {
                    "clickhouse": {
                        "endpoint": store.endpoint,
                        "database": store.database,
                        "queue": {"directory": store.queue.directory},
                    }
                },
                "service": {
                    "pipelines": {
                        "traces": {
                            "receivers": ["otlp"],
                            "processors": ["genai", "pricing"],
                            "exporters": ["clickhouse"],
                        }
                    }
                },
            }
        )
    )
    return path


def test_rows_clickhouse_refuses_are_set_aside_listed_and_retried(
    start_collector: Callable[..., Collector],
    store: Client,
    database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    collector = start_collector(FAST_RETRY)
    # A rule of the user's own: ClickHouse refuses rows breaking it (VIOLATED_CONSTRAINT), for what they hold.
    store.command(
        "ALTER TABLE {db:Identifier}.genai_spans ADD CONSTRAINT no_poison CHECK request_model != 'poison'",
        parameters={"db": database},
    )
    exporter = span_exporter(collector, "grpc")
    batch = make_spans(6) + make_spans(1, model="poison") + make_spans(5)
    poison_id = format(batch[6].context.span_id, "016x")
    assert exporter.export(batch) is SpanExportResult.SUCCESS
    assert exporter.export(make_spans(4)) is SpanExportResult.SUCCESS  # behind it: not held up
    wait_for_rows(collector, 16, timeout=30)  # stored or set aside
    assert count_rows(store, database)[:2] == (15, 15)
    assert metric_value(collector, "spanmeter_spans_dead_lettered_total") == 1
    recorded = store.query(
        "SELECT rows, span_ids, error FROM {db:Identifier}.ingest_rejections", parameters={"db": database}
    ).result_rows
    assert [(rows, ids) for rows, ids, _ in recorded] == [(1, [poison_id])]
    assert "VIOLATED_CONSTRAINT" in recorded[0][2] or "no_poison" in recorded[0][2]

    config = config_file(collector, tmp_path)
    capsys.readouterr()
    assert main(["rejected", "list", "--config", str(config), "--format", "json"]) == 0
    [letter] = json.loads(capsys.readouterr().out)
    assert letter["rows"] == 1 and letter["span_ids"] == [poison_id]
    assert "no_poison" in letter["error"]

    store.command("ALTER TABLE {db:Identifier}.genai_spans DROP CONSTRAINT no_poison", parameters={"db": database})
    assert main(["rejected", "retry", "--all", "--config", str(config)]) == 0
    # An insert is not atomic across a table and its views: the rollups' parts can show a moment after the rows'.
    deadline = time.monotonic() + 15
    while count_rows(store, database) != (16, 16, 16) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count_rows(store, database) == (16, 16, 16)
    assert main(["rejected", "list", "--config", str(config)]) == 0
    assert "No rows set aside" in capsys.readouterr().out
    assert main(["rejected", "retry", "nope", "--config", str(config)]) == 2


# --- a damaged segment -------------------------------------------------------------------------

HOLD = {
    "exporters": {
        "clickhouse": {
            **FAST_RETRY["exporters"]["clickhouse"],
            "batch": {"max_rows": 100_000, "max_age": "10m"},  # one segment for the whole test
            "shutdown_timeout": "200ms",
        }
    }
}


def test_a_damaged_segment_gives_up_its_good_records_and_the_rest_is_quarantined(
    make_config: Callable[..., Any], store: Client, database: str, tmp_path: Path
) -> None:
    first = CollectorThread(make_config(HOLD))
    collector = first.start()
    store.command("DETACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    try:
        exporter = span_exporter(collector, "grpc")
        for size in (7, 5, 3):
            assert exporter.export(make_spans(size)) is SpanExportResult.SUCCESS
        assert first.stop() == 15
    finally:
        store.command("ATTACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    wal = tmp_path / "wal" / database
    [segment] = wal.glob("*.wal")
    data = bytearray(segment.read_bytes())
    data[-40] ^= 0xFF  # inside the last record (3 rows): its checksum no longer matches
    segment.write_bytes(bytes(data))

    with CollectorThread(make_config(HOLD)) as restarted:
        deadline = time.monotonic() + 20
        while restarted.exporter.replayed_rows < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric_value(restarted, "spanmeter_wal_quarantined_segments_total") == 1
        status, _, body = http_request(restarted, "/readyz")
        assert status == 200
        assert json.loads(body)["wal_quarantined_segments"] == 1
    assert count_rows(store, database) == (12, 12, 12)
    [quarantined] = (wal / "quarantine").iterdir()
    assert quarantined.name.startswith(segment.name)
    assert quarantined.stat().st_size > 40  # the damaged record, kept for inspection
    assert list(wal.glob("*.wal")) == []


# --- health ------------------------------------------------------------------------------------


def test_liveness_and_readiness_tell_the_truth(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector(
        {"exporters": {"clickhouse": {**FAST_RETRY["exporters"]["clickhouse"], "unavailable_grace": "300ms"}}}
    )
    assert http_request(collector, "/livez")[0] == 200
    status, _, body = http_request(collector, "/readyz")
    assert status == 200, body
    store.command("DETACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    try:
        assert span_exporter(collector, "grpc").export(make_spans(2)) is SpanExportResult.SUCCESS
        deadline = time.monotonic() + 10
        while http_request(collector, "/readyz")[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        status, _, body = http_request(collector, "/readyz")
        assert status == 503
        assert "ClickHouse has been failing" in json.loads(body)["problems"][0]
        assert http_request(collector, "/livez")[0] == 200  # alive: a restart would not help
        assert json.loads(http_request(collector, "/healthz")[2])["store"] == "unavailable"
    finally:
        store.command("ATTACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    wait_for_rows(collector, 2)
    assert http_request(collector, "/readyz")[0] == 200


def test_a_dead_exporter_thread_fails_liveness(start_collector: Callable[..., Collector]) -> None:
    collector = start_collector()
    collector.exporter.wal.close()  # the WAL writer stops: nothing can be acknowledged any more
    status, _, body = http_request(collector, "/livez")
    assert status == 503, body
    url = f"http://127.0.0.1:{collector.http_port}/v1/traces"
    with pytest.raises(Exception) as refused:
        post(url, encode_spans(make_spans(1)).SerializeToString())
    assert getattr(refused.value, "code", None) == 503


# --- disk full ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB filesystem of its own (tmpfs), so the WAL can fill it without touching anything else."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fresh_request(template: ExportTraceServiceRequest, first_id: int) -> tuple[bytes, list[str]]:
    """The template's spans under new ids: another request's worth of new calls."""
    message = ExportTraceServiceRequest()
    message.CopyFrom(template)
    ids = []
    for offset, span in enumerate(message.resource_spans[0].scope_spans[0].spans):
        span.span_id = (first_id + offset).to_bytes(8, "big")
        ids.append(format(first_id + offset, "016x"))
    return message.SerializeToString(), ids


def test_a_full_disk_answers_retryable_loses_nothing_acknowledged_and_recovers_by_itself(
    start_collector: Callable[..., Collector], store: Client, database: str, small_disk: Path
) -> None:
    collector = start_collector(
        {
            "exporters": {
                "clickhouse": {**FAST_RETRY["exporters"]["clickhouse"], "queue": {"directory": str(small_disk)}}
            }
        }
    )
    store.command("DETACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})  # nothing leaves the WAL
    url = f"http://127.0.0.1:{collector.http_port}/v1/traces"
    template = encode_spans(make_spans(20))
    acknowledged: list[str] = []
    next_id = 1
    try:
        ballast = small_disk / "ballast"
        ballast.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 200_000))
        refusal = None
        for _ in range(200):
            body, ids = fresh_request(template, next_id)
            next_id += len(ids)
            try:
                post(url, body)
            except urllib.error.HTTPError as error:
                refusal = error
                break
            acknowledged += ids
        assert refusal is not None, "the disk never filled"
        assert refusal.code == 503 and refusal.headers["Retry-After"]
        assert "No space left on device" in Status.FromString(refusal.read()).message
        assert acknowledged, "some requests fit before the disk filled"
        status, _, health = http_request(collector, "/readyz")
        assert status == 503 and "cannot be written" in json.loads(health)["problems"][0]
        assert metric_value(collector, "spanmeter_wal_write_errors_total") >= 1

        ballast.unlink()  # space returns: writing resumes by itself
        assert http_request(collector, "/readyz")[0] == 200
        body, ids = fresh_request(template, next_id)
        assert post(url, body).status == 200
        acknowledged += ids
    finally:
        store.command("ATTACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    wait_for_rows(collector, len(acknowledged), timeout=30)
    stored = dict(
        store.query(
            "SELECT span_id, count() FROM {db:Identifier}.genai_spans GROUP BY span_id", parameters={"db": database}
        ).result_rows
    )
    assert set(acknowledged) <= stored.keys()
    assert max(stored.values()) == 1


def test_an_insert_whose_spool_file_cannot_grow_goes_through_the_driver(
    store: Client, database: str, small_disk: Path
) -> None:
    """The embedded store's insert file lives beside the WAL, on its disk: when that disk is full, inserts (the
    only way the WAL empties) must still land."""
    store.command("CREATE DATABASE {db:Identifier}", parameters={"db": database})
    store.command(
        "CREATE TABLE {db:Identifier}.probe (n UInt32, text String) ENGINE = MergeTree ORDER BY n",
        parameters={"db": database},
    )
    small = pa.table({"n": pa.array([1], pa.uint32()), "text": ["small"]})
    spool = InsertSpool(small_disk)
    insert_arrow(store, f"{database}.probe", small, {}, spool)  # the spool file exists, one row's size
    spooled = small_disk / f"insert-{threading.get_ident()}.native"
    assert spooled.exists()
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * shutil.disk_usage(small_disk).free)
    large = pa.table({"n": pa.array(range(2, 20_002), pa.uint32()), "text": ["x" * 100] * 20_000})
    insert_arrow(store, f"{database}.probe", large, {}, spool)
    assert store.query(
        "SELECT count(), countIf(text = 'small') FROM {db:Identifier}.probe", parameters={"db": database}
    ).result_rows == [(20_001, 1)]


# --- handing segments to the exporter ----------------------------------------------------------


def request_log(
    directory: Path, segment_rows: int, max_bytes: int = 2**24, recovered: int = 0, recycle_bytes: int | None = None
) -> WriteAheadLog:
    """An opened WAL of requests (no collector) whose segments are sealed at `segment_rows` requests or 60 s,
    having read back `recovered` segments a previous run left."""
    wal = WriteAheadLog(
        directory,
        max_bytes,
        segment_rows=segment_rows,
        segment_age=60.0,
        schema=REQUESTS_SCHEMA,
        rows_of=rows_in,
        recycle_bytes=recycle_bytes,
    )
    assert len(wal.open()) == recovered
    return wal


def append(wal: WriteAheadLog, *bodies: bytes) -> None:
    """Each body as a request of one span, in order; returns once all are durable."""

    async def each() -> None:
        for body in bodies:
            await wal.append(request_record(body, None, 1))

    asyncio.run(each())


def sealed(wal: WriteAheadLog) -> list[Segment]:
    """Every sealed segment not yet released, oldest first."""
    segments: list[Segment] = []
    while (segment := wal.take(1.0, after=segments[-1] if segments else None)) is not None:
        segments.append(segment)
    return segments


def test_segments_are_handed_out_in_order_one_ahead_of_the_one_being_inserted(tmp_path: Path) -> None:
    """The exporter reads a segment while the one before it is inserted (under a backlog): `take(after=)` gives
    the next sealed one, `sealed_after` says whether there is one, and a released `after` gives the oldest."""
    wal = request_log(tmp_path, segment_rows=1)
    # A segment is sealed at its first request: the writer seals before it writes on.
    append(wal, *(f"request {index}".encode() for index in range(3)))
    first = wal.take(0.1)
    assert first is not None
    second = wal.take(0.1, after=first)
    assert second is not None and second is not first
    assert wal.sealed_after(first)
    assert wal.take(0.1, after=first) is second  # taking again hands out the same one until it is released
    assert [table.column("body")[0].as_py() for table in (first.table(), second.table())] == [
        b"request 0",
        b"request 1",
    ]
    wal.release(first)
    assert wal.take(0.1) is second
    assert wal.take(0.1, after=first) is second  # `after` released: the oldest sealed one
    wal.close()  # seals the third
    third = wal.take(0.1, after=second)
    assert third is not None and third.table().column("body")[0].as_py() == b"request 2"
    assert not wal.sealed_after(third)
    assert wal.take(0.05, after=third) is None
    wal.unlock()


def test_a_followed_log_seals_its_segments_sooner_and_then_at_its_own_age_again(tmp_path: Path) -> None:
    """While someone follows the stored calls (`follow`), the open segment is sealed at the follower's shorter
    age; once the follow lapses, at the configured one again."""
    wal = request_log(tmp_path, segment_rows=1000)
    append(wal, b"unwatched")
    assert wal.take(1.0) is None  # 60 s of age to go
    started = time.monotonic()
    wal.follow(0.3, 4.0)
    first = wal.take(1.0)  # already older than 0.3 s: sealed at once
    assert first is not None and time.monotonic() - started < 0.5
    assert first.table().column("body")[0].as_py() == b"unwatched"
    wal.release(first)
    appended = time.monotonic()
    append(wal, b"watched")
    second = wal.take(3.0)
    assert second is not None and 0.25 < time.monotonic() - appended < 2.5  # not the 60 s of its own age
    wal.release(second)
    time.sleep(max(0.0, started + 4.1 - time.monotonic()))  # the follow lapses
    append(wal, b"after the follow")
    assert wal.take(1.0) is None
    wal.close()
    wal.unlock()


def test_a_released_segment_file_is_written_over_and_its_earlier_records_are_never_read_back(tmp_path: Path) -> None:
    """A stored segment's file is kept and the next segment written over it. Read back after a stop, the new
    segment gives its own records only, though the earlier use's lie whole beyond them (records of equal size,
    so they line up where a record would start); a kept file is never read back as a segment."""

    wal = request_log(tmp_path, segment_rows=3)
    append(wal, b"earlier 0", b"earlier 1", b"earlier 2")
    earlier = wal.take(1.0)
    assert earlier is not None and earlier.rows == 3
    inode, size = earlier.path.stat().st_ino, earlier.path.stat().st_size
    wal.release(earlier)
    [spare] = tmp_path.glob("*.spare")
    assert spare.stat().st_ino == inode and not list(tmp_path.glob("*.wal"))
    wal.close()
    wal.unlock()

    wal = request_log(tmp_path, segment_rows=3)  # the kept file is not read back: its rows were stored
    append(wal, b"current 0")  # as long as "earlier 0": the earlier use's second record starts right after it
    wal.close()
    [current] = tmp_path.glob("*.wal")
    assert current.stat().st_ino == inode and current.stat().st_size == size
    wal.unlock()

    wal = WriteAheadLog(tmp_path, 2**24, segment_rows=3, segment_age=60.0, schema=REQUESTS_SCHEMA, rows_of=rows_in)
    [recovered] = wal.open()
    assert recovered.table().column("body").to_pylist() == [b"current 0"]
    assert wal.quarantined == 0
    wal.release(recovered)
    assert [spare.stat().st_ino for spare in tmp_path.glob("*.spare")] == [inode]
    wal.close()
    wal.unlock()


def test_released_files_are_kept_while_the_logs_files_hold_at_most_recycle_bytes(tmp_path: Path) -> None:
    """A burst's segments, once stored, are kept for reuse as long as the log's files stay within recycle_bytes
    (the rest deleted), and the next burst is written over them: no new file while kept ones are left."""
    wal = request_log(tmp_path, segment_rows=1, recycle_bytes=350_000)
    append(wal, *(os.urandom(100_000) for _ in range(6)))
    burst = sealed(wal)
    assert len(burst) == 6
    for segment in burst:
        wal.release(segment)
    kept = sorted(tmp_path.glob("*.spare"), key=lambda path: path.stat().st_ino)
    assert len(kept) == 3  # each ~101 KB: a fourth would put the files over 350,000 bytes
    assert wal.disk_bytes == on_disk(tmp_path) <= 350_000
    inodes = {path.stat().st_ino for path in kept}
    append(wal, *(os.urandom(100_000) for _ in range(3)))
    again = sealed(wal)
    assert {segment.path.stat().st_ino for segment in again} == inodes and not list(tmp_path.glob("*.spare"))
    wal.close()
    wal.unlock()

    wal = request_log(tmp_path, segment_rows=1, recovered=3)  # recycle_bytes defaults to max_bytes (16 MiB)
    for segment in sealed(wal):
        wal.release(segment)
    append(wal, *(os.urandom(100_000) for _ in range(6)))
    for segment in sealed(wal):
        wal.release(segment)
    assert len(list(tmp_path.glob("*.spare"))) == 6
    wal.close()
    wal.unlock()


def test_a_request_that_needs_room_deletes_only_the_oldest_kept_files(tmp_path: Path) -> None:
    """Kept files make room for a request as it needs it, the oldest kept first; the others stay to be written
    over (deleting them all would have the next segments fill new files)."""
    wal = request_log(tmp_path, segment_rows=1, max_bytes=1_000_000)
    append(wal, *(os.urandom(200_000) for _ in range(4)))
    order = []
    for segment in sealed(wal):
        inode = segment.path.stat().st_ino
        wal.release(segment)
        order.append(inode)
    assert {path.stat().st_ino for path in tmp_path.glob("*.spare")} == set(order)
    append(wal, os.urandom(250_000))  # ~200 KB over max_bytes beside four kept files: the oldest goes
    [written] = sealed(wal)
    assert written.path.stat().st_ino == order[3]  # the last kept is written over
    deadline = time.monotonic() + 5
    while wal.disk_bytes != on_disk(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {path.stat().st_ino for path in tmp_path.glob("*.spare")} == {order[1], order[2]}
    assert wal.disk_bytes == on_disk(tmp_path) <= 1_000_000
    wal.close()
    wal.unlock()


def on_disk(directory: Path) -> int:
    """What the WAL's segment files and the files it keeps for reuse hold."""
    return sum(path.stat().st_size for pattern in ("*.wal", "*.spare") for path in directory.glob(pattern))


def test_the_kept_files_count_in_max_bytes_and_make_room_first(tmp_path: Path) -> None:
    """The files kept for reuse count in max_bytes: a request that fits only without them has them deleted, and
    the WAL's files never hold more than max_bytes. The WAL's count of its disk bytes is what its files hold,
    through a kept file larger than the segment written over it, and after a restart."""
    limit = 1_000_000
    wal = request_log(tmp_path, segment_rows=1, max_bytes=limit)
    append(wal, *(os.urandom(250_000) for _ in range(3)))  # a segment each, all stored, all kept
    for segment in sealed(wal):
        wal.release(segment)
    assert len(list(tmp_path.glob("*.spare"))) == 3
    assert wal.disk_bytes == on_disk(tmp_path) > 750_000
    append(wal, os.urandom(100_000))  # written over a kept file: 150 KB of its earlier use still held
    [small] = sealed(wal)
    assert small.path.stat().st_size > 250_000 and wal.disk_bytes == on_disk(tmp_path)
    append(wal, os.urandom(500_000))  # fits only once the two other kept files are gone
    assert not list(tmp_path.glob("*.spare"))
    sealed(wal)  # sealed, its file ends at its last record (open, up to a block of zeros follows it)
    assert wal.disk_bytes == on_disk(tmp_path) <= limit
    with pytest.raises(WalFull, match=r"full \(\d+ of 1000000 bytes on disk, \d+ of them waiting"):
        append(wal, os.urandom(500_000))
    wal.close()
    wal.unlock()

    wal = request_log(tmp_path, segment_rows=1, max_bytes=limit, recovered=2)
    assert wal.disk_bytes == on_disk(tmp_path) <= limit
    for segment in sealed(wal):
        wal.release(segment)
    assert len(list(tmp_path.glob("*.spare"))) == 2 and wal.disk_bytes == on_disk(tmp_path)
    wal.close()
    wal.unlock()
    wal = request_log(tmp_path, segment_rows=1, max_bytes=500_000)  # kept files beyond a smaller limit: deleted
    assert len(list(tmp_path.glob("*.spare"))) == 1 and wal.disk_bytes == on_disk(tmp_path) <= 500_000
    wal.close()
    wal.unlock()


def test_kept_files_given_up_for_a_request_that_still_does_not_fit_are_deleted_all_the_same(tmp_path: Path) -> None:
    """The writer deletes the kept files a request asked room from even when that request is refused (no write
    follows to trigger it): the log's files then hold only what waits to be stored."""
    wal = request_log(tmp_path, segment_rows=1, max_bytes=1_000_000)
    append(wal, os.urandom(250_000), os.urandom(600_000))
    first, waiting = sealed(wal)
    wal.release(first)
    assert len(list(tmp_path.glob("*.spare"))) == 1
    with pytest.raises(WalFull):
        append(wal, os.urandom(500_000))  # over the bound beside the kept file, and without it too
    deadline = time.monotonic() + 5  # deleted, then uncounted (counted high meanwhile, never low)
    while wal.disk_bytes != waiting.path.stat().st_size and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not list(tmp_path.glob("*.spare"))
    assert wal.disk_bytes == on_disk(tmp_path) == waiting.path.stat().st_size
    wal.close()
    wal.unlock()


def test_a_full_disk_gets_the_kept_files_space_back(small_disk: Path) -> None:
    """Stored segments' files kept for reuse hold disk space: when a write finds the disk full, they are deleted,
    and the request the sender retries fits."""
    wal = request_log(small_disk, segment_rows=1)
    append(wal, *(os.urandom(400_000) for _ in range(4)))  # a segment each, all stored, all kept
    for segment in sealed(wal):
        wal.release(segment)
    assert len(list(small_disk.glob("*.spare"))) == 4
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 100_000))
    large = os.urandom(600_000)  # over a kept file's 400 KB: 200 KB more than the disk has
    with pytest.raises(WalWriteError, match="No space left on device"):
        append(wal, large)
    assert len(list(small_disk.glob("*.spare"))) == 0  # the one written over is the open segment now
    assert wal.disk_bytes == on_disk(small_disk)  # the failed write's cut took that file's earlier use with it
    append(wal, large)  # retried: fits in what the kept files held
    wal.close()
    stored = wal.take(0.1)
    assert stored is not None and stored.table().column("body").to_pylist() == [large]
    wal.unlock()


# --- groups of segments inserted together ------------------------------------------------------


def bodies_of(segment: Segment) -> list[bytes]:
    return segment.table().column("body").to_pylist()


def test_a_recorded_group_is_read_back_whole_and_a_partly_released_one_as_stored(tmp_path: Path) -> None:
    """A group's record outlives a crash: with every member still in the log, the members are read back in the
    same group (inserted again under its token, dropped as a retry if it had landed); with a member released,
    the group's insert had completed (members are released only after it), so the others are deleted unread.
    A record never renamed into place (a crash while writing it) is deleted, its segments left single."""
    wal = request_log(tmp_path, segment_rows=1)
    append(wal, *(f"request {index}".encode() for index in range(7)))
    wal.close()
    segments = sealed(wal)
    assert len(segments) == 7
    whole = wal.record_group(segments[0:2])
    partly = wal.record_group(segments[2:5])
    assert [segment.group for segment in segments[:5]] == [whole, whole, partly, partly, partly]
    assert whole.members == (segments[0].token, segments[1].token) and whole.token != partly.token
    assert (tmp_path / f"{whole.token}.group").read_text().split() == list(whole.members)
    # `partly`'s first member released (its file kept as a spare), a crash before the others were.
    wal.release(segments[2])
    (tmp_path / "unfinished.group.partial").write_text(f"{segments[5].token}\n{segments[6].token}\n")
    wal.unlock()

    wal = WriteAheadLog(tmp_path, 2**24, segment_rows=1, segment_age=60.0, schema=REQUESTS_SCHEMA, rows_of=rows_in)
    recovered = wal.open()
    assert [bodies_of(segment) for segment in recovered] == [
        [b"request 0"],
        [b"request 1"],
        [b"request 5"],
        [b"request 6"],
    ]
    assert recovered[0].group == whole and recovered[1].group is recovered[0].group
    assert recovered[2].group is None and recovered[3].group is None
    assert wal.rows == 4
    names = sorted(path.name for path in tmp_path.iterdir() if path.suffix in (".wal", ".group", ".partial"))
    assert names == sorted([*(segment.path.name for segment in recovered), f"{whole.token}.group"])
    for segment in recovered[:2]:
        wal.release(segment)
    wal.forget_group(whole)
    assert not list(tmp_path.glob("*.group"))
    wal.close()
    wal.unlock()


def test_a_group_whose_members_are_all_gone_leaves_no_record(tmp_path: Path) -> None:
    """Released members, then a crash before the record was deleted: the record goes at the next start (as
    does a record naming no member)."""
    wal = request_log(tmp_path, segment_rows=1)
    append(wal, b"a", b"b")
    wal.close()
    segments = sealed(wal)
    wal.record_group(segments)
    for segment in segments:
        wal.release(segment)
    wal.unlock()
    (tmp_path / "empty.group").write_text("")  # no member at all: nothing to insert under it
    wal = request_log(tmp_path, segment_rows=1)
    assert not list(tmp_path.glob("*.group"))
    wal.close()
    wal.unlock()
