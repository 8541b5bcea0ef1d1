"""Fixtures for the collector tests: a real collector on loopback ports over the real ClickHouse
engine (chDB), and real OpenTelemetry SDK tracer providers exporting OTLP to it.

chDB allows one data directory per process, so every in-process collector of this test session
shares one directory (the `chdb_path` and `store` fixtures of tests/conftest.py) and each test gets a
database of its own.
"""

from __future__ import annotations

import copy
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client.parser import text_string_to_metric_families

from spanmeter.config import Config, load_config
from spanmeter.service import Collector, CollectorThread

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "pipelines.yaml"
TRANSPORTS = ("grpc", "http-protobuf", "http-json")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)  # never the override's own object: a caller may change the result
    return merged


@pytest.fixture
def database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def config_builder(directory: Path, chdb_path: Path, database: str) -> Callable[..., Config]:
    """The shipped pipelines.yaml, on ports the OS picks and `database`, with overrides merged in; written to a
    file in `directory` and loaded the way `spanmeter serve` loads it."""

    def build(overrides: dict[str, Any] | None = None) -> Config:
        raw = yaml.safe_load(SHIPPED_CONFIG.read_text())
        raw = deep_merge(raw, overrides or {})
        path = directory / f"pipelines-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(raw))
        env = {
            "SPANMETER_DATA": str(chdb_path),
            "SPANMETER_DATABASE": database,
            "SPANMETER_GRPC_ENDPOINT": "127.0.0.1:0",
            "SPANMETER_HTTP_ENDPOINT": "127.0.0.1:0",
            "SPANMETER_WAL": str(directory / "wal"),
            "SPANMETER_ENGINE_MIN_SPANS": os.environ["SPANMETER_ENGINE_MIN_SPANS"],
        }
        return load_config(path, env=env)

    return build


@pytest.fixture
def make_config(tmp_path: Path, chdb_path: Path, database: str) -> Callable[..., Config]:
    """`config_builder` in this test's directory and database."""
    return config_builder(tmp_path, chdb_path, database)


def collectors(config: Callable[[dict[str, Any] | None], Config]) -> Iterator[Callable[..., Collector]]:
    """A fixture's `start(overrides)`: a collector running on `config(overrides)`, each stopped at teardown."""
    threads: list[CollectorThread] = []

    def start(overrides: dict[str, Any] | None = None) -> Collector:
        thread = CollectorThread(config(overrides))
        collector = thread.start()
        threads.append(thread)
        return collector

    yield start
    for thread in threads:
        thread.stop()


@pytest.fixture
def start_collector(make_config: Callable[..., Config]) -> Iterator[Callable[..., Collector]]:
    yield from collectors(make_config)


@pytest.fixture
def collector(start_collector: Callable[..., Collector]) -> Collector:
    return start_collector({"exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}}})


@pytest.fixture(scope="module")
def start_module_collector(
    tmp_path_factory: pytest.TempPathFactory, chdb_path: Path
) -> Iterator[Callable[..., Collector]]:
    """`start_collector` for a module's tests to share one collector (each start costs seconds: the schema's
    migrations in a new database); each collector it starts has a database and directory of its own, its
    `store_config.database`. For tests that only read what it stored, or that count their own rows."""

    def config(overrides: dict[str, Any] | None) -> Config:
        database = f"t_{uuid.uuid4().hex[:12]}"
        return config_builder(tmp_path_factory.mktemp("collector"), chdb_path, database)(overrides)

    yield from collectors(config)


class OtlpJsonSpanExporter(SpanExporter):
    """OTLP/HTTP with JSON bodies, which the Python SDK does not ship: the SDK's own protobuf
    encoder, then the OTLP spec's JSON mapping (lowerCamelCase, hex trace and span ids)."""

    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = json.dumps(otlp_json(encode_spans(spans))).encode()
        request = urllib.request.Request(
            self._endpoint, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return SpanExportResult.SUCCESS if response.status == 200 else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


def otlp_json(message: Any) -> dict[str, Any]:
    data = json_format.MessageToDict(message)

    def hexify(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    import base64

                    node[key] = base64.b64decode(value).hex()
                else:
                    hexify(value)
        elif isinstance(node, list):
            for item in node:
                hexify(item)

    hexify(data)
    return data


def span_exporter(collector: Collector, transport: str) -> SpanExporter:
    if transport == "grpc":
        return GrpcSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True)
    url = f"http://127.0.0.1:{collector.http_port}/v1/traces"
    if transport == "http-protobuf":
        return HttpSpanExporter(endpoint=url)
    if transport == "http-json":
        return OtlpJsonSpanExporter(url)
    raise ValueError(transport)


def tracer_provider(
    collector: Collector, transport: str = "grpc", resource: dict[str, Any] | None = None
) -> TracerProvider:
    """A real SDK provider whose spans go to the collector as each one ends."""
    provider = TracerProvider(resource=Resource.create({"service.name": "test-service", **(resource or {})}))
    provider.add_span_processor(SimpleSpanProcessor(span_exporter(collector, transport)))
    return provider


def emit(provider: TracerProvider, name: str, attributes: dict[str, Any], start_ns: int | None = None) -> str:
    """One span with these attributes; returns its span id (hex)."""
    tracer = provider.get_tracer("spanmeter.tests")
    span = tracer.start_span(name, attributes=attributes, start_time=start_ns)
    span.end(end_time=(start_ns + 1_500_000_000) if start_ns else None)
    return format(span.get_span_context().span_id, "016x")


def wait_for_rows(collector: Collector, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while collector.exporter.stored_rows < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {collector.exporter.stored_rows} of {count} rows stored after {timeout}s")
        time.sleep(0.02)


def refused(store: Client, database: str, count: int, timeout: float = 20.0, before: Sequence[str] = ()) -> str:
    """Waits until `count` accepted spans were refused while being read (the ingest_rejections table, where a
    user sees them: the sender was answered before they were read); their reasons, `; `-separated. `before`:
    the letter ids of refusals to leave out (recorded before a test began, on a collector tests share)."""
    deadline = time.monotonic() + timeout
    query = (
        "SELECT sum(rows), arrayStringConcat(groupArray(error), '; ') FROM {db:Identifier}.ingest_rejections"
        " WHERE letter_id NOT IN {before:Array(String)}"
    )
    while True:
        total, errors = store.query(query, parameters={"db": database, "before": list(before)}).result_rows[0]
        if total >= count:
            assert total == count, f"{total} spans refused, expected {count}: {errors}"
            return str(errors)
        if time.monotonic() > deadline:
            raise AssertionError(f"only {total} of {count} spans refused after {timeout}s: {errors}")
        time.sleep(0.05)


def rows(store: Client, database: str, where: str = "1", **parameters: Any) -> list[dict[str, Any]]:
    query = f"SELECT * FROM {{database:Identifier}}.genai_spans WHERE {where} ORDER BY timestamp, span_id"
    return list(store.query(query, parameters={"database": database, **parameters}).named_results())


def http_request(
    collector: Collector, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """POST `body` (or GET without one) to the collector's HTTP port: status, Content-Type, body.
    Error statuses are returned, not raised."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{collector.http_port}{path}",
        data=body,
        headers=headers or {},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def metric_samples(collector: Collector) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The collector's GET /metrics, parsed: (sample name, labels) -> value."""
    status, _, body = http_request(collector, "/metrics")
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def metric_value(collector: Collector, name: str, **labels: str) -> float:
    """One sample of GET /metrics, e.g. `metric_value(c, "spanmeter_spans_dropped_total", reason="not_genai")`;
    0 when the series has not been created yet (a labelled counter never incremented)."""
    return metric_samples(collector).get((name, frozenset(labels.items())), 0.0)


class Since:
    """What one test caused on a collector that other tests share: the rows, refusals and counter increments
    that were not there when it began, which are what a collector of its own would hold."""

    def __init__(self, collector: Collector, store: Client) -> None:
        self.collector = collector
        self.store = store
        self.database = collector.store_config.database
        self._stored = collector.exporter.stored_rows
        self._span_ids = [row["span_id"] for row in rows(store, self.database)]
        self._letters = [
            letter
            for (letter,) in store.query(
                "SELECT letter_id FROM {db:Identifier}.ingest_rejections", parameters={"db": self.database}
            ).result_rows
        ]
        self._metrics = metric_samples(collector)

    def rows(self, where: str = "1", **parameters: Any) -> list[dict[str, Any]]:
        """conftest.rows of the rows stored since."""
        since = f"({where}) AND span_id NOT IN {{before:Array(String)}}"
        return rows(self.store, self.database, since, before=self._span_ids, **parameters)

    def stored_span_ids(self, count: int) -> list[str]:
        """Once `count` rows more are stored: the span ids of every row stored since, sorted."""
        wait_for_rows(self.collector, self._stored + count)
        return sorted(row["span_id"] for row in self.rows())

    def refused(self, count: int) -> str:
        """conftest.refused of the refusals recorded since."""
        return refused(self.store, self.database, count, before=self._letters)

    def metric(self, name: str, **labels: str) -> float:
        """conftest.metric_value's increase since."""
        before = self._metrics.get((name, frozenset(labels.items())), 0.0)
        return metric_value(self.collector, name, **labels) - before


@pytest.fixture(scope="module")
def storing(start_module_collector: Callable[..., Collector]) -> Collector:
    """The `collector` fixture's collector, shared by a module's tests that read only what they caused, through
    `since` (each start costs seconds: the schema's migrations in a new database)."""
    return start_module_collector({"exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}}})


@pytest.fixture
def since(storing: Collector, store: Client) -> Since:
    return Since(storing, store)
