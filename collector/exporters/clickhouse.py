"""The `clickhouse` exporter: batches rows and bulk-inserts them as Arrow.

Accepted rows wait in a bounded in-memory queue, already converted to Arrow by the thread that accepted
them (one request at a time, so no thread holds the GIL for a whole batch's conversion and stalls the
receivers). A background thread takes a batch when it is full
(`batch.max_rows`) or old enough (`batch.max_age`) and inserts it; when the store fails it retries
the same batch with backoff under the same `insert_deduplication_token`, so a retry whose first
attempt did land is not stored twice. While it retries the queue fills, and once full `offer`
refuses, which the receivers turn into a retryable status: nothing accepted is dropped silently.
Rows still unstored when the collector stops (the store down for all of `shutdown_timeout`) are
written to the spool directory as Arrow files, each under its batch's token, and inserted first
at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from ..config import ClickHouseExporterConfig
from ..records import COLUMNS, SpanRecord
from ..store import StoreError, apply_schema, connect, describe_endpoint, first_line
from ..telemetry import CollectorMetrics

__all__ = ["ARROW_SCHEMA", "INSERT_SETTINGS", "ClickHouseExporter", "to_arrow"]

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
}
ARROW_SCHEMA = pa.schema([(name, _TYPES.get(name, pa.string())) for name in COLUMNS])
TABLE = "genai_spans"
# A retried insert carries the same insert_deduplication_token; these make the rollups skip it too.
INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1}


def to_arrow(records: Sequence[SpanRecord]) -> pa.Table:
    """Rows to columns: one Python list per column, converted by Arrow in C."""
    columns = []
    for name, arrow_type in zip(COLUMNS, ARROW_SCHEMA.types, strict=True):
        values = [getattr(record, name) for record in records]
        if arrow_type == _STRING_MAP:
            values = [list(value.items()) for value in values]
        columns.append(pa.array(values, type=arrow_type))
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


class ClickHouseExporter:
    def __init__(self, config: ClickHouseExporterConfig, metrics: CollectorMetrics) -> None:
        self._config = config
        self._metrics = metrics
        self._capacity = config.queue.max_rows
        # Accepted rows, already as Arrow: built by the receiving thread per request, so the exporter
        # thread never holds the GIL for a whole batch's conversion (which would stall the receivers).
        self._pending: deque[pa.Table] = deque()
        self._pending_rows = 0
        self._in_flight = 0
        self._oldest: float | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._closed = threading.Event()  # wakes a retry's backoff early at shutdown
        self._healthy = False
        self._thread: threading.Thread | None = None
        self._client: Client | None = None
        self.stored_rows = 0
        self.replayed_rows = 0
        self._unstored: list[tuple[pa.Table, str]] = []  # batches given up on at shutdown, with their tokens
        self._current: tuple[pa.Table, str] | None = None  # the batch being inserted
        # Held while a batch is inserted and counted, so a reader (budgets) can take the store's sums
        # and `stored_rows` as of one moment: stored rows are then exactly the first `stored_rows` queued.
        self.insert_lock = threading.Lock()
        metrics.queue_capacity.set(self._capacity)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and apply the schema now, so a store that cannot work fails the start loudly.

        A server that is down at start is retried in the background instead: the collector accepts
        spans meanwhile, up to its queue's capacity.
        """
        # Arrow loads its time-zone data on first use (~0.3 s): not while the first request waits.
        pa.array([0], type=pa.int64()).cast(_TIMESTAMP)
        try:
            self._client = self._open()
        except StoreError:
            if self._config.endpoint.startswith("chdb://"):
                raise
            logger.warning(
                "ClickHouse at %s is not reachable yet; will retry", describe_endpoint(self._config.endpoint)
            )
        self._thread = threading.Thread(target=self._run, name="spanmeter-clickhouse-exporter", daemon=True)
        self._thread.start()

    def shutdown(self) -> int:
        """Flush what is held, retrying for up to `shutdown_timeout`; return rows that could not be stored."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._closed.set()
        if self._thread is not None:
            self._thread.join(self._config.shutdown_timeout + 5)
        with self._cond:
            if self._thread is not None and self._thread.is_alive() and self._current is not None:
                self._unstored.append(self._current)  # an insert still hanging: its token keeps a late landing single
            if self._pending:
                self._unstored.append((pa.concat_tables(self._pending), uuid.uuid4().hex))
                self._pending.clear()
                self._pending_rows = 0
        lost = self._spool(self._unstored)
        if lost:
            self._metrics.spans_dropped.labels("store_unavailable_at_shutdown").inc(lost)
            logger.error("%d accepted rows could not be stored or spooled before shutdown", lost)
        if self._client is not None:
            self._client.close()
        return lost

    def _spool(self, batches: list[tuple[pa.Table, str]]) -> int:
        """Write unstored batches to the spool directory; return the rows that could not be written."""
        lost = 0
        spool = Path(self._config.spool_dir) if self._config.spool_dir else None
        for table, token in batches:
            try:
                if spool is None:
                    raise OSError("no spool_dir configured")
                spool.mkdir(parents=True, exist_ok=True)
                # Named by database: several collectors (or the demo) may share a spool directory.
                name = f"{self._config.database}--{token}.arrow"
                partial = spool / f"{name}.part"
                with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)
                partial.rename(spool / name)  # complete files only: a crash leaves a .part
                logger.warning(
                    "spooled %d unstored rows to %s; they are stored at the next start", table.num_rows, spool
                )
            except OSError as exc:
                logger.error("cannot spool %d rows: %s", table.num_rows, exc)
                lost += table.num_rows
        return lost

    def _replay_spool(self) -> None:
        """Store what a previous run spooled, each file under the token its batch had."""
        if not self._config.spool_dir:
            return
        prefix = f"{self._config.database}--"
        for path in sorted(Path(self._config.spool_dir).glob(f"{prefix}*.arrow")):
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
            if not self._insert(table, path.name.removeprefix(prefix).removesuffix(".arrow")):
                return  # closing with the store still down: the file stays for next time
            path.unlink()
            self.replayed_rows += table.num_rows
            logger.info("stored %d rows spooled by a previous run (%s)", table.num_rows, path.name)

    # --- the receivers' side -----------------------------------------------------------------

    def offer(self, records: Sequence[SpanRecord]) -> bool:
        """Queue rows for storage; False (nothing queued) when they do not fit."""
        if not records:
            return True
        with self._cond:
            if self._closing or self._pending_rows + self._in_flight + len(records) > self._capacity:
                return False
        table = to_arrow(records)
        with self._cond:
            if self._closing:
                return False
            was_empty = not self._pending
            if was_empty:
                self._oldest = time.monotonic()
            self._pending.append(table)
            self._pending_rows += table.num_rows
            self._metrics.queue_rows.set(self._pending_rows + self._in_flight)
            # Wake the worker to start the batch's age clock, or because a batch is full.
            if was_empty or self._pending_rows >= self._config.batch.max_rows:
                self._cond.notify()
        return True

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def queued_rows(self) -> int:
        with self._cond:
            return self._pending_rows + self._in_flight

    # --- the worker thread -------------------------------------------------------------------

    def _open(self) -> Client:
        client = connect(self._config.endpoint, self._config.username, self._config.password)
        apply_schema(client, self._config.database)
        self._healthy = True
        return client

    def _take_batch(self) -> pa.Table | None:
        """Wait until a batch is due and take up to `batch.max_rows` rows, in order; None when closing with
        nothing left."""
        batch = self._config.batch
        with self._cond:
            while True:
                if self._pending:
                    age = time.monotonic() - (self._oldest or 0.0)
                    if self._closing or self._pending_rows >= batch.max_rows or age >= batch.max_age:
                        break
                    self._cond.wait(batch.max_age - age)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            parts: list[pa.Table] = []
            room = batch.max_rows
            while self._pending and room > 0:
                table = self._pending.popleft()
                if table.num_rows > room:  # split (zero-copy): the rest stays first in line
                    self._pending.appendleft(table.slice(room))
                    table = table.slice(0, room)
                parts.append(table)
                room -= table.num_rows
            size = batch.max_rows - room
            self._pending_rows -= size
            self._in_flight = size
            self._oldest = time.monotonic() if self._pending else None
        return pa.concat_tables(parts)

    def _run(self) -> None:
        self._replay_spool()
        while True:
            table = self._take_batch()
            if table is None:
                return
            token = uuid.uuid4().hex
            self._current = (table, token)
            stored = self._insert(table, token, counted=True)
            with self._cond:
                self._current = None
                self._in_flight = 0
                self._metrics.queue_rows.set(self._pending_rows)
                if not stored:  # closing and the store stayed down: shutdown() spools the rest
                    self._unstored.append((table, token))
                    return

    def _insert(self, table: pa.Table, token: str, counted: bool = False) -> bool:
        """Insert one batch, retrying with backoff; False when closing and the store stayed down.

        `counted`: the batch came from this run's queue, so `stored_rows` (queue order) includes it.
        """
        delay = self._config.retry.initial_interval
        deadline: float | None = None
        while True:
            try:
                started = time.perf_counter()
                if self._client is None:
                    self._client = self._open()
                with self.insert_lock:
                    self._client.insert_arrow(
                        f"{self._config.database}.{TABLE}",
                        table,
                        settings=INSERT_SETTINGS | {"insert_deduplication_token": token},
                    )
                    if counted:
                        self.stored_rows += table.num_rows
            except Exception as exc:
                self._healthy = False
                self._metrics.store_errors.inc()
                logger.warning(
                    "insert of %d rows failed, retrying in %.1fs: %s", table.num_rows, delay, first_line(exc)
                )
                if self._closing:
                    deadline = deadline or time.monotonic() + self._config.shutdown_timeout
                    if time.monotonic() >= deadline:
                        return False
                self._closed.wait(delay)
                delay = min(delay * 2, self._config.retry.max_interval)
                continue
            self._healthy = True
            self._metrics.insert_seconds.observe(time.perf_counter() - started)
            self._metrics.batch_rows.observe(table.num_rows)
            self._metrics.spans_stored.inc(table.num_rows)
            return True
