"""`pipelines.yaml`: loading, `${env:VAR}` substitution and validation.

The file follows the OpenTelemetry Collector's shape (receivers / processors / exporters /
service.pipelines, component ids `type[/name]`) so that anyone who has configured a Collector can
read it. Every problem is reported as ``ConfigError`` naming the file and the key path.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from .config_types import Days, Seconds
from .digest.config import DigestConfig
from .findings.config import FindingsConfig
from .privacy import BUILTIN_NAMES, describe_secret
from .tls import tls_problem

__all__ = [
    "AuthSettings",
    "BudgetConfig",
    "BudgetProcessorConfig",
    "ClickHouseExporterConfig",
    "Config",
    "ConfigError",
    "EmailChannelConfig",
    "GenAIProcessorConfig",
    "KeyAuthConfig",
    "OtlpExporterConfig",
    "OtlpReceiverConfig",
    "PriceOverride",
    "PricingProcessorConfig",
    "RetentionConfig",
    "SlackChannelConfig",
    "TagRule",
    "TagsProcessorConfig",
    "TlsServerConfig",
    "WebhookChannelConfig",
    "load_config",
    "substitute_env",
    "unused_components",
]


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- receivers -------------------------------------------------------------------------------


class AuthSettings(_Strict):
    authenticator: str
    """The id of a `spanmeter_keys` extension (under `extensions:` and `service.extensions`)."""


class _Listener(_Strict):
    """Who may connect: both OTLP protocols take these."""

    auth: AuthSettings | None = None
    insecure: bool = False
    """Listen beyond loopback without `auth`: refused unless set (anyone reaching the port could write spend)."""
    max_concurrent_requests: PositiveInt = 256
    """Export requests handled at once; more are answered retryable (gRPC RESOURCE_EXHAUSTED, HTTP 503)."""


class TlsServerConfig(_Strict):
    """A listener's TLS, keyed as the OpenTelemetry Collector's configtls; with it the port speaks only TLS.
    Relative paths are from the working directory."""

    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    client_ca_file: str | None = None
    """mTLS: clients must present a certificate this CA bundle verifies."""
    min_version: Literal["1.2", "1.3"] = "1.2"
    reload_interval: Seconds | None = None
    """Look for renewed files this often (at a new connection); unset: read once at start."""


class GrpcProtocolConfig(_Listener):
    endpoint: str = "127.0.0.1:4317"
    max_recv_msg_size_mib: PositiveInt = 16
    tls: TlsServerConfig | None = None


class HttpProtocolConfig(_Listener):
    endpoint: str = "127.0.0.1:4318"
    max_request_body_size_mib: PositiveInt = 16
    tls: TlsServerConfig | None = None


class OtlpProtocols(_Strict):
    grpc: GrpcProtocolConfig | None = None
    http: HttpProtocolConfig | None = None


class OtlpReceiverConfig(_Strict):
    protocols: OtlpProtocols = OtlpProtocols(grpc=GrpcProtocolConfig(), http=HttpProtocolConfig())

    @field_validator("protocols")
    @classmethod
    def _at_least_one(cls, protocols: OtlpProtocols) -> OtlpProtocols:
        if protocols.grpc is None and protocols.http is None:
            raise ValueError("enable at least one of grpc, http")
        return protocols

    @model_validator(mode="after")
    def _tls_files(self) -> OtlpReceiverConfig:
        """Certificate files are read at load: a missing or mismatched file is an error naming its key."""
        for name in ("grpc", "http"):
            protocol = getattr(self.protocols, name)
            if protocol is None or protocol.tls is None:
                continue
            where = ("protocols", name, "tls")
            if name == "grpc" and protocol.tls.min_version == "1.3":
                raise _KeyedError(
                    (*where, "min_version"),
                    "grpcio cannot require TLS 1.3 (it accepts 1.2 and 1.3); use 1.2 here, or 1.3 on http only",
                )
            problem = tls_problem(protocol.tls)
            if problem is not None:
                raise _KeyedError((*where, problem[0]), problem[1])
        return self


# --- extensions ------------------------------------------------------------------------------


class RateLimitConfig(_Strict):
    spans_per_second: float = Field(gt=0)
    burst: PositiveInt | None = None
    """Spans a key may send at once after a quiet spell (default: one second's worth)."""

    @property
    def bucket(self) -> int:
        return self.burst or max(1, int(self.spans_per_second))


class KeyAuthConfig(_Strict):
    """`spanmeter_keys`: project keys, stored hashed in the ClickHouse store (see `spanmeter keys`)."""

    bootstrap_key: str = Field(default="", repr=False)
    """An admin key accepted without the store: a fresh install's way to run its first `keys create`."""
    refresh_interval: Seconds = 10.0
    """Keys are re-read from the store this often: a revoked key is refused everywhere within it."""
    rate_limit: RateLimitConfig | None = None
    """Spans per second each key may send (a token bucket); none: unlimited."""

    @field_validator("bootstrap_key")
    @classmethod
    def _long_enough(cls, key: str) -> str:
        if key and len(key) < 32:
            raise ValueError(f"must be at least 32 characters (a generated secret), got {len(key)}")
        return key


# --- processors ------------------------------------------------------------------------------


class RedactionRule(_Strict):
    """A pattern from pipelines.yaml whose matches are replaced before storage (the Collector's
    redactionprocessor calls its patterns `blocked_values`; these have a name and a replacement)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    regex: str = Field(min_length=1)
    replacement: str | None = None
    """Default `[REDACTED:<name>]`; may refer to groups (`\\1`, `\\g<name>`)."""

    @model_validator(mode="after")
    def _compiles(self) -> RedactionRule:
        try:
            pattern = re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"regex is not a valid regular expression: {exc}") from None
        if pattern.match(""):
            raise ValueError("regex matches the empty string: it would redact between every character")
        return self


class RedactionConfig(_Strict):
    """What is redacted before storage: content always (with capture_content), and, with `attributes`, other
    attribute values long enough to hold a credential."""

    builtin_rules: bool = True
    """Provider API keys, bearer/basic credentials, JWTs, private keys, URL credentials, secret assignments,
    emails, card numbers."""
    disabled_rules: list[str] = []
    """Built-in rules not applied, by name (e.g. `email` where user ids are emails)."""
    rules: list[RedactionRule] = []
    attributes: bool = True
    """Also redact span and resource attribute values of 20 characters or more (not only content)."""

    @field_validator("disabled_rules")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - BUILTIN_NAMES)
        if unknown:
            raise ValueError(f"unknown built-in rule(s) {unknown}; expected some of {sorted(BUILTIN_NAMES)}")
        return names


class GenAIProcessorConfig(_Strict):
    capture_content: bool = False
    """Keep prompt and completion text. Off: such attributes are dropped before storage."""
    max_attributes: PositiveInt = 128
    """Span or resource attributes kept per row beyond the promoted columns."""
    max_attribute_value_length: PositiveInt = 4096
    max_tokens_per_call: int = Field(default=1_000_000_000, gt=0, le=10**18)
    """A token count above this rejects the span: no call is that large, so the sender is wrong. At most
    10^18, so a row's sums (input plus cache) stay within UInt64."""
    max_future_skew: Seconds = 3600.0
    """A span starting or ending further ahead of the collector's clock is rejected."""
    max_content_length: PositiveInt = 32768
    """Characters kept of one content attribute (with capture_content); the rest is cut."""
    max_content_per_span: PositiveInt = 131072
    """Characters of content kept per row, all content attributes together; past it the rest is dropped."""
    redaction: RedactionConfig = RedactionConfig()
    reader: Literal["engine", "python"] = "engine"
    """Who reads spans into rows: the ClickHouse engine, a batch of requests per query (requests it cannot read
    exactly go to the Python reader), or the Python reader alone (the reference the engine is tested against)."""
    engine_min_spans: NonNegativeInt = 5000
    """Segments with fewer spans are read by the Python reader: the engine's query costs ~0.3 s of planning
    however few spans it reads. The whole collector used as much CPU either way at ~5,000-span segments, less
    with the Python reader below (at 2,500: ~14 against ~18 % of a core), more above (at 10,000: 25 against 32)."""


class PriceOverride(_Strict):
    """A price from pipelines.yaml: a self-hosted model, a negotiated rate. USD per million tokens."""

    model: str = Field(min_length=1)
    provider: str | None = None
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)
    cache_read_per_mtok: Decimal | None = Field(default=None, ge=0)
    cache_write_per_mtok: Decimal | None = Field(default=None, ge=0)


class PricingProcessorConfig(_Strict):
    overrides: list[PriceOverride] = []


class TagRule(_Strict):
    """Copy an attribute into a tag, or extract a part of it with a regex."""

    tag: str = Field(min_length=1)
    from_: str = Field(alias="from", pattern=r"^(span|resource)\..+")
    regex: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if compiled.groups == 0:
            raise ValueError("needs a capture group: the tag takes group 'value' or else group 1")
        return pattern


class TagsProcessorConfig(_Strict):
    rules: list[TagRule] = []


# --- budgets ---------------------------------------------------------------------------------

BUDGET_SCOPE_KEYS = ("project", "service", "environment", "provider", "model", "feature", "user")
BUDGET_WINDOW = re.compile(r"^(day|month|rolling ([1-9]\d{0,3})h)$")


class BudgetConfig(_Strict):
    """One budget: spans in `scope`, summed over `window`, against `limit_usd` (and optional token/request limits)."""

    name: str = Field(min_length=1, max_length=200)
    scope: dict[str, str] = {}
    """Scope key -> a value, a `*` pattern, or `each` (one budget per distinct value)."""
    window: str = "day"
    """`day` (UTC calendar day), `month` (UTC calendar month) or `rolling Nh` (the last N hours)."""
    limit_usd: Decimal = Field(gt=0)
    limit_tokens: PositiveInt | None = None
    limit_requests: PositiveInt | None = None
    thresholds: list[Annotated[int, Field(ge=1, le=1000)]] = Field(default=[80, 100], min_length=1)
    action: Literal["notify", "block"] = "notify"
    channels: list[str] = []

    @field_validator("scope")
    @classmethod
    def _scope_keys(cls, scope: dict[str, str]) -> dict[str, str]:
        for key, value in scope.items():
            if key not in BUDGET_SCOPE_KEYS and not (key.startswith("tag:") and len(key) > 4):
                expected = ", ".join([*BUDGET_SCOPE_KEYS, "tag:NAME"])
                raise ValueError(f"unknown scope key {key!r}; expected one of {expected}")
            if not value:
                raise ValueError(f"scope key {key!r} needs a value, a * pattern or each")
        return scope

    @field_validator("window")
    @classmethod
    def _window(cls, window: str) -> str:
        if not BUDGET_WINDOW.match(window):
            raise ValueError(f"expected day, month or rolling Nh (e.g. rolling 24h), got {window!r}")
        return window

    @field_validator("thresholds")
    @classmethod
    def _sorted_thresholds(cls, thresholds: list[int]) -> list[int]:
        return sorted(set(thresholds))


class _ChannelBase(_Strict):
    timeout: Seconds = 5.0
    retries: int = Field(default=3, ge=0, le=10)
    """Attempts after the first; waits `backoff`, then doubles it."""
    backoff: Seconds = 1.0


class WebhookChannelConfig(_ChannelBase):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://[^/]+")
    secret: str = Field(min_length=1, repr=False)
    """HMAC-SHA256 key for the `X-Spanmeter-Signature` header; use ${env:VAR}."""
    headers: dict[str, str] = Field(default={}, repr=False)


class SlackChannelConfig(_ChannelBase):
    type: Literal["slack"]
    url: str = Field(pattern=r"^https?://[^/]+", repr=False)


class EmailChannelConfig(_ChannelBase):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ca_file: str | None = None
    """CA bundle to verify the server's certificate (default: the system's)."""
    username: str = ""
    password: str = Field(default="", repr=False)
    from_: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    timeout: Seconds = 10.0

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


BudgetChannelConfig = Annotated[
    WebhookChannelConfig | SlackChannelConfig | EmailChannelConfig, Field(discriminator="type")
]


class BudgetProcessorConfig(_Strict):
    channels: dict[str, BudgetChannelConfig] = {}
    budgets: list[BudgetConfig] = []
    reconcile_interval: Seconds = 30.0
    """How often spend is re-read from ClickHouse (and budget_status written)."""
    allow_private_targets: bool = False
    """Allow webhook/Slack URLs on private, loopback or link-local addresses."""
    max_each_values: PositiveInt = 10_000
    """Distinct values an `each` budget tracks per window (users, sessions...); beyond, new values are not
    counted (a metric and a warning say so), so a sender cannot grow the collector's memory without bound."""

    @model_validator(mode="after")
    def _references(self) -> BudgetProcessorConfig:
        seen: set[str] = set()
        for index, budget in enumerate(self.budgets):
            if budget.name in seen:
                raise _KeyedError(("budgets", index, "name"), f"duplicate budget name {budget.name!r}")
            seen.add(budget.name)
            for position, channel_name in enumerate(budget.channels):
                if channel_name not in self.channels:
                    raise _KeyedError(
                        ("budgets", index, "channels", position),
                        f"unknown channel {channel_name!r} (declared under channels: {sorted(self.channels)})",
                    )
        if not self.allow_private_targets:
            for name, channel in self.channels.items():
                url = getattr(channel, "url", None)
                if url is not None and _is_private_literal(url):
                    raise _KeyedError(
                        ("channels", name, "url"),
                        "targets a private or loopback address; refused unless allow_private_targets is true",
                    )
        return self


def _is_private_literal(url: str) -> bool:
    """Whether the URL's host is an IP literal that is not public (names are checked when sending)."""
    try:
        address = ipaddress.ip_address(urlsplit(url).hostname or "")
    except ValueError:
        return False
    return not address.is_global


# --- exporters -------------------------------------------------------------------------------


class BatchConfig(_Strict):
    max_rows: PositiveInt = 50_000
    """Spans a write-ahead-log segment holds before it is read and inserted: the engine reads a segment with one
    query whose planning costs ~0.3 s however small the segment, so large segments read faster."""
    max_insert_rows: PositiveInt = 100_000
    """Under a backlog (segments sealed and waiting), consecutive segments holding up to this many spans in all are
    inserted together, under one token recorded in the write-ahead log first: fewer inserts, each paying the
    views' planning and a part in every rollup once, and larger parts to merge. Reading stays a segment at a time,
    so this bounds only the rows held for an insert (~1 KiB a span). At most `max_rows` inserts each segment alone."""
    max_insert_bytes: ByteSize = ByteSize(256 * 1024 * 1024)
    """...and while the rows read for the group so far (as Arrow) take less than this: spans with large attribute
    maps or captured content make larger rows. A group's rows are at most this plus one segment's."""
    max_age: Seconds = 5.0
    """Age at which a segment is read and inserted, however few spans it holds. Each insert costs ~0.13 s of CPU
    whatever its size (the rollups' views are planned for every insert): at 10 spans/s the collector used ~20 % of
    a core with 1 s, ~8 % with 5 s (ClickHouse advises batched inserts). While `spanmeter tail` follows calls
    through the collector's API, segments are sealed at 1 s (`ClickHouseExporter.follow`)."""


class QueueConfig(_Strict):
    """The write-ahead log: accepted rows wait here, fsync'd, until ClickHouse has them."""

    directory: str = "./.spanmeter-wal"
    """One subdirectory per database; a collector locks its own."""
    max_bytes: ByteSize = ByteSize(512 * 1024 * 1024)
    """Past this, receivers answer with retryable statuses (UNAVAILABLE, 503 + Retry-After)."""


class RetryConfig(_Strict):
    initial_interval: Seconds = 0.5
    max_interval: Seconds = 30.0


class RetentionConfig(_Strict):
    """How long the store keeps what it holds, in days (0: forever); set as TTLs at each start."""

    rows: Days = 0
    """genai_spans rows, by the span's time (default: kept for good; a ledger does not expire by surprise).
    With a TTL, spans older than it are rejected per span: they would be deleted as they are inserted."""
    content: Days = 30
    """Captured prompt and completion text (the `content` column): emptied, the row kept."""
    rollups: Days = 0
    """genai_spans_hourly: small, and what long-range reports read."""


class ClickHouseExporterConfig(_Strict):
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
            raise _KeyedError(
                ("cluster",),
                "the embedded chdb:// engine is one process, not a cluster: set an http(s):// endpoint or remove it",
            )
        return self


class OtlpExporterConfig(_Strict):
    """Forwards what the collector received (traces, metrics, logs) to another OTLP/HTTP endpoint."""

    endpoint: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default={}, repr=False)
    timeout: Seconds = 10.0
    forward_content: bool = False
    """Forward prompt and completion content (the conventions' content attributes, GenAI log event bodies).
    Off: stripped from forwarded traces and logs."""


# --- service ---------------------------------------------------------------------------------


class PipelineConfig(_Strict):
    receivers: list[str] = Field(min_length=1)
    processors: list[str] = []
    exporters: list[str] = Field(min_length=1)


class Pipelines(_Strict):
    traces: PipelineConfig
    metrics: PipelineConfig | None = None
    logs: PipelineConfig | None = None


class TelemetryConfig(_Strict):
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class ServiceConfig(_Strict):
    extensions: list[str] = []
    pipelines: Pipelines
    telemetry: TelemetryConfig = TelemetryConfig()
    workers: NonNegativeInt = 0
    """Processes that read, price and tag spans beside the receiving one (0: all in the receiving process)."""


_COMPONENT_MODELS: dict[str, dict[str, type[BaseModel]]] = {
    "extensions": {"spanmeter_keys": KeyAuthConfig, "spanmeter_digest": DigestConfig},
    "receivers": {"otlp": OtlpReceiverConfig},
    "processors": {
        "genai": GenAIProcessorConfig,
        "pricing": PricingProcessorConfig,
        "tags": TagsProcessorConfig,
        "budget": BudgetProcessorConfig,
    },
    "exporters": {"clickhouse": ClickHouseExporterConfig, "otlp": OtlpExporterConfig},
}


def component_type(component_id: str) -> str:
    """`otlp/internal` -> `otlp`, as the Collector names components."""
    return component_id.split("/", 1)[0]


class Config(_Strict):
    extensions: dict[str, Any] = {}
    receivers: dict[str, Any]
    processors: dict[str, Any] = {}
    exporters: dict[str, Any]
    service: ServiceConfig
    findings: FindingsConfig = FindingsConfig()
    """Thresholds of the findings' rules and how often they are stored (findings/config.py)."""

    @model_validator(mode="before")
    @classmethod
    def _typed_components(cls, data: Any) -> Any:
        """Validate each component against the model of its type (`otlp/2` is an `otlp`)."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for section, models in _COMPONENT_MODELS.items():
            components = data.get(section)
            if components is None:
                continue
            if not isinstance(components, Mapping):
                raise ValueError(f"{section}: expected a mapping of component ids")
            typed: dict[str, Any] = {}
            for component_id, body in components.items():
                model = models.get(component_type(str(component_id)))
                if model is None:
                    raise _KeyedError(
                        (section, component_id), f"unknown component type; expected one of {sorted(models)}"
                    )
                try:
                    typed[component_id] = model.model_validate(body or {})
                except ValidationError as exc:
                    inner = _find_keyed(exc)  # a model's own cross-field check that names its key
                    if inner is not None:
                        raise _KeyedError((section, component_id, *inner.path), inner.detail) from None
                    raise _KeyedError((section, component_id), exc) from None
            data[section] = typed
        return data

    @model_validator(mode="after")
    def _pipelines_reference_components(self) -> Config:
        sections = {"receivers": self.receivers, "processors": self.processors, "exporters": self.exporters}
        for signal in ("traces", "metrics", "logs"):
            pipeline: PipelineConfig | None = getattr(self.service.pipelines, signal)
            if pipeline is None:
                continue
            for section, declared in sections.items():
                for index, component_id in enumerate(getattr(pipeline, section)):
                    if component_id not in declared:
                        raise _KeyedError(
                            ("service", "pipelines", signal, section, index),
                            f"{component_id!r} is not declared under {section}: (declared: {sorted(declared)})",
                        )
        traces = self.service.pipelines.traces
        if not traces.processors or component_type(traces.processors[0]) != "genai":
            raise _KeyedError(
                ("service", "pipelines", "traces", "processors"),
                "must start with a genai processor: it turns OTLP spans into rows for the others",
            )
        if not any(component_type(p) == "pricing" for p in traces.processors):
            # Unpriced rows would be stored at $0 and not counted as unpriced: refuse rather than under-report.
            raise _KeyedError(
                ("service", "pipelines", "traces", "processors"),
                "needs a pricing processor (e.g. [genai, pricing, tags]): without it every call is stored at $0",
            )
        self._check_listeners()
        self._check_digests()
        stores = [e for e in traces.exporters if component_type(e) == "clickhouse"]
        if len(stores) != 1:
            raise _KeyedError(("service", "pipelines", "traces", "exporters"), "needs exactly one clickhouse exporter")
        for signal in ("metrics", "logs"):
            pipeline = getattr(self.service.pipelines, signal)
            if pipeline is not None and any(component_type(e) != "otlp" for e in pipeline.exporters):
                raise _KeyedError(
                    ("service", "pipelines", signal, "exporters"), "only otlp exporters can take metrics and logs"
                )
        return self

    def _check_digests(self) -> None:
        """A digest is sent on the traces pipeline's budget processor's channels: each one named must exist."""
        declared: dict[str, Any] = {}
        for processor_id in self.service.pipelines.traces.processors:
            if isinstance(self.processors.get(processor_id), BudgetProcessorConfig):
                declared = dict(self.processors[processor_id].channels)
        for extension_id, extension in self.extensions.items():
            if not isinstance(extension, DigestConfig):
                continue
            if not extension.channels and extension_id in self.service.extensions:
                raise _KeyedError(("extensions", extension_id, "channels"), "a digest needs at least one channel")
            for position, channel in enumerate(extension.channels):
                if channel not in declared:
                    raise _KeyedError(
                        ("extensions", extension_id, "channels", position),
                        f"unknown channel {channel!r}: a digest uses the budget processor's channels "
                        f"(declared: {sorted(declared)})",
                    )

    def _check_listeners(self) -> None:
        """Every authenticator named exists and is enabled; nothing listens beyond loopback unguarded."""
        for extension_id in self.service.extensions:
            if extension_id not in self.extensions:
                raise _KeyedError(("service", "extensions"), f"{extension_id!r} is not declared under extensions:")
        for receiver_id, receiver in self.receivers.items():
            for protocol in ("grpc", "http"):
                listener: _Listener | None = getattr(receiver.protocols, protocol)
                if listener is None:
                    continue
                path = ("receivers", receiver_id, "protocols", protocol)
                if listener.auth is not None:
                    name = listener.auth.authenticator
                    if name not in self.extensions or name not in self.service.extensions:
                        raise _KeyedError(
                            (*path, "auth", "authenticator"),
                            f"{name!r} must be declared under extensions: and listed in service.extensions",
                        )
                elif not listener.insecure and not _is_loopback(listener.endpoint):  # type: ignore[attr-defined]
                    raise _KeyedError(
                        (*path, "endpoint"),
                        "listens beyond loopback without auth: anyone who reaches it could write spend. Add "
                        "auth: {authenticator: spanmeter_keys} (README: Security), or set insecure: true",
                    )


def _is_loopback(endpoint: str) -> bool:
    host = endpoint.rpartition(":")[0].strip("[]") or "127.0.0.1"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def unused_components(config: Config) -> list[str]:
    """One warning per component no pipeline uses: it is validated but has no effect, so say so at start.

    Processors count only in the traces pipeline: metrics and logs are forwarded unprocessed.
    """
    pipelines = config.service.pipelines
    signals = [p for p in (pipelines.traces, pipelines.metrics, pipelines.logs) if p is not None]
    warnings = []
    for section in ("receivers", "processors", "exporters"):
        named_in = signals if section != "processors" else [pipelines.traces]
        used = {component_id for pipeline in named_in for component_id in getattr(pipeline, section)}
        where = "service.pipelines.traces.processors" if section == "processors" else "any of service.pipelines"
        for component_id, body in getattr(config, section).items():
            if component_id in used:
                continue
            warning = f"{section}.{component_id} is configured but not in {where}: it has no effect"
            if isinstance(body, BudgetProcessorConfig) and body.budgets:
                warning += f" (its {len(body.budgets)} budget(s) are not checked)"
            warnings.append(warning)
    for extension_id in config.extensions:
        if extension_id not in config.service.extensions:
            warnings.append(f"extensions.{extension_id} is configured but not in service.extensions: it has no effect")
    return warnings


class _KeyedError(ValueError):
    """Carries a key path out of pydantic's validators so the message can name it."""

    def __init__(self, path: tuple[Any, ...], detail: str | ValidationError) -> None:
        super().__init__(str(detail))
        self.path = path
        self.detail = detail


# --- loading ---------------------------------------------------------------------------------

_REF_NAME = re.compile(r"^(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


def substitute_env(value: str, env: Mapping[str, str], where: str, secret: bool = False) -> str:
    """Expand `${env:VAR}`, `${VAR}` and `${env:VAR:-default}` (defaults may nest); `$$` is `$`.

    Values taken from the environment are not expanded again, as in the Collector.
    """
    out: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("${", i):
            end = _closing_brace(value, i + 2)
            if end < 0:
                shown = f"(a ${{ at character {i + 1} with no }})" if secret else repr(value[i:])
                raise ConfigError(f"{where}: unterminated substitution {shown}")
            out.append(_expand_reference(value[i + 2 : end], env, where, secret))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for index in range(start, len(text)):
        if text.startswith("${", index):
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _expand_reference(reference: str, env: Mapping[str, str], where: str, secret: bool) -> str:
    match = _REF_NAME.match(reference)
    if not match:
        raise ConfigError(
            f"{where}: invalid substitution "
            + (f"(${{...}} of {len(reference)} characters)" if secret else f"${{{reference}}}")
            + "; "
            "expected ${env:NAME} or ${env:NAME:-default}"
        )
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    if default is not None:
        return substitute_env(default, env, where, secret)
    raise ConfigError(f"{where}: environment variable {name} is not set and has no default (${{env:{name}:-...}})")


def _substitute_tree(node: Any, env: Mapping[str, str], file: str, path: tuple[Any, ...]) -> Any:
    if isinstance(node, str):
        # In a secret-bearing value (a password, a token, a URL...) an error does not repeat the text.
        return substitute_env(node, env, f"{file}: {_format_path(path)}", _is_secret(path, node))
    if isinstance(node, dict):
        return {key: _substitute_tree(value, env, file, (*path, key)) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute_tree(value, env, file, (*path, index)) for index, value in enumerate(node)]
    return node


def _format_path(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _format_validation_error(file: str, prefix: tuple[Any, ...], error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        path = (*prefix, *(p for p in item["loc"] if p not in ("function-after", "function-before")))
        got = item.get("input")
        detail = item["msg"]
        if item["type"] == "extra_forbidden":
            detail = "unknown key"
        elif item["type"] == "missing":
            detail = "required key is missing"
        elif _is_secret(path, got):  # say which key is wrong, never its value
            if isinstance(got, str) and got:
                detail = detail.replace(f", got {got!r}", "").replace(repr(got), "…").replace(got, "…")
            detail += f" (got {describe_secret(got)})"
        elif not isinstance(got, dict | list) and f"got {got!r}" not in detail:  # our validators name it already
            detail += f" (got {got!r})"
        lines.append(f"{file}: {_format_path(path)}: {detail}")
    return "\n".join(lines)


_SECRET_KEYS = frozenset({"password", "passwd", "secret", "token", "headers", "url", "authorization", "api_key"})
_SECRET_SUFFIXES = ("password", "secret", "_token", "_key")


def _is_secret(path: tuple[Any, ...], value: object) -> bool:
    """Whether a config value may hold a secret, so that an error names its key but not its value: passwords,
    secrets, tokens, keys, headers (any value under them), URLs (a Slack webhook's token is its path), and
    endpoints carrying credentials or a query."""
    for part in path:
        if isinstance(part, str):
            name = part.lower()
            if name in _SECRET_KEYS or name.endswith(_SECRET_SUFFIXES):
                return True
    last = path[-1] if path else ""
    return last == "endpoint" and isinstance(value, str) and ("@" in value or "?" in value)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's problem and where, without the excerpt of the file it quotes (which may hold a secret)."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return where + (error.problem or error.context or "cannot be parsed")
    return type(error).__name__


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate a pipelines file; raise ConfigError naming file and key."""
    file = str(path)
    env = os.environ if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping with receivers, processors, exporters and service")
    raw = _substitute_tree(raw, env, file, ())
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        # pydantic wraps errors raised inside model validators; unwrap ours to keep the key path.
        keyed = _find_keyed(exc)
        if keyed is not None:
            if isinstance(keyed.detail, ValidationError):
                raise ConfigError(_format_validation_error(file, keyed.path, keyed.detail)) from None
            raise ConfigError(f"{file}: {_format_path(keyed.path)}: {keyed.detail}") from None
        raise ConfigError(_format_validation_error(file, (), exc)) from None


def _find_keyed(error: ValidationError) -> _KeyedError | None:
    for item in error.errors():
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, _KeyedError):
            return cause
    return None
