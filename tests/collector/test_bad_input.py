"""Bad input at the receivers: each kind answered as the OTLP spec says, the rest of a request kept.

Requests are built with the real SDK (spans from a TracerProvider, encoded by the OTLP exporter's
own encoder) and sent over loopback: raw bytes through a real gRPC channel, or an HTTP POST.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from clickhouse_connect.driver.client import Client
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter.service import Collector

from .conftest import TRANSPORTS, emit, http_request, metric_value, otlp_json, rows, tracer_provider, wait_for_rows

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MIB = 1024 * 1024
FAST = {"exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}}}


def chat(model: str = "gpt-4o-mini", input_tokens: Any = 100, output_tokens: Any = 20, **extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        **extra,
    }


def finished_spans(*spans: tuple[str, dict[str, Any]]) -> list[ReadableSpan]:
    """Real SDK spans, (name, attributes) each, kept in memory instead of exported."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bad-input"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for name, attributes in spans:
        emit(provider, name, attributes)
    return list(memory.get_finished_spans())


def span_id(span: ReadableSpan) -> str:
    return format(span.get_span_context().span_id, "016x")


def grpc_export(collector: Collector, body: bytes, compression: grpc.Compression | None = None) -> bytes:
    """The trace service's Export with raw bytes: no serializer, so nothing is checked client-side."""
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        return channel.unary_unary(TRACE_EXPORT)(body, timeout=10, compression=compression)


def export(collector: Collector, transport: str, request: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
    """Send one request over `transport` (see conftest.TRANSPORTS); the decoded response of a 200/OK."""
    if transport == "grpc":
        return ExportTraceServiceResponse.FromString(grpc_export(collector, request.SerializeToString()))
    if transport == "http-protobuf":
        status, _, body = http_request(collector, "/v1/traces", request.SerializeToString(), {"Content-Type": PROTOBUF})
        assert status == 200, body
        return ExportTraceServiceResponse.FromString(body)
    status, _, body = http_request(
        collector, "/v1/traces", json.dumps(otlp_json(request)).encode(), {"Content-Type": JSON}
    )
    assert status == 200, body
    return json_format.Parse(body, ExportTraceServiceResponse())


def rpc_status(content_type: str, body: bytes) -> status_pb2.Status:
    """An OTLP/HTTP error body: a google.rpc.Status in the request's encoding."""
    if content_type.startswith(PROTOBUF):
        return status_pb2.Status.FromString(body)
    assert content_type.startswith(JSON), content_type
    return json_format.Parse(body, status_pb2.Status())


def post_traces(
    collector: Collector, body: bytes, content_type: str, encoding: str | None = None
) -> tuple[int, status_pb2.Status]:
    headers = {"Content-Type": content_type, **({"Content-Encoding": encoding} if encoding else {})}
    status, reply_type, reply = http_request(collector, "/v1/traces", body, headers)
    return status, rpc_status(reply_type, reply)


def stored_span_ids(collector: Collector, store: Client, database: str, count: int) -> list[str]:
    wait_for_rows(collector, count)
    return sorted(row["span_id"] for row in rows(store, database))


# --- bodies that are not OTLP ----------------------------------------------------------------


def test_grpc_body_that_is_not_protobuf_is_invalid_argument(collector: Collector) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(collector, b"not protobuf at all")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf ExportTraceServiceRequest" in raised.value.details()


@pytest.mark.parametrize(
    ("content_type", "encoding", "body", "problem"),
    [
        (PROTOBUF, None, b"not protobuf at all", "not a valid protobuf ExportTraceServiceRequest"),
        (JSON, None, b'{"resourceSpans": [', "not valid JSON"),
        (JSON, None, b"[1, 2, 3]", "must be a JSON object"),
        (JSON, None, b'{"resourceSpans": "many"}', "not a valid OTLP/JSON ExportTraceServiceRequest"),
        (PROTOBUF, "gzip", b"not gzip either", "not valid gzip"),
    ],
    ids=["protobuf-garbage", "json-truncated", "json-array", "json-wrong-shape", "gzip-garbage"],
)
def test_http_body_that_does_not_decode_is_400_with_a_status(
    collector: Collector, content_type: str, encoding: str | None, body: bytes, problem: str
) -> None:
    status, rpc = post_traces(collector, body, content_type, encoding)
    assert status == 400
    assert rpc.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert problem in rpc.message


@pytest.mark.parametrize(
    ("content_type", "encoding", "problem"),
    [
        ("text/plain", None, "Content-Type must be application/x-protobuf or application/json, got text/plain"),
        ("application/x-www-form-urlencoded", None, "got application/x-www-form-urlencoded"),
        (PROTOBUF, "br", "unsupported Content-Encoding 'br'"),
    ],
)
def test_unsupported_media_is_415(collector: Collector, content_type: str, encoding: str | None, problem: str) -> None:
    body = encode_spans(finished_spans(("chat", chat()))).SerializeToString()
    status, rpc = post_traces(collector, body, content_type, encoding)
    assert status == 415
    assert problem in rpc.message


# --- size limits -------------------------------------------------------------------------------


@pytest.fixture
def small_collector(start_collector: Callable[..., Collector]) -> Collector:
    """Both receivers limited to 1 MiB."""
    return start_collector(
        {
            **FAST,
            "receivers": {
                "otlp": {"protocols": {"grpc": {"max_recv_msg_size_mib": 1}, "http": {"max_request_body_size_mib": 1}}}
            },
        }
    )


def request_of_size(size: int) -> bytes:
    """A valid trace request of about `size` bytes: one GenAI span with a padding attribute."""
    return encode_spans(finished_spans(("chat", chat(padding="x" * size)))).SerializeToString()


def test_grpc_request_over_the_limit_is_resource_exhausted(small_collector: Collector) -> None:
    accepted = ExportTraceServiceResponse.FromString(grpc_export(small_collector, request_of_size(MIB - 4096)))
    assert not accepted.HasField("partial_success")
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(small_collector, request_of_size(MIB + 4096))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    wait_for_rows(small_collector, 1)


def test_grpc_gzip_that_inflates_beyond_the_limit_is_resource_exhausted(small_collector: Collector) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(small_collector, request_of_size(8 * MIB), compression=grpc.Compression.Gzip)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in raised.value.details()


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_http_body_over_the_limit_is_413(small_collector: Collector, encoding: str | None) -> None:
    def body(size: int) -> bytes:
        raw = request_of_size(size)
        return gzip.compress(raw) if encoding else raw

    status, _ = post_traces(small_collector, body(MIB - 4096), PROTOBUF, encoding)
    assert status == 200
    status, rpc = post_traces(small_collector, body(MIB + 4096), PROTOBUF, encoding)
    assert status == 413
    assert rpc.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert str(MIB) in rpc.message


def test_gzip_body_that_inflates_beyond_the_limit_is_413(small_collector: Collector) -> None:
    bomb = gzip.compress(b"\0" * (8 * MIB))
    assert len(bomb) < MIB // 64
    status, rpc = post_traces(small_collector, bomb, PROTOBUF, "gzip")
    assert status == 413
    assert "decompressed body exceeds the limit of 1048576 bytes" in rpc.message


# --- compression -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http-protobuf"])
def test_gzip_compressed_export_from_the_sdk_is_stored(
    collector: Collector, store: Client, database: str, transport: str
) -> None:
    if transport == "grpc":
        exporter: Any = GrpcSpanExporter(
            endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, compression=grpc.Compression.Gzip
        )
    else:
        exporter = HttpSpanExporter(
            endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces", compression=HttpCompression.Gzip
        )
    spans = finished_spans(("chat", chat(input_tokens=1234, output_tokens=56)))
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    wait_for_rows(collector, 1)
    [row] = rows(store, database)
    assert (row["span_id"], row["input_tokens"], row["output_tokens"]) == (span_id(spans[0]), 1234, 56)


# --- invalid spans inside a valid request ------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invalid_token_counts_reject_that_span_and_keep_the_rest(
    collector: Collector, store: Client, database: str, transport: str
) -> None:
    spans = finished_spans(
        ("chat good-1", chat()),
        ("chat negative", chat(input_tokens=-5)),
        ("chat fractional", chat(input_tokens=12.5)),
        ("chat non-numeric", chat(output_tokens="lots")),
        ("chat good-2", chat(input_tokens="42")),
    )
    good, negative, fractional, non_numeric = spans[0], spans[1], spans[2], spans[3]

    response = export(collector, transport, encode_spans(spans))

    assert response.partial_success.rejected_spans == 3
    reasons = {
        span_id(negative): "gen_ai.usage.input_tokens: -5 is negative",
        span_id(fractional): "gen_ai.usage.input_tokens: 12.5 is not a whole number",
        span_id(non_numeric): "gen_ai.usage.output_tokens: 'lots' is not a number",
    }
    for rejected, reason in reasons.items():
        [error] = [part for part in response.partial_success.error_message.split("; ") if rejected in part]
        assert reason in error
    assert stored_span_ids(collector, store, database, 2) == sorted([span_id(good), span_id(spans[4])])
    assert metric_value(collector, "spanmeter_spans_rejected_total", reason="invalid") == 3
    assert metric_value(collector, "spanmeter_spans_received_total") == 5


def test_a_valid_request_reports_no_partial_success(collector: Collector) -> None:
    response = export(collector, "grpc", encode_spans(finished_spans(("chat", chat()))))
    assert not response.HasField("partial_success")
    assert metric_value(collector, "spanmeter_spans_rejected_total", reason="invalid") == 0


# --- spans that are not GenAI ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http-json"])
def test_spans_that_are_not_genai_are_dropped_and_counted(
    collector: Collector, store: Client, database: str, transport: str
) -> None:
    provider = tracer_provider(collector, transport)
    emit(provider, "GET /users", {"http.request.method": "GET", "http.route": "/users"})
    emit(provider, "SELECT users", {"db.system.name": "postgresql", "db.query.text": "SELECT 1"})
    genai = emit(provider, "chat gpt-4o-mini", chat())

    assert stored_span_ids(collector, store, database, 1) == [genai]
    assert metric_value(collector, "spanmeter_spans_dropped_total", reason="not_genai") == 2
    assert metric_value(collector, "spanmeter_spans_received_total") == 3
    assert metric_value(collector, "spanmeter_genai_spans_total", convention="otel_genai") == 1


# --- OTLP/JSON specifics -----------------------------------------------------------------------


def json_request(*spans: tuple[str, dict[str, Any]]) -> tuple[dict[str, Any], list[ReadableSpan]]:
    finished = finished_spans(*spans)
    return otlp_json(encode_spans(finished)), finished


def test_json_with_unknown_fields_is_accepted(collector: Collector, store: Client, database: str) -> None:
    """The OTLP spec: receivers ignore fields they do not know (a newer sender's additions)."""
    data, spans = json_request(("chat", chat(input_tokens=321)))
    data["someFutureField"] = {"nested": [1, 2, 3]}
    data["resourceSpans"][0]["resourceHint"] = "new"
    data["resourceSpans"][0]["scopeSpans"][0]["scopeExtra"] = 7
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["futureSpanField"] = {"a": "b"}

    status, _, body = http_request(collector, "/v1/traces", json.dumps(data).encode(), {"Content-Type": JSON})

    assert status == 200, body
    assert json_format.Parse(body, ExportTraceServiceResponse()).partial_success.rejected_spans == 0
    assert stored_span_ids(collector, store, database, 1) == [span_id(spans[0])]
    assert rows(store, database)[0]["input_tokens"] == 321


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("traceId", "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
        ("spanId", "resourceSpans[0].scopeSpans[0].spans[0].spanId"),
    ],
)
def test_json_id_that_is_not_hex_is_400_naming_the_field(collector: Collector, field: str, path: str) -> None:
    data, _ = json_request(("chat", chat()))
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0][field] = "not-hex-zz"

    status, rpc = post_traces(collector, json.dumps(data).encode(), JSON)

    assert status == 400
    assert f"{path}: 'not-hex-zz' is not a hex-encoded id" in rpc.message


def test_ids_of_the_wrong_length_reject_only_that_span(collector: Collector, store: Client, database: str) -> None:
    data, spans = json_request(("chat short-id", chat()), ("chat good", chat()))
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "abcd"

    status, _, body = http_request(collector, "/v1/traces", json.dumps(data).encode(), {"Content-Type": JSON})

    assert status == 200, body
    partial = json_format.Parse(body, ExportTraceServiceResponse()).partial_success
    assert partial.rejected_spans == 1
    assert "trace_id must be 16 bytes, got 2" in partial.error_message
    assert stored_span_ids(collector, store, database, 1) == [span_id(spans[1])]
