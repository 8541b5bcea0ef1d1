"""Under a backlog, consecutive WAL segments are inserted together under one recorded token: fewer inserts, and
after a crash the same segments go in together again, so a group that had landed is stored once."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from spanmeter.config import Config
from spanmeter.exporters.accepted import request_record
from spanmeter.exporters.wal import GROUP_SUFFIX
from spanmeter.service import Collector, CollectorThread

from .conftest import deep_merge, metric_value, span_exporter, wait_for_rows
from .test_durability import FAST_RETRY, count_rows, make_spans
from .test_wal import request_log, sealed

SEGMENT = 10
"""Spans a segment holds (`batch.max_rows`) in these tests."""
BATCH = {"max_rows": SEGMENT, "max_insert_rows": 3 * SEGMENT, "max_age": "50ms"}
GROUPED = {"exporters": {"clickhouse": {**FAST_RETRY["exporters"]["clickhouse"], "batch": BATCH}}}


def inserts(collector: Collector) -> tuple[int, float]:
    """How many inserts the collector made, and the rows they held in all."""
    count = int(metric_value(collector, "spanmeter_batch_rows_count"))
    return count, metric_value(collector, "spanmeter_batch_rows_sum")


def send_backlog(collector: Collector, spans: int = SEGMENT) -> int:
    """Seven requests of `spans` spans, a segment each, sent while the first insert is held up (as behind a slow
    store), so those behind it wait sealed; returns when all are stored, with the number of spans."""
    exporter = span_exporter(collector, "http-protobuf")
    with collector.exporter.insert_lock:
        for _ in range(7):
            exporter.export(make_spans(spans))
    wait_for_rows(collector, 7 * spans, timeout=60)
    return 7 * spans


def test_a_backlog_of_segments_is_inserted_in_groups_each_stored_once(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    """Seven segments of ten spans wait behind an insert held up (the store busy): those behind the first go in
    as groups of at most `max_insert_rows` spans, fewer inserts than segments, every span once (views included),
    and no group record is left."""
    collector = start_collector(GROUPED)
    assert send_backlog(collector) == 70
    assert count_rows(store, database) == (70, 70, 70)
    count, rows = inserts(collector)
    assert rows == 70
    assert count <= 4, f"{count} inserts for 7 segments: the waiting ones were not grouped"
    deadline = time.monotonic() + 10  # a group's record goes right after its members are released
    while list(collector.exporter.wal.directory.glob(f"*{GROUP_SUFFIX}")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not list(collector.exporter.wal.directory.glob(f"*{GROUP_SUFFIX}"))


def test_segments_holding_a_little_more_than_max_rows_still_go_in_as_groups_of_max_insert_rows(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    """A segment is sealed once it reaches `max_rows`, its last request whole, so it may hold more (here requests
    of 12 spans, segments of 12 for `max_rows` 10). `max_insert_rows` at twice `max_rows` still pairs them: a
    group is closed once it reaches the limit, not refused a segment that would pass it (which made every group
    of such segments a group of one)."""
    pairs = {"exporters": {"clickhouse": {"batch": {**BATCH, "max_insert_rows": 2 * SEGMENT}}}}
    collector = start_collector(deep_merge(GROUPED, pairs))
    assert send_backlog(collector, SEGMENT + 2) == 84
    assert count_rows(store, database) == (84, 84, 84)
    count, rows = inserts(collector)
    assert rows == 84
    assert count <= 4, f"{count} inserts for 7 segments of 12 spans: not paired"


def test_a_group_takes_no_more_segments_once_its_rows_reach_max_insert_bytes(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    """The same backlog with a group's rows bounded to less than one segment's: each segment goes in alone."""
    bounded = {"exporters": {"clickhouse": {"batch": {**BATCH, "max_insert_bytes": "1KiB"}}}}
    collector = start_collector(deep_merge(GROUPED, bounded))
    assert send_backlog(collector) == 70
    assert count_rows(store, database) == (70, 70, 70)
    assert inserts(collector) == (7, 70)


def write_log(directory: Path, requests: int) -> list[str]:
    """A WAL left by a previous run: `requests` requests of SEGMENT spans, a segment each, the first three
    recorded as a group; returns the segments' tokens."""
    wal = request_log(directory, segment_rows=SEGMENT)

    async def each() -> None:
        for _ in range(requests):
            body = encode_spans(make_spans(SEGMENT)).SerializeToString()
            await wal.append(request_record(body, None, SEGMENT))

    asyncio.run(each())
    wal.close()
    segments = sealed(wal)
    wal.record_group(segments[:3])
    wal.unlock()
    return [segment.token for segment in segments]


def restore(saved: Path, directory: Path, keep: Callable[[Path], bool] = lambda path: True) -> None:
    """The WAL's files as `saved` holds them (those `keep` takes): the state a crash left."""
    for path in directory.iterdir():
        if path.is_file() and path.name != "LOCK":
            path.unlink()
    for path in saved.iterdir():
        if keep(path):
            shutil.copy2(path, directory / path.name)


def drain(config: Config) -> int:
    """Run a collector until its WAL is stored; the rows it replayed."""
    with CollectorThread(config) as collector:
        deadline = time.monotonic() + 60
        while collector.exporter.queued_rows and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not collector.exporter.queued_rows, "the WAL was not stored within 60 s"
        return collector.exporter.replayed_rows


def test_a_group_that_landed_before_a_crash_is_stored_once_and_a_released_one_not_again(
    make_config: Callable[..., Config], store: Client, database: str, tmp_path: Path
) -> None:
    """The WAL as a crash leaves it after a group's insert landed. (1) Every member still there (they are
    released after the insert; the crash came first): the group is inserted again under its token and dropped
    as a retry, views included. (2) One member released: the others are known stored and deleted unread.
    Either way each span is stored once."""
    directory = tmp_path / "wal" / database
    tokens = write_log(directory, requests=4)
    saved = tmp_path / "saved"
    shutil.copytree(directory, saved, ignore=shutil.ignore_patterns("LOCK"))
    assert drain(make_config(GROUPED)) == 4 * SEGMENT
    assert count_rows(store, database) == (40, 40, 40)

    restore(saved, directory)
    assert drain(make_config(GROUPED)) == 4 * SEGMENT  # read and inserted again, and dropped
    assert count_rows(store, database) == (40, 40, 40)

    restore(saved, directory, keep=lambda path: tokens[0] not in path.name)
    assert drain(make_config(GROUPED)) == 1 * SEGMENT  # the single fourth segment only
    assert count_rows(store, database) == (40, 40, 40)
    assert not [path for path in directory.iterdir() if path.suffix in (".wal", GROUP_SUFFIX)]
