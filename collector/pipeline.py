"""A traces pipeline: receivers hand it OTLP requests; it runs the processors and queues rows
for the exporter. Also routes metrics and logs to forwarders."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .decoding import RecordProcessor, SpanDecoder
from .exporters import ClickHouseExporter, OtlpForwarder
from .exporters.wal import WalUnavailable, WalWriteError
from .keys import Principal
from .processors import DecodeResult
from .processors.dedupe import CallDeduplicator
from .processors.genai import DEFAULT_PROJECT, PROJECT_ATTRIBUTE, GenAIPrefilter
from .records import SpanRecord
from .telemetry import CollectorMetrics

__all__ = ["Backpressure", "ExportOutcome", "RecordProcessor", "TelemetryRouter", "TracesPipeline"]


class Backpressure(Exception):
    """The collector cannot take this request now; the sender should retry after `retry_after` s."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class ExportOutcome:
    """What the receiver reports back: OTLP's partial_success."""

    rejected: int
    message: str


class TracesPipeline:
    def __init__(
        self,
        decoder: SpanDecoder,
        processors: Sequence[RecordProcessor],
        exporter: ClickHouseExporter,
        forwarders: Sequence[OtlpForwarder],
        metrics: CollectorMetrics,
        retention_days: int = 0,
    ) -> None:
        """`retention_days`: the store's row TTL (0: none); older spans would expire as they are inserted."""
        self._retention_ns = retention_days * 86_400 * 10**9
        self._decoder = decoder
        self._processors = processors  # those that keep state across requests (budgets): in this process
        self._exporter = exporter
        self._forwarders = forwarders
        self._metrics = metrics
        # Processors that count what was accepted (budgets) hear of rows once they are queued.
        self._on_queued = [hook for p in processors if (hook := getattr(p, "queued", None)) is not None]
        self._calls = CallDeduplicator()
        self._prefilter = GenAIPrefilter()

    async def consume(
        self, request: ExportTraceServiceRequest, body: bytes | None = None, principal: Principal | None = None
    ) -> ExportOutcome:
        """Decode, price and tag; returns once the rows are durable in the WAL. Raises Backpressure when they
        cannot be kept now (the sender retries). `principal`: the sender's key, when keys are required."""
        if body is None:  # OTLP/JSON: markers are looked for in the protobuf encoding, also forwarded
            body = request.SerializeToString()
        decoded = await self._decode(request, body)
        if principal is not None and not principal.admin:
            decoded.records = _in_project_of(principal, decoded)
        if self._retention_ns:
            decoded.records = _within_retention(time.time_ns() - self._retention_ns, decoded)
        admission = self._calls.filter(decoded.records)
        records, duplicates = admission.kept, admission.duplicates
        for processor in self._processors:
            processor.process(records)
        self._calls.remember(admission)
        try:
            await self._exporter.offer(records)
        except WalUnavailable as exc:
            self._calls.forget(admission)
            reason = "wal_write_error" if isinstance(exc, WalWriteError) else "queue_full"
            self._metrics.spans_refused.labels(reason).inc(len(records))
            if isinstance(exc, WalWriteError):
                self._metrics.wal_write_errors.inc()
            raise Backpressure(f"{exc}; retry later") from None
        for hook in self._on_queued:
            hook(records)
        metrics = self._metrics
        metrics.spans_received.inc(
            len(decoded.records) + decoded.rejected + decoded.non_genai + decoded.not_model_calls
        )
        for convention, count in decoded.by_convention.items():
            metrics.genai_spans.labels(convention).inc(count)
        if decoded.rejected:
            metrics.spans_rejected.labels("invalid").inc(decoded.rejected)
        if decoded.tags_capped:
            metrics.tags_capped.inc(decoded.tags_capped)
        if self._forwarders:
            for forwarder in self._forwarders:
                forwarder.forward("traces", body)
        else:
            if decoded.non_genai:
                metrics.spans_dropped.labels("not_genai").inc(decoded.non_genai)
            if decoded.not_model_calls:
                metrics.spans_dropped.labels("not_a_model_call").inc(decoded.not_model_calls)
        if duplicates:
            metrics.spans_dropped.labels("duplicate_call").inc(duplicates)
        return ExportOutcome(decoded.rejected, decoded.message)

    async def _decode(self, request: ExportTraceServiceRequest, body: bytes) -> DecodeResult:
        """Only the spans that may be GenAI reach the decoder (`GenAIPrefilter`); the others are counted as not
        GenAI, with no work per attribute: most of an app's whole OTLP stream is ordinary spans."""
        subset, skipped = self._prefilter.split(request, body)
        if subset is None:
            decoded = DecodeResult()
        else:
            decoded = await self._decoder.decode(subset, body if subset is request else None)
        decoded.non_genai += skipped
        return decoded


def _in_project_of(principal: Principal, decoded: DecodeResult) -> list[SpanRecord]:
    """A row's project is its key's: a span claiming another project (`spanmeter.project`) is rejected."""
    kept = []
    for record in decoded.records:
        if record.project in (DEFAULT_PROJECT, principal.project):
            record.project = principal.project
            kept.append(record)
        else:
            decoded.reject(
                f"span {record.span_id}: resource attribute {PROJECT_ATTRIBUTE}={record.project!r} is not the "
                f"project of key {principal.key_id} ({principal.project!r})"
            )
    return kept


def _within_retention(oldest_ns: int, decoded: DecodeResult) -> list[SpanRecord]:
    """A span older than the store keeps rows would be deleted as it is inserted: refuse it instead of
    acknowledging what is not kept."""
    kept = [record for record in decoded.records if record.timestamp >= oldest_ns]
    if len(kept) < len(decoded.records):
        for record in decoded.records:
            if record.timestamp < oldest_ns:
                decoded.reject(
                    f"span {record.span_id}: start_time_unix_nano {record.timestamp} is older than the store keeps "
                    "rows (exporters.clickhouse.retention.rows)"
                )
    return kept


class TelemetryRouter:
    """Metrics and logs: counted, and forwarded where an otlp exporter is configured."""

    def __init__(self, forwarders: dict[str, Sequence[OtlpForwarder]], metrics: CollectorMetrics) -> None:
        self._forwarders = forwarders
        self._metrics = metrics

    def consume(self, signal: str, items: int, body: bytes) -> None:
        self._metrics.items_received.labels(signal).inc(items)
        for forwarder in self._forwarders.get(signal, ()):
            forwarder.forward(signal, body)
