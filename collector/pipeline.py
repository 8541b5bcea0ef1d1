"""A traces pipeline: receivers hand it OTLP requests, it keeps their GenAI spans in the exporter's write-ahead
log and answers. Also routes metrics and logs to forwarders."""

from __future__ import annotations

from collections.abc import Sequence

from .exporters import ClickHouseExporter, OtlpForwarder
from .exporters.accepted import request_record
from .exporters.wal import WalUnavailable, WalWriteError
from .keys import Principal
from .processors.prefilter import GenAIPrefilter, Split
from .telemetry import CollectorMetrics

__all__ = ["Backpressure", "TelemetryRouter", "TracesPipeline"]


class Backpressure(Exception):
    """The collector cannot take this request now; the sender should retry after `retry_after` s."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TracesPipeline:
    """Accepts OTLP trace requests: the spans that may be GenAI are made durable in the write-ahead log, then
    the request is answered; they become rows later, a segment at a time (`rows.RowBuilder`). Ordinary spans are
    set aside from the bytes (`GenAIPrefilter`) with no work per attribute: most of an app's stream is such."""

    def __init__(
        self, exporter: ClickHouseExporter, forwarders: Sequence[OtlpForwarder], metrics: CollectorMetrics
    ) -> None:
        self._exporter = exporter
        self._forwarders = forwarders
        self._metrics = metrics
        self.prefilter = GenAIPrefilter()
        """What receivers split each request with, before `consume`."""

    async def consume(self, split: Split, body: bytes, principal: Principal | None = None) -> None:
        """Returns once the request's GenAI spans are durable; raises Backpressure when they cannot be kept now
        (the sender retries). `split`: the request (`body`, protobuf-encoded) parted by `prefilter`; `principal`:
        the sender's key, when keys are required."""
        metrics = self._metrics
        spans, skipped = split.spans, split.skipped
        if split.kept is not None:
            project = principal.project if principal is not None and not principal.admin else None
            try:
                await self._exporter.offer(request_record(split.kept, project, spans - skipped))
            except WalUnavailable as exc:
                reason = "wal_write_error" if isinstance(exc, WalWriteError) else "queue_full"
                metrics.spans_refused.labels(reason).inc(spans)
                if isinstance(exc, WalWriteError):
                    metrics.wal_write_errors.inc()
                raise Backpressure(f"{exc}; retry later") from None
        metrics.spans_received.inc(spans)
        if self._forwarders:
            for forwarder in self._forwarders:
                forwarder.forward("traces", body)
        elif skipped:
            metrics.spans_dropped.labels("not_genai").inc(skipped)


class TelemetryRouter:
    """Metrics and logs: counted, and forwarded where an otlp exporter is configured."""

    def __init__(self, forwarders: dict[str, Sequence[OtlpForwarder]], metrics: CollectorMetrics) -> None:
        self._forwarders = forwarders
        self._metrics = metrics

    def consume(self, signal: str, items: int, body: bytes) -> None:
        self._metrics.items_received.labels(signal).inc(items)
        for forwarder in self._forwarders.get(signal, ()):
            forwarder.forward(signal, body)
