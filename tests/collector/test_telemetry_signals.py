"""Metrics and logs from the real SDK's OTLP exporters are accepted and counted; with an `otlp`
exporter configured, traces (GenAI or not), metrics and logs are forwarded as protobuf. Also the
collector's own /healthz and /metrics."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from google.protobuf.message import Message
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource

from spanmeter.service import Collector

from .conftest import Since, emit, http_request, metric_samples, metric_value, rows, tracer_provider, wait_for_rows

SIGNAL_TRANSPORTS = ("grpc", "http")
METRIC_NAMES = ("llm.requests", "llm.latency")
LOG_BODIES = ("calling the model", "model answered", "budget at 80%")
GENAI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 20,
}


def metrics_data() -> MetricsData:
    """Two metrics recorded by the real SDK: a counter and a histogram."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create({"service.name": "signals"}), metric_readers=[reader])
    meter = provider.get_meter("spanmeter.tests")
    meter.create_counter(METRIC_NAMES[0]).add(3, {"model": "gpt-4o-mini"})
    meter.create_histogram(METRIC_NAMES[1], unit="s").record(0.42)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def log_records() -> tuple[ReadableLogRecord, ...]:
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "signals"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("spanmeter.tests")
    for body in LOG_BODIES:
        logger.emit(body=body, severity_number=SeverityNumber.INFO, severity_text="INFO")
    return memory.get_finished_logs()


EXPORTERS: dict[str, tuple[Any, Any]] = {
    "metrics": (GrpcMetricExporter, HttpMetricExporter),
    "logs": (GrpcLogExporter, HttpLogExporter),
}


def export(collector: Collector, signal: str, transport: str) -> Any:
    """Metrics or logs through the SDK's own OTLP exporter for `transport`; the export's result."""
    grpc_exporter, http_exporter = EXPORTERS[signal]
    if transport == "grpc":
        exporter = grpc_exporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, timeout=10)
    else:
        exporter = http_exporter(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/{signal}", timeout=10)
    return exporter.export(metrics_data() if signal == "metrics" else log_records())


@pytest.mark.parametrize("transport", SIGNAL_TRANSPORTS)
def test_metrics_and_logs_are_accepted_and_counted(since: Since, transport: str) -> None:
    """No metrics or logs pipeline configured: an app sending everything to one endpoint sees no errors."""
    assert export(since.collector, "metrics", transport) is MetricExportResult.SUCCESS
    assert export(since.collector, "logs", transport) is LogRecordExportResult.SUCCESS

    assert since.metric("spanmeter_telemetry_items_received_total", signal="metrics") == len(METRIC_NAMES)
    assert since.metric("spanmeter_telemetry_items_received_total", signal="logs") == len(LOG_BODIES)
    for signal in ("metrics", "logs"):
        assert since.metric("spanmeter_otlp_requests_total", signal=signal, transport=transport) == 1
    assert since.metric("spanmeter_spans_received_total") == 0


# --- forwarding to another OTLP endpoint -------------------------------------------------------


class OtlpSink(ThreadingHTTPServer):
    """A stand-in OTLP/HTTP backend: keeps every POST as (path, Content-Type, body) and answers 200."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.received: list[tuple[str, str, bytes]] = []
        self.changed = threading.Condition()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, counts: dict[str, int], timeout: float = 10.0) -> dict[str, list[tuple[str, bytes]]]:
        """Block until each path has at least its count of requests; requests by path."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                by_path: dict[str, list[tuple[str, bytes]]] = {}
                for path, content_type, body in self.received:
                    by_path.setdefault(path, []).append((content_type, body))
                if all(len(by_path.get(path, [])) >= count for path, count in counts.items()):
                    return by_path
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"forwarded so far: { {p: len(b) for p, b in by_path.items()} }")
                self.changed.wait(remaining)


class _SinkHandler(BaseHTTPRequestHandler):
    server: OtlpSink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.changed:
            self.server.received.append((self.path, self.headers.get("Content-Type", ""), body))
            self.server.changed.notify_all()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    server = OtlpSink()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def forwarding_collector(start_collector: Callable[..., Collector], sink: OtlpSink) -> Collector:
    return start_collector(
        {
            "exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}, "otlp": {"endpoint": sink.endpoint}},
            "service": {
                "pipelines": {
                    "traces": {"exporters": ["clickhouse", "otlp"]},
                    "metrics": {"receivers": ["otlp"], "exporters": ["otlp"]},
                    "logs": {"receivers": ["otlp"], "exporters": ["otlp"]},
                }
            },
        }
    )


def decoded(requests: list[tuple[str, bytes]], message_type: type[Message]) -> list[Any]:
    """Forwarded bodies, each checked to be protobuf as the OTLP/HTTP spec's Content-Type says."""
    assert {content_type for content_type, _ in requests} == {"application/x-protobuf"}
    return [message_type.FromString(body) for _, body in requests]


def test_otlp_exporter_forwards_traces_metrics_and_logs(
    forwarding_collector: Collector, sink: OtlpSink, store: Client, database: str
) -> None:
    collector = forwarding_collector
    # The non-GenAI span arrives as OTLP/JSON: it is forwarded as protobuf all the same.
    emit(tracer_provider(collector, "http-json"), "GET /users", {"http.request.method": "GET"})
    genai = emit(tracer_provider(collector, "grpc"), "chat gpt-4o-mini", GENAI)
    assert export(collector, "metrics", "http") is MetricExportResult.SUCCESS
    assert export(collector, "logs", "grpc") is LogRecordExportResult.SUCCESS

    forwarded = sink.wait_for({"/v1/traces": 2, "/v1/metrics": 1, "/v1/logs": 1})

    traces = decoded(forwarded["/v1/traces"], ExportTraceServiceRequest)
    spans = {span.name: span for t in traces for r in t.resource_spans for s in r.scope_spans for span in s.spans}
    assert set(spans) == {"GET /users", "chat gpt-4o-mini"}
    assert spans["chat gpt-4o-mini"].span_id.hex() == genai
    assert {a.key for a in spans["GET /users"].attributes} == {"http.request.method"}
    [metrics] = decoded(forwarded["/v1/metrics"], ExportMetricsServiceRequest)
    names = {m.name for r in metrics.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert names == set(METRIC_NAMES)
    [logs] = decoded(forwarded["/v1/logs"], ExportLogsServiceRequest)
    bodies = {rec.body.string_value for r in logs.resource_logs for s in r.scope_logs for rec in s.log_records}
    assert bodies == set(LOG_BODIES)

    # The GenAI span is still stored; the other one is forwarded rather than dropped.
    wait_for_rows(collector, 1)
    assert [row["span_id"] for row in rows(store, database)] == [genai]
    assert metric_value(collector, "spanmeter_spans_dropped_total", reason="not_genai") == 0
    deadline = time.monotonic() + 10
    while metric_value(collector, "spanmeter_forwarded_requests_total", signal="traces", outcome="ok") < 2:
        assert time.monotonic() < deadline, "forwarded traces not counted as ok"
        time.sleep(0.02)
    for signal in ("metrics", "logs"):
        assert metric_value(collector, "spanmeter_forwarded_requests_total", signal=signal, outcome="ok") == 1


# --- the collector's own endpoints -------------------------------------------------------------


def test_healthz(storing: Collector, chdb_path: Path) -> None:
    database = storing.store_config.database  # a collector the module shares; no test sends it spans
    status, content_type, body = http_request(storing, "/healthz")
    assert status == 200
    assert content_type.startswith("application/json")
    # The store is named as any process names it (`spanmeter report --store` checks it before asking).
    store = f"chdb://{os.path.realpath(chdb_path)}"
    expected = {"status": "ok", "store": "ok", "queued_rows": 0, "store_endpoint": store, "database": database}
    assert json.loads(body) == expected


def test_prometheus_metrics_after_a_stored_span(collector: Collector) -> None:
    emit(tracer_provider(collector, "http-protobuf"), "chat gpt-4o-mini", GENAI)
    wait_for_rows(collector, 1)

    status, content_type, _ = http_request(collector, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")  # the Prometheus text format
    samples = {name: value for (name, labels), value in metric_samples(collector).items() if not labels}
    expected = {
        "spanmeter_spans_received_total": 1,
        "spanmeter_spans_stored_total": 1,
        "spanmeter_wal_capacity_bytes": 512 * 1024 * 1024,
        "spanmeter_wal_write_errors_total": 0,
        "spanmeter_spans_dead_lettered_total": 0,
        "spanmeter_batch_rows_count": 1,
        "spanmeter_batch_rows_sum": 1,
        "spanmeter_insert_duration_seconds_count": 1,
        "spanmeter_store_errors_total": 0,
    }
    assert {name: samples.get(name) for name in expected} == expected
    deadline = time.monotonic() + 5  # the segment is released just after its rows are counted stored
    while metric_value(collector, "spanmeter_wal_bytes") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert metric_value(collector, "spanmeter_queue_rows") == 0  # stored: out of the WAL
    assert metric_value(collector, "spanmeter_wal_bytes") == 0
    # Its file is kept to be written over by the next segment: still on disk, counted against the capacity.
    assert 0 < metric_value(collector, "spanmeter_wal_disk_bytes") <= 512 * 1024 * 1024
    assert samples["spanmeter_insert_duration_seconds_sum"] > 0
    assert metric_value(collector, "spanmeter_otlp_requests_total", signal="traces", transport="http") == 1


def test_the_start_log_names_every_endpoint_the_http_port_serves(
    start_collector: Callable[..., Collector], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="spanmeter"):
        collector = start_collector()
    [line] = [r.getMessage() for r in caplog.records if "OTLP/HTTP receiver listening" in r.getMessage()]
    for path in ("/healthz", "/livez", "/readyz", "/metrics", "/v1/report", "/v1/budgets", "/v1/budgets/events"):
        assert path in line, line
        assert http_request(collector, path)[0] != 404, path
