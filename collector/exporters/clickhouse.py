"""The `clickhouse` exporter: accepted rows go to the write-ahead log, then to ClickHouse as Arrow.

An accepted request is appended to the WAL (`wal.py`, `accepted.py`) and acknowledged once it is fsync'd
there. The exporter's thread takes the WAL's sealed segments in order and reads each into rows (`rows.py`);
an insert thread inserts them (under a backlog, the segments before the one being read), each under its segment's
`insert_deduplication_token`, grouped by partition (month), so a request spanning many months is stored
and a segment replayed after a crash is stored once. Only then is the segment deleted. Under a backlog the rows
of consecutive segments are inserted together until they hold `batch.max_insert_rows` spans, under the token of
their group, which the WAL records before the insert (`WriteAheadLog.record_group`).

Failures are of two kinds. The store's state (down, timing out, out of memory, too many parts):
the same rows are retried with jittered exponential backoff, and the WAL fills meanwhile until
receivers answer with retryable statuses. The rows themselves (a value ClickHouse cannot take):
the batch is halved until the refused rows are isolated; the rest are stored and those rows are
set aside as dead letters (`dead_letter.py`), so nothing behind them waits.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from ..cluster import CLUSTER_INSERT_SETTINGS
from ..prices import refresh as refresh_prices
from ..records import COLUMNS, SpanRecord
from ..store import (
    InsertSpool,
    StoreError,
    apply_schema,
    caused_by_data,
    connect,
    describe_endpoint,
    embedded_path,
    first_line,
    insert_arrow,
    sync_embedded,
)
from ..telemetry import CollectorMetrics
from .accepted import REQUESTS_SCHEMA, rows_in
from .config import ClickHouseExporterConfig
from .dead_letter import DeadLetters
from .scratch import Scratch
from .wal import Segment, WalUnavailable, WriteAheadLog

if TYPE_CHECKING:
    from ..rows import RowBuilder

__all__ = [
    "ARROW_SCHEMA",
    "FOLLOWED_AGE",
    "FOLLOWED_FOR",
    "INSERT_SETTINGS",
    "ClickHouseExporter",
    "WalUnavailable",
    "to_arrow",
]

logger = logging.getLogger(__name__)

_STRING_MAP = pa.map_(pa.string(), pa.string())
_COST = pa.decimal128(18, 12)
_TIMESTAMP = pa.timestamp("ns", tz="UTC")
_TYPES: dict[str, pa.DataType] = {
    "timestamp": _TIMESTAMP,
    "input_tokens": pa.uint64(),
    "output_tokens": pa.uint64(),
    "cache_read_tokens": pa.uint64(),
    "cache_write_tokens": pa.uint64(),
    "reasoning_tokens": pa.uint64(),
    "duration_ns": pa.uint64(),
    "input_cost": _COST,
    "cache_read_cost": _COST,
    "cache_write_cost": _COST,
    "output_cost": _COST,
    "total_cost": _COST,
    "finish_reasons": pa.list_(pa.string()),
    "tags": _STRING_MAP,
    "span_attributes": _STRING_MAP,
    "resource_attributes": _STRING_MAP,
    "content": _STRING_MAP,
    "sampling_threshold": pa.uint64(),
}
ARROW_SCHEMA = pa.schema([(name, _TYPES.get(name, pa.string())) for name in COLUMNS])
TABLE = "genai_spans"
# A retried insert carries the same insert_deduplication_token; these make the rollups skip it too.
INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1}
FOLLOWED_AGE = 1.0
"""Seconds of age at which segments are sealed while someone follows the calls: a call shows ~1 s after its span."""
FOLLOWED_FOR = 10.0
"""Seconds a follower's poll keeps segments sealed at FOLLOWED_AGE (tail polls every second by default)."""


def to_arrow(records: Sequence[SpanRecord]) -> pa.Table:
    """Rows to columns: one Python list per column, converted by Arrow in C."""
    columns = []
    for name, arrow_type in zip(COLUMNS, ARROW_SCHEMA.types, strict=True):
        values = [getattr(record, name) for record in records]
        if arrow_type == _STRING_MAP:
            values = [list(value.items()) for value in values]
        columns.append(pa.array(values, type=arrow_type))
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


def by_month(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """The rows in one part per partition (UTC month of `timestamp`), months in the order their first row came:
    one insert per month, as ClickHouse advises (an insert touching over 100 partitions is refused whole). Rows
    of two months may interleave (a batch sent around midnight on the 1st, spans of a day that began last month):
    kept in arrival order they would make an insert per row. A month keeps its rows' order; the budget ledger
    counts a segment as one batch, so the order of months within it does not matter. Each part's label (the
    month) makes its insert token, the same when a segment is read again after a crash."""
    timestamps = table.column("timestamp")
    months = pc.add(pc.multiply(pc.year(timestamps), 100), pc.month(timestamps)).to_numpy()
    if months.min() == months.max():
        return [(str(int(months[0])), table)]
    distinct, first = np.unique(months, return_index=True)
    return [
        (str(int(month)), table.take(pa.array(np.flatnonzero(months == month))))
        for month in distinct[np.argsort(first, kind="stable")]
    ]


class _GaveUp(Exception):
    """Shutdown's time ran out while the store was failing: the rows stay in the WAL."""


class ClickHouseExporter:
    def __init__(self, config: ClickHouseExporterConfig, metrics: CollectorMetrics) -> None:
        self._config = config
        self._metrics = metrics
        queue = config.queue
        self.wal = WriteAheadLog(
            Path(queue.directory) / config.database,
            int(queue.max_bytes),
            segment_rows=config.batch.max_rows,
            segment_age=config.batch.max_age,
            schema=REQUESTS_SCHEMA,
            older=(ARROW_SCHEMA,),
            rows_of=rows_in,
            recycle_bytes=None if queue.recycle_bytes is None else int(queue.recycle_bytes),
        )
        self.rows: RowBuilder | None = None
        """Turns a segment's accepted requests into rows (set by the service before `start`)."""
        self.dead_letters = DeadLetters(self.wal.directory)
        self._closing = False
        self._deadline = 0.0
        self._abort = threading.Event()  # shutdown's time is up: a retry's backoff stops waiting
        self._healthy = False
        self._failing_since: float | None = None
        self._thread: threading.Thread | None = None
        self._inserter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spanmeter-clickhouse-insert")
        self._client: Client | None = None
        self._engine: Client | None = None
        self.stored_rows = 0
        """Rows accepted by this run and done with (stored, or set aside), in acceptance order."""
        self.replayed_rows = 0
        """Rows left in the WAL by a previous run and stored by this one."""
        # Held while a batch is inserted and counted, so a reader (budgets) can take the store's sums
        # and `stored_rows` as of one moment: stored rows are then exactly the first `stored_rows` queued.
        self.insert_lock = threading.Lock()
        self._embedded_path = embedded_path(config.endpoint)
        self.scratch = Scratch(self.wal.directory, config.scratch_directory)
        """Where the engine's and the inserts' files go (exporters/scratch.py)."""
        # An embedded store reads inserts from files here (store.InsertSpool).
        self._spool = InsertSpool(self.scratch.path("inserts")) if self._embedded else None
        # On a cluster genai_spans is a Distributed table: the insert must reach the shards, token and all.
        self._insert_settings: dict[str, int | str] = {
            **INSERT_SETTINGS,
            **(CLUSTER_INSERT_SETTINGS if config.cluster else {}),
            # An embedded store's insert threads behind the receivers', as the engine's reading (engine/reader.py).
            **({"os_thread_priority": 10} if self._embedded else {}),
        }
        metrics.wal_capacity.set(int(queue.max_bytes))

    @property
    def _embedded(self) -> bool:
        return self._embedded_path is not None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the WAL (reading back what a previous run left), connect and apply the schema.

        An embedded store that cannot work fails the start loudly; a server that is down at start is
        retried in the background while the collector accepts spans into the WAL, up to its bound.
        """
        # Arrow loads its time-zone data on first use (~0.3 s): not while the first request waits.
        pa.array([0], type=pa.int64()).cast(_TIMESTAMP)
        recovered = self.wal.open()
        if self._spool is not None:
            # a killed run's insert files: their rows are in the WAL
            shutil.rmtree(self._spool.directory, ignore_errors=True)
            self._spool.directory.mkdir(parents=True)
        logger.info("scratch files in %s", self.scratch.directory)
        if self.wal.quarantined:
            self._metrics.wal_quarantined.inc(self.wal.quarantined)
        if recovered:
            logger.info(
                "write-ahead log %s: %d rows left by a previous run are stored first",
                self.wal.directory,
                sum(segment.rows for segment in recovered),
            )
        self._update_gauges()
        try:
            self._client = self._open()
        except StoreError:
            if self._embedded:
                self.wal.close()
                self.wal.unlock()
                raise
            logger.warning(
                "ClickHouse at %s is not reachable yet; will retry", describe_endpoint(self._config.endpoint)
            )
            self._failing_since = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="spanmeter-clickhouse-exporter", daemon=True)
        self._thread.start()

    def shutdown(self) -> int:
        """Store what the WAL holds, retrying for up to `shutdown_timeout`; return the rows left in the WAL
        (stored at the next start)."""
        self._deadline = time.monotonic() + self._config.shutdown_timeout
        self._closing = True
        self.wal.close()
        if self._thread is not None:
            self._thread.join(self._config.shutdown_timeout)
            self._abort.set()
            self._thread.join(5)
        if self._thread is None or not self._thread.is_alive():  # else an insert still hangs: keep the lock
            if self.wal.locked:  # the log's directory, and so its scratch directory, is this collector's
                self.scratch.remove()
            self.wal.unlock()
        left = self.wal.rows
        if left:
            logger.warning(
                "%d accepted rows are not stored yet; they stay in the write-ahead log %s and are stored "
                "at the next start",
                left,
                self.wal.directory,
            )
        self._inserter.shutdown(wait=False, cancel_futures=True)
        for client in (self._client, self._engine):
            if client is not None:
                client.close()
        return left

    # --- the receivers' side -----------------------------------------------------------------

    def follow(self) -> None:
        """Someone follows the stored calls live (`spanmeter tail` through the API): for the next
        `FOLLOWED_FOR` seconds, segments are sealed at `FOLLOWED_AGE` of age when `batch.max_age` is longer."""
        self.wal.follow(FOLLOWED_AGE, FOLLOWED_FOR)

    async def offer(self, request: pa.Table) -> None:
        """`request`: one accepted request (`accepted.request_record`). Returns once it is durable in the WAL;
        raises WalUnavailable when it cannot be."""
        await self.wal.append(request)
        self._update_gauges()

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def failing_for(self) -> float:
        """Seconds the store has been failing (0 while it works)."""
        since = self._failing_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def alive(self) -> bool:
        """The exporter and WAL threads run (liveness)."""
        running = self._thread is not None and self._thread.is_alive()
        return running and self.wal.writer_alive

    @property
    def queued_rows(self) -> int:
        return self.wal.rows

    def _update_gauges(self) -> None:
        self._metrics.queue_rows.set(self.wal.rows)
        self._metrics.wal_bytes.set(self.wal.size)
        self._metrics.wal_disk_bytes.set(self.wal.disk_bytes)

    # --- the worker thread -------------------------------------------------------------------

    def engine_client(self) -> Client:
        """A ClickHouse engine in this process to read OTLP with (`engine/`): a second handle on the embedded store,
        or one with no tables of its own beside the WAL when the store is a server. Called on the exporter's thread.
        A handle runs one call at a time; with its own, a segment's read runs in the engine while the one before it
        is inserted (under a backlog), instead of waiting for that insert's call."""
        if self._engine is None:
            endpoint = self._config.endpoint if self._embedded else f"chdb://{self.wal.directory / 'engine-store'}"
            self._engine = connect(endpoint)
        return self._engine

    def _open(self) -> Client:
        client = connect(self._config.endpoint, self._config.username, self._config.password)
        apply_schema(client, self._config.database, self._config.retention, self._config.cluster)
        try:
            refresh_prices(client, self._config.database, self._config.cluster)
        except Exception as exc:  # what-if prices are not worth refusing spans for
            logger.warning("model_prices: cannot write genai-prices' prices: %s", first_line(exc))
        if self._embedded_path is not None:
            try:  # the schema and its migrations' record, whole after a power loss
                sync_embedded(self._embedded_path)
            except OSError as exc:
                raise StoreError(f"cannot flush the embedded store at {self._embedded_path} to disk: {exc}") from exc
        self._store_ok()
        return client

    def _run(self) -> None:
        """Store segments until closed; a failure of this loop itself is logged and the loop restarted."""
        while True:
            try:
                self._drain()
                return
            except _GaveUp:
                return
            except Exception:
                logger.exception("the ClickHouse exporter failed unexpectedly; restarting it")
                self._metrics.exporter_restarts.inc()
                if self._abort.wait(1.0):
                    return

    def _drain(self) -> None:
        """Segments in order, inserted by the insert thread. With a backlog (another segment sealed already), the
        next is read into rows here while the one before it is inserted: the read's engine call runs on its own
        handle (`engine_client`) beside the insert's, and neither holds the GIL, so the Python around the read
        (the requests' files, the rows put in order, tags, redaction, pricing, duplicates) runs beside the insert
        too. Under a backlog, consecutive segments are read into one batch (`_joins`) and inserted together. At
        most one batch's rows wait for their insert."""
        inserting: Future[None] | None = None
        previous: Segment | None = None
        batch: list[tuple[Segment, pa.Table]] = []
        try:
            while True:
                if self._abort.is_set():  # shutdown's time is up: what is left stays in the WAL
                    raise _GaveUp
                segment = self.wal.take(timeout=0.5, after=previous)
                if segment is None:
                    if inserting is not None:
                        done = inserting
                        inserting = None
                        done.result()
                    elif self.wal.drained:
                        return
                    else:
                        self._retry_dead_letters()
                    continue
                batch.append((segment, self._rows_of_segment(segment)))
                previous = segment
                if self._joins(batch, self.wal.take(timeout=0, after=segment)):
                    continue  # read the next segment too: one insert for both
                if inserting is not None:
                    inserting.result()
                inserting = self._inserter.submit(self._store_batch, batch)
                batch = []
                if not self.wal.sealed_after(segment):
                    # No backlog: the next read waits for this insert, leaving a core to the receivers (with the
                    # overlap, ack p50 at 10,000 spans/s went from 3 to 10 ms: three threads wanting the GIL).
                    done = inserting
                    inserting = None
                    done.result()
        finally:
            if inserting is not None:
                wait([inserting])  # a restarted loop takes its segments again: none may still be inserting

    def _joins(self, batch: list[tuple[Segment, pa.Table]], following: Segment | None) -> bool:
        """Whether the segment sealed after the batch's last one is inserted with the batch: a member of the same
        recorded group; or, under a backlog, a segment of this run not in a group, while the batch's segments hold
        fewer than `batch.max_insert_rows` spans and their rows take less than `batch.max_insert_bytes`: a group is
        closed once it reaches either, as a segment is sealed once it reaches `max_rows` (segments hold a little
        more than that, their last request whole, so a limit that counted the next segment in would turn
        `2 * max_rows` into groups of one). Each insert costs ~0.13 s of CPU however small (the views planned, a
        part in each rollup), and larger parts are merged less often."""
        if following is None:
            return False
        first = batch[0][0]
        if first.group is not None or following.group is not None:
            return following.group is first.group
        if first.recovered or following.recovered:
            return False  # a previous run may have inserted it alone, under its own token
        limits = self._config.batch
        if sum(rows.nbytes for _, rows in batch) >= limits.max_insert_bytes:
            return False
        return sum(segment.rows for segment, _ in batch) < limits.max_insert_rows

    def _rows_of_segment(self, segment: Segment) -> pa.Table:
        table = segment.table()
        if table.schema.equals(REQUESTS_SCHEMA):  # else rows an earlier version wrote
            table = self._rows_of(segment, table)
        return table

    def _store_batch(self, batch: list[tuple[Segment, pa.Table]]) -> None:
        """On the insert thread: the rows of one segment, or of a group of them, into the store under the token
        of the segment or group, then the segments out of the WAL. A new group is recorded first (when the disk
        refuses that, its segments are inserted one by one)."""
        segments = [segment for segment, _ in batch]
        group = segments[0].group
        if group is None and len(batch) > 1:
            try:
                group = self.wal.record_group(segments)
            except OSError as exc:
                logger.warning("cannot record a group of segments; inserting them one by one: %s", exc)
                for one in batch:
                    self._store_batch([one])
                return
        self._retry_dead_letters()
        table = pa.concat_tables([rows for _, rows in batch]) if len(batch) > 1 else batch[0][1]
        recovered = segments[0].recovered
        if table.num_rows:
            token = group.token if group is not None else segments[0].token
            for month, part in by_month(table):
                self._store(part, f"{token}-{month}", counted=not recovered)
            if self._embedded_path is not None:
                sync_embedded(self._embedded_path)  # the parts on disk before the WAL lets their rows go
        for segment in segments:
            self.wal.release(segment)
        if group is not None:
            self.wal.forget_group(group)
        if recovered:
            self.replayed_rows += table.num_rows
        self._update_gauges()

    def _rows_of(self, segment: Segment, requests: pa.Table) -> pa.Table:
        """The segment's requests read into rows; spans refused on the way are recorded where users look."""
        assert self.rows is not None, "the service sets the row builder before start"
        built = self.rows.build(requests, counted=not segment.recovered)
        refused = built.rejections
        if refused.count:
            logger.warning(
                "%d accepted spans cannot be stored (table ingest_rejections): %s", refused.count, refused.message
            )
            self._record_rejection(f"{segment.token}-invalid", refused.count, refused.message, refused.span_ids)
        return built.table

    def _retry_dead_letters(self) -> None:
        for letter_id, table in self.dead_letters.retries():
            logger.info("retrying %d rows set aside as %s", table.num_rows, letter_id)
            for month, part in by_month(table):
                self._store(part, f"{letter_id}-retry-{month}", counted=False)
            self.dead_letters.retried(letter_id)

    def _store(self, table: pa.Table, token: str, counted: bool) -> None:
        """Insert `table` under `token`; rows ClickHouse refuses are isolated by halving and set aside."""
        pending = [(table, token)]
        while pending:
            part, part_token = pending.pop(0)
            refusal = self._insert(part, part_token, counted)
            if refusal is None:
                continue
            if part.num_rows > 1:
                half = part.num_rows // 2
                pending[:0] = [(part.slice(0, half), f"{part_token}.0"), (part.slice(half), f"{part_token}.1")]
            else:
                self._set_aside(part, part_token, refusal, counted)

    def _insert(self, table: pa.Table, token: str, counted: bool) -> Exception | None:
        """Insert one batch, retrying what retrying can fix; the error when the rows themselves are refused.

        Raises _GaveUp when shutdown's time runs out with the store still failing.
        """
        delay = self._config.retry.initial_interval
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                if self._client is None:
                    self._client = self._open()
                with self.insert_lock:
                    insert_arrow(
                        self._client,
                        f"{self._config.database}.{TABLE}",
                        table,
                        self._insert_settings | {"insert_deduplication_token": token},
                        self._spool,
                    )
                    if counted:
                        self.stored_rows += table.num_rows
            except Exception as exc:
                if self._client is not None and caused_by_data(exc):
                    return exc
                self._store_failed()
                wait = random.uniform(delay / 2, delay)  # jitter: collectors sharing a store do not retry in step
                logger.warning(
                    "insert of %d rows failed (attempt %d), retrying in %.1fs: %s",
                    table.num_rows,
                    attempt,
                    wait,
                    first_line(exc),
                )
                if self._closing:
                    wait = min(wait, max(0.0, self._deadline - time.monotonic()))
                if self._abort.wait(wait) or (self._closing and time.monotonic() >= self._deadline):
                    raise _GaveUp from None
                delay = min(delay * 2, self._config.retry.max_interval)
                continue
            self._store_ok()
            self._metrics.insert_seconds.observe(time.perf_counter() - started)
            self._metrics.batch_rows.observe(table.num_rows)
            self._metrics.spans_stored.inc(table.num_rows)
            return None

    def _set_aside(self, table: pa.Table, letter_id: str, refusal: Exception, counted: bool) -> None:
        letter = self.dead_letters.put(table, letter_id, first_line(refusal))
        if counted:
            with self.insert_lock:
                self.stored_rows += table.num_rows
        self._metrics.spans_dead_lettered.inc(table.num_rows)
        logger.error(
            "ClickHouse refused %d rows (span %s): %s; set aside in %s (`spanmeter rejected list`)",
            table.num_rows,
            ", ".join(letter.span_ids) or "?",
            letter.error,
            self.dead_letters.rejected,
        )
        self._record_rejection(letter.id, letter.rows, letter.error, letter.span_ids)

    def _record_rejection(self, letter_id: str, rows: int, error: str, span_ids: list[str]) -> None:
        """A row in `ingest_rejections` for the Ingestion dashboard; the files stay the record of truth."""
        try:
            assert self._client is not None
            self._client.insert(
                f"{self._config.database}.ingest_rejections",
                [[letter_id, rows, error, span_ids]],
                column_names=["letter_id", "rows", "error", "span_ids"],
            )
        except Exception as exc:
            logger.warning("cannot record the rejection %s in ClickHouse: %s", letter_id, first_line(exc))

    def _store_ok(self) -> None:
        self._healthy = True
        self._failing_since = None

    def _store_failed(self) -> None:
        self._healthy = False
        self._metrics.store_errors.inc()
        if self._failing_since is None:
            self._failing_since = time.monotonic()
