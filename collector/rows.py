"""Accepted requests become `genai_spans` rows, a write-ahead-log segment at a time, after the senders were answered.

A receiver answers a request once its bytes (the spans that may be GenAI, `GenAIPrefilter`) are durable in the
write-ahead log. Everything done per span happens here, on the exporter's thread, for a whole segment at once.

With the engine (`processors.genai.reader: engine`, the default), ClickHouse reads the segment's requests into
columns with one query (`engine/`), and tags, redaction, pricing, duplicate calls and budgets run on those columns.
Requests the engine leaves out (a span it would not read exactly as the Python reader does) are read by the
Python reader (`decoding.py`: `genai`, `pricing`, `tags` per record), the reference the engine is tested against,
and their rows join the others in acceptance order. With `reader: python`, every request is read that way.

The checks that depend on the sender (its key's project) or the store (its row TTL) run on the rows of both. A span
refused here is named, with why, in the store's `ingest_rejections` table and the log: the sender was already
answered. Each request is read as of the moment it arrived, so a segment read again after a crash gives the same
rows, inserted under the same token: stored once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from .decoding import SpanReader
from .engine import EngineReader
from .engine.reader import BATCH_SCHEMA, EXTRA_COLUMNS
from .exporters.accepted import rows_in
from .exporters.clickhouse import to_arrow
from .processors import DecodeResult, GenAIProcessor, PricingProcessor, TagsProcessor
from .processors.columnar_pricing import ColumnarPricer
from .processors.columnar_redaction import redact_map_column
from .processors.config import GenAIProcessorConfig, PricingProcessorConfig, TagsProcessorConfig
from .processors.dedupe import CallDeduplicator
from .processors.genai import ATTRIBUTE_REDACTION_LENGTH, DEFAULT_PROJECT, PROJECT_ATTRIBUTE
from .records import SpanRecord
from .store import first_line
from .telemetry import CollectorMetrics

__all__ = ["Built", "ColumnStages", "Rejections", "RowBuilder"]

logger = logging.getLogger(__name__)

_MAX_MESSAGES = 5  # reasons kept per segment in ingest_rejections (all are counted)
_MAX_SPAN_IDS = 100  # span ids of refused spans kept per segment


@dataclass
class Rejections:
    """Spans of one segment refused while reading it: how many, the first reasons, some of their ids."""

    count: int = 0
    messages: list[str] = field(default_factory=list)
    span_ids: list[str] = field(default_factory=list)

    def add(self, span_id: str, message: str) -> None:
        self.count += 1
        if len(self.messages) < _MAX_MESSAGES:
            self.messages.append(message)
        if span_id and len(self.span_ids) < _MAX_SPAN_IDS:
            self.span_ids.append(span_id)

    def add_result(self, result: DecodeResult) -> None:
        """The reference reader's refusals (it keeps the first five messages; their span ids lead them)."""
        self.count += result.rejected
        self.messages.extend(result.errors[: max(0, _MAX_MESSAGES - len(self.messages))])
        for error in result.errors:
            span_id = error.removeprefix("span ").split(" ", 1)[0].rstrip(":")
            if len(span_id) == 16 and len(self.span_ids) < _MAX_SPAN_IDS:
                self.span_ids.append(span_id)

    @property
    def message(self) -> str:
        more = self.count - len(self.messages)
        return "; ".join(self.messages) + (f" (and {more} more)" if more > 0 else "")


@dataclass
class Built:
    """A segment's rows (ARROW_SCHEMA), and the spans refused while reading it."""

    table: pa.Table
    rejections: Rejections


class ColumnStages:
    """The engine reader and the per-row processors' columnar twins, for one pipeline's configuration."""

    def __init__(
        self,
        genai: GenAIProcessorConfig,
        pricing: PricingProcessorConfig,
        tags: TagsProcessorConfig | None,
        scratch: Path,
        client: Callable[[], Client],
    ) -> None:
        """`scratch`: where the engine writes a batch's requests for ClickHouse to read; `client`: the ClickHouse
        (chDB) client that reads them, asked for at the first batch."""
        self._genai = genai
        self._scratch = scratch
        self._client = client
        self._engine: EngineReader | None = None
        self.min_spans = genai.engine_min_spans
        self.pricer = ColumnarPricer(PricingProcessor(pricing))
        self.tags = TagsProcessor(tags, genai) if tags is not None else None
        self.redactor = GenAIProcessor(genai).attribute_redactor

    @property
    def engine(self) -> EngineReader:
        if self._engine is None:
            self._engine = EngineReader(self._genai, self._client(), self._scratch)
        return self._engine


class RowBuilder:
    """Reads a segment's requests into rows; processors that keep state (budgets) see them in acceptance order."""

    def __init__(
        self,
        reader: SpanReader,
        processors: Sequence[object],
        metrics: CollectorMetrics,
        retention_days: int = 0,
        columns: ColumnStages | None = None,
    ) -> None:
        """`reader`: the reference (Python) reader; `columns`: the engine and columnar stages (None: the reference
        reads everything). `processors`: those keeping state across segments (budgets), told of the rows queued.
        `retention_days`: the store's row TTL (0: none); older spans would expire as they are inserted."""
        self._reader = reader
        self._columns = columns
        self._on_queued = [hook for p in processors if (hook := getattr(p, "queued_table", None)) is not None]
        self._metrics = metrics
        self._retention_ns = retention_days * 86_400 * 10**9
        self._calls = CallDeduplicator()
        self._stages_lock = threading.Lock()  # a reload swaps the reader and stages between segments

    def reconfigure(self, reader: SpanReader, columns: ColumnStages | None) -> SpanReader:
        """Read the next segments with these (a reloaded configuration); returns the reader they replace, to stop."""
        with self._stages_lock:
            previous, self._reader, self._columns = self._reader, reader, columns
        return previous

    def build(self, requests: pa.Table, counted: bool) -> Built:
        """The rows of `requests` (accepted.REQUESTS_SCHEMA). `counted`: this run accepted them (budgets hear of
        the rows); False for a segment a previous run left."""
        with self._stages_lock:
            return self._build(requests, counted)

    def _build(self, requests: pa.Table, counted: bool) -> Built:
        bodies = requests.column("body")  # read by the engine where they are; as bytes only for the reference
        received = np.asarray(requests.column("received_ns").to_numpy(), dtype=np.int64)
        latest = [self._reader.latest_accepted(int(at)) for at in received]
        rejections = Rejections()
        counts = DecodeResult()
        parts: list[pa.Table] = []
        fallback = list(range(len(bodies)))
        counted_by_engine: set[int] = set()
        if self._columns is not None and rows_in(requests) >= self._columns.min_spans:
            engine_rows, fallback, counted_by_engine = self._read_with_engine(bodies, latest, counts, rejections)
            parts.append(engine_rows)
        if fallback:
            parts.append(self._read_with_reference(bodies, latest, fallback, counted_by_engine, counts, rejections))
        table = _in_acceptance_order(parts)
        table = self._check_sender_and_age(table, requests, received, rejections)
        kept, duplicates = self._calls.filter_table(table)
        self._count(table, counts, rejections, duplicates)
        if not kept.all():
            table = table.filter(pa.array(kept))
        if counted:
            for hook in self._on_queued:
                hook(table)
        return Built(table.drop_columns(list(EXTRA_COLUMNS)), rejections)

    def _read_with_engine(
        self, bodies: pa.ChunkedArray, latest: list[int], counts: DecodeResult, rejections: Rejections
    ) -> tuple[pa.Table, list[int], set[int]]:
        """Rows the engine read, tagged, redacted and priced on columns; the requests left to the reference; and
        those of them whose ordinary and wrapper spans the engine has counted (read, then left for their tags)."""
        assert self._columns is not None
        columns = self._columns
        try:
            batch = columns.engine.read(bodies, latest)
        except Exception as exc:  # the engine's own failure must not hold up what the reference can read
            logger.warning(
                "the engine could not read %d requests; the Python reader reads them: %s", len(bodies), first_line(exc)
            )
            self._metrics.engine_failures.inc()
            return BATCH_SCHEMA.empty_table(), list(range(len(bodies))), set()
        fallback = set(batch.fallback)
        untagged_requests: set[int] = set()
        table = batch.table
        if columns.tags is not None and table.num_rows:
            table, untagged = columns.tags.process_table(table)
            if untagged.any():  # those rows' requests are read by the reference instead
                requests = table.column("request").to_numpy()
                untagged_requests = {int(r) for r in np.unique(requests[untagged])}
                fallback |= untagged_requests
        if fallback and table.num_rows:
            table = table.filter(pc.invert(pc.is_in(table.column("request"), pa.array(sorted(fallback), pa.int32()))))
        if columns.redactor is not None and table.num_rows:
            for name in ("span_attributes", "resource_attributes"):
                redacted = redact_map_column(table.column(name), columns.redactor, ATTRIBUTE_REDACTION_LENGTH)
                table = table.set_column(table.schema.get_field_index(name), name, redacted)
        priced = columns.pricer.price(table, table.column("has_usage").to_numpy(zero_copy_only=False))
        table = priced.table
        if priced.rejections:
            span_ids = table.column("span_id")
            for row, reason in sorted(priced.rejections.items()):
                span_id = span_ids[row].as_py()
                rejections.add(span_id, f"span {span_id}: {reason}")
            keep = np.ones(table.num_rows, dtype=bool)
            keep[list(priced.rejections)] = False
            table = table.filter(pa.array(keep))
        if fallback:
            self._metrics.engine_fallback_requests.inc(len(fallback))
        # Spans not GenAI, and wrappers, of the requests the engine read (the reference counts its own).
        counts.non_genai += batch.non_genai
        counts.not_model_calls += batch.not_model_calls
        return table, sorted(fallback), untagged_requests

    def _read_with_reference(
        self,
        bodies: pa.ChunkedArray,
        latest: list[int],
        indexes: list[int],
        counted: set[int],
        counts: DecodeResult,
        rejections: Rejections,
    ) -> pa.Table:
        """The rows of requests `indexes`; the ordinary and wrapper spans of those in `counted` were counted
        already."""
        results = self._reader.read([bodies[i].as_py() for i in indexes], [latest[i] for i in indexes])
        records: list[SpanRecord] = []
        owners: list[int] = []
        for index, result in zip(indexes, results, strict=True):
            records.extend(result.records)
            owners.extend([index] * len(result.records))
            rejections.add_result(result)
            counts.tags_capped += result.tags_capped
            if index not in counted:
                counts.non_genai += result.non_genai
                counts.not_model_calls += result.not_model_calls
        return _with_extras(to_arrow(records), records, owners)

    def _check_sender_and_age(
        self, table: pa.Table, requests: pa.Table, received: npt.NDArray[np.int64], rejections: Rejections
    ) -> pa.Table:
        """A row's project is its sender key's (a span claiming another is refused); a span older than the store
        keeps rows is refused rather than deleted as it is inserted."""
        if not table.num_rows:
            return table
        owner = table.column("request").to_numpy()
        allowed = requests.column("project").take(pa.array(owner))
        keyed = pc.is_valid(allowed)
        claimed = table.column("project")
        foreign = pc.and_(keyed, pc.and_(pc.not_equal(claimed, DEFAULT_PROJECT), pc.not_equal(claimed, allowed)))
        refuse = np.asarray(foreign.to_numpy(zero_copy_only=False), dtype=bool)
        if self._retention_ns:
            oldest = received[owner] - self._retention_ns
            timestamps = table.column("timestamp").cast(pa.int64()).to_numpy()
            old = timestamps < oldest
        else:
            old = np.zeros(table.num_rows, dtype=bool)
        if refuse.any() or old.any():
            span_ids = table.column("span_id").to_pylist()
            for row in np.flatnonzero(refuse | old):
                span_id = span_ids[row]
                if refuse[row]:
                    rejections.add(
                        span_id,
                        f"span {span_id}: resource attribute {PROJECT_ATTRIBUTE}={claimed[row].as_py()!r} is not the "
                        f"project of the sender's key ({allowed[row].as_py()!r})",
                    )
                else:
                    rejections.add(
                        span_id,
                        f"span {span_id}: start_time_unix_nano {timestamps[row]} is older than the store keeps "
                        "rows (exporters.clickhouse.retention.rows)",
                    )
            table = table.filter(pa.array(~(refuse | old)))
            allowed = allowed.filter(pa.array(~(refuse | old)))
            keyed = pc.is_valid(allowed)
        if pc.any(keyed).as_py():
            projects = pc.if_else(keyed, allowed, table.column("project"))
            table = table.set_column(table.schema.get_field_index("project"), "project", projects)
        return table

    def _count(self, table: pa.Table, counts: DecodeResult, rejections: Rejections, duplicates: int) -> None:
        """`table`: the rows read and not refused, duplicates included (as `genai_spans` counts them)."""
        metrics = self._metrics
        if table.num_rows:
            for entry in pc.value_counts(table.column("convention")):
                metrics.genai_spans.labels(entry["values"].as_py()).inc(entry["counts"].as_py())
        if rejections.count:
            metrics.spans_rejected.labels("invalid").inc(rejections.count)
        if counts.tags_capped:
            metrics.tags_capped.inc(counts.tags_capped)
        if counts.non_genai:
            metrics.spans_dropped.labels("not_genai").inc(counts.non_genai)
        if counts.not_model_calls:
            metrics.spans_dropped.labels("not_a_model_call").inc(counts.not_model_calls)
        if duplicates:
            metrics.spans_dropped.labels("duplicate_call").inc(duplicates)


def _with_extras(table: pa.Table, records: list[SpanRecord], owners: list[int]) -> pa.Table:
    """The reference's rows with the engine's extra columns (has_usage, response_id, request)."""
    return (
        table.append_column("has_usage", pa.array([r.has_usage for r in records], pa.bool_()))
        .append_column("response_id", pa.array([r.response_id for r in records], pa.string()))
        .append_column("request", pa.array(owners, pa.int32()))
    )


def _in_acceptance_order(parts: list[pa.Table]) -> pa.Table:
    """The engine's rows and the reference's, by request (each part keeps its requests' span order)."""
    parts = [part.cast(BATCH_SCHEMA) if part.schema != BATCH_SCHEMA else part for part in parts if part.num_rows]
    if not parts:
        return BATCH_SCHEMA.empty_table()
    if len(parts) == 1:
        return parts[0]
    table = pa.concat_tables(parts)
    order = np.argsort(table.column("request").to_numpy(), kind="stable")
    return table.take(pa.array(order))
