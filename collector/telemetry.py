"""The collector's own metrics, served as Prometheus text on the HTTP port at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["CollectorMetrics"]


class CollectorMetrics:
    """One registry per collector, so several collectors in one process do not share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "spanmeter_otlp_requests", "OTLP export requests received", ["signal", "transport"], registry=r
        )
        self.spans_received = Counter("spanmeter_spans_received", "Spans received, GenAI or not", registry=r)
        self.genai_spans = Counter(
            "spanmeter_genai_spans", "GenAI spans read, by source convention", ["convention"], registry=r
        )
        self.spans_stored = Counter("spanmeter_spans_stored", "GenAI spans written to ClickHouse", registry=r)
        self.spans_rejected = Counter(
            "spanmeter_spans_rejected",
            "Spans rejected as invalid (reported in partial_success)",
            ["reason"],
            registry=r,
        )
        self.spans_dropped = Counter(
            "spanmeter_spans_dropped", "Spans accepted but not stored, by reason", ["reason"], registry=r
        )
        self.spans_refused = Counter(
            "spanmeter_spans_refused",
            "Spans refused with a retryable status (the sender retries)",
            ["reason"],
            registry=r,
        )
        self.items_received = Counter(
            "spanmeter_telemetry_items_received", "Metrics and log records received", ["signal"], registry=r
        )
        self.forwarded = Counter(
            "spanmeter_forwarded_requests", "Requests forwarded to an otlp exporter", ["signal", "outcome"], registry=r
        )
        self.queue_rows = Gauge("spanmeter_queue_rows", "Rows accepted and waiting to be stored", registry=r)
        self.wal_bytes = Gauge("spanmeter_wal_bytes", "Bytes of accepted rows in the write-ahead log", registry=r)
        self.wal_disk_bytes = Gauge(
            "spanmeter_wal_disk_bytes",
            "Bytes the write-ahead log's files hold on disk, files kept for reuse included (at most its capacity)",
            registry=r,
        )
        self.wal_capacity = Gauge(
            "spanmeter_wal_capacity_bytes", "Bytes the write-ahead log may hold (queue.max_bytes)", registry=r
        )
        self.wal_write_errors = Counter(
            "spanmeter_wal_write_errors", "Requests refused because the WAL could not be written", registry=r
        )
        self.wal_quarantined = Counter(
            "spanmeter_wal_quarantined_segments",
            "WAL segments found damaged at start; the damaged part was moved to quarantine/",
            registry=r,
        )
        self.spans_dead_lettered = Counter(
            "spanmeter_spans_dead_lettered",
            "Rows ClickHouse refused for their values, set aside in rejected/ (spanmeter rejected list)",
            registry=r,
        )
        self.tags_capped = Counter(
            "spanmeter_spans_tags_capped",
            "Spans stored with only the first max_attributes of their tags (the rest left out)",
            registry=r,
        )
        self.engine_failures = Counter(
            "spanmeter_engine_failures",
            "Segments the ClickHouse engine failed to read (the Python reader read them instead)",
            registry=r,
        )
        self.engine_fallback_requests = Counter(
            "spanmeter_engine_fallback_requests",
            "Requests the engine left to the Python reader (a span it does not read exactly as the reference)",
            registry=r,
        )
        self.auth_failures = Counter(
            "spanmeter_auth_failures",
            "Requests refused for their key (missing, malformed, unknown, revoked)",
            ["reason"],
            registry=r,
        )
        self.exporter_restarts = Counter(
            "spanmeter_exporter_restarts", "Times the exporter thread failed unexpectedly and was restarted", registry=r
        )
        self.batch_rows = Histogram(
            "spanmeter_batch_rows",
            "Rows per insert",
            registry=r,
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 200000, 500000),
        )
        self.insert_seconds = Histogram(
            "spanmeter_insert_duration_seconds",
            "Time per ClickHouse insert",
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.store_errors = Counter("spanmeter_store_errors", "Failed inserts or connects (retried)", registry=r)
