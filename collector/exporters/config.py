"""The exporters' settings: `clickhouse` (the store, its write-ahead log, batches, retention, cluster) and `otlp`
(forwarding to another OTLP endpoint)."""

from __future__ import annotations

from pydantic import ByteSize, Field, PositiveInt, field_validator, model_validator

from ..config_types import Days, KeyedError, Seconds, StrictModel

__all__ = [
    "BatchConfig",
    "ClickHouseExporterConfig",
    "OtlpExporterConfig",
    "QueueConfig",
    "RetentionConfig",
    "RetryConfig",
]


class BatchConfig(StrictModel):
    max_rows: PositiveInt = 100_000
    """Spans a write-ahead-log segment holds before it is read and inserted: the engine reads a segment with one
    query whose planning costs the same however small the segment, so large segments read faster (100,000 against
    50,000: 0.86-0.91x the CPU a stored span, ~0.2 GiB more memory at peak)."""
    max_insert_rows: PositiveInt = 200_000
    """Under a backlog (segments sealed and waiting), consecutive segments are inserted together until they hold
    this many spans, under one token recorded in the write-ahead log first: fewer inserts, each paying the views'
    planning and a part in every rollup once, and larger parts, merged less often (the default: full segments two
    at a time; over five minutes of all-GenAI backlog 1.08x the spans stored a second at 0.93x the CPU a span of
    one at a time, ~0.2-0.3 GiB more memory at peak). Reading stays a segment at a time, so this bounds only the
    rows held for an insert (~1 KiB a span): a group holds at most this plus one segment. At `max_rows` or less,
    each full segment goes in alone."""
    max_insert_bytes: ByteSize = ByteSize(256 * 1024 * 1024)
    """...and while the rows read for the group so far (as Arrow) take less than this: spans with large attribute
    maps or captured content make larger rows. A group's rows are at most this plus one segment's."""
    max_age: Seconds = 5.0
    """Age at which a segment is read and inserted, however few spans it holds. Each insert costs ~0.13 s of CPU
    whatever its size (the rollups' views are planned for every insert): at 10 spans/s the collector used ~20 % of
    a core with 1 s, ~8 % with 5 s (ClickHouse advises batched inserts). While `spanmeter tail` follows calls
    through the collector's API, segments are sealed at 1 s (`ClickHouseExporter.follow`)."""


class QueueConfig(StrictModel):
    """The write-ahead log: accepted rows wait here, fsync'd, until ClickHouse has them."""

    directory: str = "./.spanmeter-wal"
    """One subdirectory per database; a collector locks its own."""
    max_bytes: ByteSize = ByteSize(512 * 1024 * 1024)
    """Past this, receivers answer with retryable statuses (UNAVAILABLE, 503 + Retry-After)."""
    recycle_bytes: ByteSize | None = None
    """Stored segments' files are kept and written over by later segments while the log's files hold at most
    this (default: `max_bytes`), as PostgreSQL's `min_wal_size` keeps its log files: writing over a file's pages
    costs the kernel far less than filling new ones. Lower it to give disk back after a burst."""

    @model_validator(mode="after")
    def _recycle_within_max(self) -> QueueConfig:
        if self.recycle_bytes is not None and self.recycle_bytes > self.max_bytes:
            raise KeyedError(
                ("recycle_bytes",),
                f"{self.recycle_bytes} bytes is more than queue.max_bytes ({self.max_bytes}): the log's files never "
                "hold more than max_bytes",
            )
        return self


class RetryConfig(StrictModel):
    initial_interval: Seconds = 0.5
    max_interval: Seconds = 30.0


class RetentionConfig(StrictModel):
    """How long the store keeps what it holds, in days (0: forever); set as TTLs at each start."""

    rows: Days = 0
    """genai_spans rows, by the span's time (default: kept for good; a ledger does not expire by surprise).
    With a TTL, spans older than it are rejected per span: they would be deleted as they are inserted."""
    content: Days = 30
    """Captured prompt and completion text (the `content` column): emptied, the row kept."""
    rollups: Days = 0
    """genai_spans_hourly: small, and what long-range reports read."""


class ClickHouseExporterConfig(StrictModel):
    endpoint: str = "chdb://./.spanmeter"
    """`chdb://PATH` for the embedded engine, or `http(s)://host:port` for a server."""
    database: str = Field(default="spanmeter", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    username: str = "default"
    password: str = Field(default="", repr=False)
    batch: BatchConfig = BatchConfig()
    queue: QueueConfig = QueueConfig()
    retry: RetryConfig = RetryConfig()
    shutdown_timeout: Seconds = 10.0
    """How long a stop keeps storing what the WAL holds; the rest is stored at the next start."""
    unavailable_grace: Seconds = 60.0
    """How long the store may fail before `/readyz` says the collector is not ready."""
    retention: RetentionConfig = RetentionConfig()
    scratch_directory: str | None = None
    """Where the engine's flattened requests and an embedded store's insert files are written, for every segment
    (they need not survive a crash: the write-ahead log holds the requests). Default: a directory under
    `/dev/shm` when that is a memory filesystem with 2 GiB free, else the write-ahead log's (exporters/scratch.py)."""
    cluster: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    """A cluster of the server's `remote_servers`: the schema is created ON CLUSTER, each table replicated per
    shard (`<name>_local`) behind a Distributed table of its own name (cluster.py). Server endpoints only."""

    @field_validator("endpoint")
    @classmethod
    def _scheme(cls, endpoint: str) -> str:
        if not endpoint.startswith(("chdb://", "http://", "https://")):
            raise ValueError(f"expected chdb://PATH, http://host:port or https://host:port, got {endpoint!r}")
        return endpoint

    @field_validator("cluster", mode="before")
    @classmethod
    def _no_cluster(cls, cluster: object) -> object:
        return None if cluster == "" else cluster  # `${env:VAR:-}` left empty: a single server

    @model_validator(mode="after")
    def _cluster_needs_server(self) -> ClickHouseExporterConfig:
        if self.cluster is not None and self.endpoint.startswith("chdb://"):
            raise KeyedError(
                ("cluster",),
                "the embedded chdb:// engine is one process, not a cluster: set an http(s):// endpoint or remove it",
            )
        return self


class OtlpExporterConfig(StrictModel):
    """Forwards what the collector received (traces, metrics, logs) to another OTLP/HTTP endpoint."""

    endpoint: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default={}, repr=False)
    timeout: Seconds = 10.0
    forward_content: bool = False
    """Forward prompt and completion content (the conventions' content attributes, GenAI log event bodies).
    Off: stripped from forwarded traces and logs."""
