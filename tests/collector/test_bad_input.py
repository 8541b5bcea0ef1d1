"""Bad input at the receivers: each kind answered as the OTLP spec says, the rest of a request kept.

Requests are built with the real SDK (spans from a TracerProvider, encoded by the OTLP exporter's
own encoder) and sent over loopback: raw bytes through a real gRPC channel, or an HTTP POST.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from decimal import Decimal
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

from .conftest import (
    TRANSPORTS,
    Since,
    emit,
    http_request,
    otlp_json,
    tracer_provider,
    wait_for_rows,
)

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


# --- bodies that are not OTLP ----------------------------------------------------------------


@pytest.fixture(scope="module")
def answering(start_module_collector: Callable[..., Collector]) -> Collector:
    """One collector for the tests that only read the answer to a request none of whose spans is stored: each
    start costs seconds (the schema's migrations), and these tests leave nothing behind for the next."""
    return start_module_collector(FAST)


def test_grpc_body_that_is_not_protobuf_is_invalid_argument(answering: Collector) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(answering, b"not protobuf at all")
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
        (  # found by test_fuzz_receivers: an unknown key no UTF-8 string can hold made a 500
            JSON,
            None,
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"\\ud800x": null}]}]}]}]}',
            "not valid Unicode",
        ),
    ],
    ids=["protobuf-garbage", "json-truncated", "json-array", "json-wrong-shape", "gzip-garbage", "json-lone-surrogate"],
)
def test_http_body_that_does_not_decode_is_400_with_a_status(
    answering: Collector, content_type: str, encoding: str | None, body: bytes, problem: str
) -> None:
    status, rpc = post_traces(answering, body, content_type, encoding)
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
def test_unsupported_media_is_415(answering: Collector, content_type: str, encoding: str | None, problem: str) -> None:
    body = encode_spans(finished_spans(("chat", chat()))).SerializeToString()
    status, rpc = post_traces(answering, body, content_type, encoding)
    assert status == 415
    assert problem in rpc.message


# --- size limits -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_collector(start_module_collector: Callable[..., Collector]) -> Collector:
    """Both receivers limited to 1 MiB; shared by the module's size tests, which count only their own rows."""
    return start_module_collector(
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
    stored_before = small_collector.exporter.stored_rows
    accepted = ExportTraceServiceResponse.FromString(grpc_export(small_collector, request_of_size(MIB - 4096)))
    assert not accepted.HasField("partial_success")
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(small_collector, request_of_size(MIB + 4096))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    wait_for_rows(small_collector, stored_before + 1)


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
def test_gzip_compressed_export_from_the_sdk_is_stored(since: Since, transport: str) -> None:
    collector = since.collector
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
    since.stored_span_ids(1)
    [row] = since.rows()
    assert (row["span_id"], row["input_tokens"], row["output_tokens"]) == (span_id(spans[0]), 1234, 56)


# --- invalid spans inside a valid request ------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invalid_token_counts_reject_that_span_and_keep_the_rest(since: Since, transport: str) -> None:
    spans = finished_spans(
        ("chat good-1", chat()),
        ("chat negative", chat(input_tokens=-5)),
        ("chat fractional", chat(input_tokens=12.5)),
        ("chat non-numeric", chat(output_tokens="lots")),
        ("chat good-2", chat(input_tokens="42")),
    )
    good, negative, fractional, non_numeric = spans[0], spans[1], spans[2], spans[3]

    export(since.collector, transport, encode_spans(spans))

    refusal = since.refused(3)
    reasons = {
        span_id(negative): "gen_ai.usage.input_tokens: -5 is negative",
        span_id(fractional): "gen_ai.usage.input_tokens: 12.5 is not a whole number",
        span_id(non_numeric): "gen_ai.usage.output_tokens: 'lots' is not a number",
    }
    for rejected, reason in reasons.items():
        [error] = [part for part in refusal.split("; ") if rejected in part]
        assert reason in error
    assert since.stored_span_ids(2) == sorted([span_id(good), span_id(spans[4])])
    assert since.metric("spanmeter_spans_rejected_total", reason="invalid") == 3
    assert since.metric("spanmeter_spans_received_total") == 5


def test_a_valid_request_reports_no_partial_success(since: Since) -> None:
    [span] = finished_spans(("chat", chat()))
    response = export(since.collector, "grpc", encode_spans([span]))
    assert not response.HasField("partial_success")
    assert since.stored_span_ids(1) == [span_id(span)]  # read and stored: a refusal would be counted by now
    assert since.metric("spanmeter_spans_rejected_total", reason="invalid") == 0


# --- spans that are not GenAI ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http-json"])
def test_spans_that_are_not_genai_are_dropped_and_counted(since: Since, transport: str) -> None:
    provider = tracer_provider(since.collector, transport)
    emit(provider, "GET /users", {"http.request.method": "GET", "http.route": "/users"})
    emit(provider, "SELECT users", {"db.system.name": "postgresql", "db.query.text": "SELECT 1"})
    genai = emit(provider, "chat gpt-4o-mini", chat())

    assert since.stored_span_ids(1) == [genai]
    assert since.metric("spanmeter_spans_dropped_total", reason="not_genai") == 2
    assert since.metric("spanmeter_spans_received_total") == 3
    assert since.metric("spanmeter_genai_spans_total", convention="otel_genai") == 1


# --- OTLP/JSON specifics -----------------------------------------------------------------------


def json_request(*spans: tuple[str, dict[str, Any]]) -> tuple[dict[str, Any], list[ReadableSpan]]:
    finished = finished_spans(*spans)
    return otlp_json(encode_spans(finished)), finished


def test_json_with_unknown_fields_is_accepted(since: Since) -> None:
    """The OTLP spec: receivers ignore fields they do not know (a newer sender's additions)."""
    data, spans = json_request(("chat", chat(input_tokens=321)))
    data["someFutureField"] = {"nested": [1, 2, 3]}
    data["resourceSpans"][0]["resourceHint"] = "new"
    data["resourceSpans"][0]["scopeSpans"][0]["scopeExtra"] = 7
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["futureSpanField"] = {"a": "b"}

    status, _, body = http_request(since.collector, "/v1/traces", json.dumps(data).encode(), {"Content-Type": JSON})

    assert status == 200, body
    assert json_format.Parse(body, ExportTraceServiceResponse()).partial_success.rejected_spans == 0
    assert since.stored_span_ids(1) == [span_id(spans[0])]
    assert since.rows()[0]["input_tokens"] == 321


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("traceId", "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
        ("spanId", "resourceSpans[0].scopeSpans[0].spans[0].spanId"),
    ],
)
def test_json_id_that_is_not_hex_is_400_naming_the_field(answering: Collector, field: str, path: str) -> None:
    data, _ = json_request(("chat", chat()))
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0][field] = "not-hex-zz"

    status, rpc = post_traces(answering, json.dumps(data).encode(), JSON)

    assert status == 400
    assert f"{path}: 'not-hex-zz' is not a hex-encoded id" in rpc.message


def test_ids_of_the_wrong_length_reject_only_that_span(since: Since) -> None:
    data, spans = json_request(("chat short-id", chat()), ("chat good", chat()))
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "abcd"

    status, _, body = http_request(since.collector, "/v1/traces", json.dumps(data).encode(), {"Content-Type": JSON})

    assert status == 200, body
    assert not json_format.Parse(body, ExportTraceServiceResponse()).HasField("partial_success")
    assert "trace_id must be 16 bytes, got 2" in since.refused(1)
    assert since.stored_span_ids(1) == [span_id(spans[1])]


# --- out-of-range values: each rejected for its span alone, named; the rest stored ---------------

HOUR_NS = 3600 * 1_000_000_000
YEAR_2000_NS = 946_684_800 * 1_000_000_000


def timed_spans(*spans: tuple[str, dict[str, Any], int | None, int | None]) -> list[ReadableSpan]:
    """Real SDK spans, (name, attributes, start ns, end ns) each; None: the SDK's clock."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bad-input"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("spanmeter.tests")
    for name, attributes, start, end in spans:
        tracer.start_span(name, attributes=attributes, start_time=start).end(end_time=end)
    return list(memory.get_finished_spans())


def rejection(refusal: str, span: ReadableSpan) -> str:
    """The part of a refusal's message about this span (exactly one)."""
    [error] = [part for part in refusal.split("; ") if span_id(span) in part]
    return error


def assert_later_spans_stored(since: Since, transport: str, stored_before: int) -> None:
    """The collector is not wedged: a valid span sent now is stored within seconds (`stored_before`: the rows
    the test stored before it)."""
    [later] = finished_spans(("chat later", chat()))
    response = export(since.collector, transport, encode_spans([later]))
    assert not response.HasField("partial_success")
    assert span_id(later) in since.stored_span_ids(stored_before + 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_token_counts_past_the_plausible_maximum_reject_only_that_span(since: Since, transport: str) -> None:
    """10^9 tokens per count is the most a call may report (processors.genai.max_tokens_per_call);
    above it, and past what UInt64 holds, the span is answered per span, not the request failed."""
    spans = finished_spans(
        ("chat good", chat()),
        ("chat 10^12", chat(input_tokens=10**12)),
        ("chat 10^20 double", chat(output_tokens=1e20)),
        ("chat 10^20 string", chat(input_tokens="1" + "0" * 20)),
        ("chat int64 max", chat(output_tokens=2**63 - 1)),
        ("chat superscript digit", chat(input_tokens="²")),
        ("chat at the maximum", chat(input_tokens=10**9, output_tokens=0)),
    )
    good, too_many, double, string, int64_max, superscript, at_max = spans

    export(since.collector, transport, encode_spans(spans))

    refusal = since.refused(5)
    over = "tokens exceed the maximum of 1,000,000,000 tokens per call (processors.genai.max_tokens_per_call)"
    assert f"gen_ai.usage.input_tokens: 1000000000000 input {over}" in rejection(refusal, too_many)
    assert f"gen_ai.usage.output_tokens: 100000000000000000000 output {over}" in rejection(refusal, double)
    assert f"gen_ai.usage.input_tokens: 100000000000000000000 input {over}" in rejection(refusal, string)
    assert f"gen_ai.usage.output_tokens: 9223372036854775807 output {over}" in rejection(refusal, int64_max)
    assert "gen_ai.usage.input_tokens: '²' is not a number" in rejection(refusal, superscript)
    assert since.stored_span_ids(2) == sorted([span_id(good), span_id(at_max)])
    [row] = since.rows("span_id = {id:String}", id=span_id(at_max))
    assert row["input_tokens"] == 10**9
    assert since.metric("spanmeter_spans_rejected_total", reason="invalid") == 5
    assert_later_spans_stored(since, transport, 2)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_times_out_of_range_reject_only_that_span(since: Since, transport: str) -> None:
    """Start before 2000, start or end more than max_future_skew (1h) ahead, start past what a signed
    64-bit ns timestamp holds: rejected per span. An end before the start is stored with duration 0."""
    now = time.time_ns()
    spans = timed_spans(
        ("chat good", chat(), now - HOUR_NS, now - HOUR_NS + 2_000_000_000),
        ("chat 1999", chat(), YEAR_2000_NS - 1, YEAR_2000_NS + 1_000_000_000),
        ("chat two hours ahead", chat(), now + 2 * HOUR_NS, now + 2 * HOUR_NS + 1),
        ("chat past 2^63", chat(), 2**63 + 5, 2**63 + 6),
        ("chat ends at 2^64-1", chat(), now, 2**64 - 1),
        ("chat ends before it starts", chat(), now, now - 5_000_000_000),
        ("chat at 2000-01-01", chat(), YEAR_2000_NS, YEAR_2000_NS + 1),
    )
    good, y1999, ahead, past_int64, end_max, backwards, y2000 = spans

    export(since.collector, transport, encode_spans(spans))

    refusal = since.refused(4)
    too_far = "is more than 3600s (processors.genai.max_future_skew) ahead of the collector's clock"
    assert (
        f"start_time_unix_nano {YEAR_2000_NS - 1} (1999-12-31T23:59:59Z) is before 2000-01-01T00:00:00Z"
        in rejection(refusal, y1999)
    )
    assert f"start_time_unix_nano {now + 2 * HOUR_NS}" in rejection(refusal, ahead)
    assert too_far in rejection(refusal, ahead)
    assert f"start_time_unix_nano {2**63 + 5} (2262-04-11T23:47:16Z) {too_far}" in rejection(refusal, past_int64)
    assert f"end_time_unix_nano {2**64 - 1} (2554-07-21T23:34:33Z) {too_far}" in rejection(refusal, end_max)
    assert since.stored_span_ids(3) == sorted(map(span_id, (good, backwards, y2000)))
    durations = {row["span_id"]: row["duration_ns"] for row in since.rows()}
    assert durations[span_id(backwards)] == 0
    assert durations[span_id(good)] == 2_000_000_000
    assert_later_spans_stored(since, transport, 3)


def test_the_future_margin_is_configurable(start_collector: Callable[..., Collector], store: Client) -> None:
    since = Since(start_collector({**FAST, "processors": {"genai": {"max_future_skew": "3h"}}}), store)
    now = time.time_ns()
    spans = timed_spans(
        ("chat two hours ahead", chat(), now + 2 * HOUR_NS, now + 2 * HOUR_NS + 1),
        ("chat four hours ahead", chat(), now + 4 * HOUR_NS, now + 4 * HOUR_NS + 1),
    )

    export(since.collector, "grpc", encode_spans(spans))

    refusal = since.refused(1)
    assert "start_time_unix_nano" in rejection(refusal, spans[1])
    assert "more than 10800s (processors.genai.max_future_skew)" in rejection(refusal, spans[1])
    assert since.stored_span_ids(1) == [span_id(spans[0])]


@pytest.fixture(scope="module")
def overpriced(start_module_collector: Callable[..., Collector]) -> Callable[[int], Collector]:
    """`overpriced(workers)`: the collector, shared by the module, that prices 'gold-llm' at $1000 an input
    token and 'absurd-llm' at $10^24, with `service.workers: workers`."""
    overrides = [
        {"model": "gold-llm", "input_per_mtok": 1_000_000_000, "output_per_mtok": 0},
        {"model": "absurd-llm", "input_per_mtok": "1e30", "output_per_mtok": 0},
    ]
    started: dict[int, Collector] = {}

    def collector(workers: int) -> Collector:
        if workers not in started:
            pricing = {"processors": {"pricing": {"overrides": overrides}}, "service": {"workers": workers}}
            started[workers] = start_module_collector({**FAST, **pricing})
        return started[workers]

    return collector


@pytest.mark.parametrize(
    ("transport", "workers"), [*((transport, 0) for transport in TRANSPORTS), ("grpc", 1)], ids=str
)
def test_a_cost_the_columns_cannot_hold_rejects_only_that_span(
    overpriced: Callable[[int], Collector], store: Client, transport: str, workers: int
) -> None:
    """Costs are Decimal(18, 12): at most 999999.999999999999 USD a row. A span priced past it (here by
    an override of $1000 a token, or one so large Decimal's 28 digits cannot round it) is rejected; also
    when pricing runs in a worker process (`service.workers`)."""
    since = Since(overpriced(workers), store)
    spans = finished_spans(
        ("chat good", chat()),
        ("chat $999,000", chat(model="gold-llm", input_tokens=999, output_tokens=0)),
        ("chat $1,000,000", chat(model="gold-llm", input_tokens=1000, output_tokens=0)),
        ("chat $10^24", chat(model="absurd-llm", input_tokens=1, output_tokens=0)),
    )
    good, most, too_much, absurd = spans

    export(since.collector, transport, encode_spans(spans))

    refusal = since.refused(2)
    assert (
        "total_cost 1000000 USD (1000 input_tokens, 0 output_tokens of 'gold-llm') exceeds what the "
        "Decimal(18, 12) cost columns hold (999999.999999999999)" in rejection(refusal, too_much)
    )
    assert "total_cost 1000000000000000000000000 USD (1 input_tokens" in rejection(refusal, absurd)
    assert since.stored_span_ids(2) == sorted([span_id(good), span_id(most)])
    [row] = since.rows("span_id = {id:String}", id=span_id(most))
    assert (row["total_cost"], row["price_status"]) == (Decimal("999000"), "override")
    assert since.metric("spanmeter_spans_rejected_total", reason="invalid") == 2
    assert since.metric("spanmeter_genai_spans_total", convention="otel_genai") == 2
    assert_later_spans_stored(since, transport, 2)


def test_strings_and_maps_past_their_bounds_are_truncated(since: Since) -> None:
    """Promoted columns, tag values and attribute keys keep 1024 characters; tags and attributes
    128 entries (max_attributes), attribute values 4096 (max_attribute_value_length)."""
    attributes = chat(
        model="m" * 5000,
        **{
            "user.id": "u" * 3000,
            "gen_ai.conversation.id": "c" * 3000,
            "spanmeter.tag.feature": "f" * 5000,
            "k" * 3000: "v",
        },
    )
    [span] = finished_spans(("chat long", attributes))
    request = encode_spans([span])
    # More attributes than the SDK's own limit (128) lets a span carry: added to the protobuf.
    added = request.resource_spans[0].scope_spans[0].spans[0].attributes
    for i in range(300):
        added.add(key=f"spanmeter.tag.t{i}").value.string_value = "t" * 2000
        added.add(key=f"extra.{i}").value.string_value = "x" * 9000

    response = export(since.collector, "http-protobuf", request)

    assert not response.HasField("partial_success")
    assert since.stored_span_ids(1) == [span_id(span)]
    [row] = since.rows()
    assert row["request_model"] == "m" * 1024
    assert (row["user_id"], row["conversation_id"], row["feature"]) == ("u" * 1024, "c" * 1024, "f" * 1024)
    assert len(row["tags"]) == 128
    assert all(len(value) <= 1024 for value in row["tags"].values())
    assert len(row["span_attributes"]) == 128
    assert all(len(key) <= 1024 and len(value) <= 4096 for key, value in row["span_attributes"].items())


def test_a_parent_span_id_of_the_wrong_length_rejects_only_that_span(since: Since) -> None:
    spans = finished_spans(("chat good", chat()), ("chat bad parent", chat()))
    request = encode_spans(spans)
    request.resource_spans[0].scope_spans[0].spans[1].parent_span_id = b"\x01" * 5000

    export(since.collector, "grpc", request)

    refusal = since.refused(1)
    assert "parent_span_id must be empty or 8 bytes, got 5000" in rejection(refusal, spans[1])
    assert since.stored_span_ids(1) == [span_id(spans[0])]


def openinference_llm(**extra: Any) -> dict[str, Any]:
    return {
        "openinference.span.kind": "LLM",
        "llm.provider": "openai",
        "llm.token_count.prompt": 10,
        "llm.token_count.completion": 2,
        **extra,
    }


def test_structured_attributes_no_column_can_hold(since: Since) -> None:
    """JSON text inside attributes: lone surrogates (valid JSON, not storable UTF-8) become `?`;
    JSON nested deeper than Python recurses gives no tags, or rejects the span where a field is read."""
    nested = "[" * 100_000 + "]" * 100_000
    spans = finished_spans(
        (
            "surrogates",
            openinference_llm(**{"llm.invocation_parameters": '{"model": "gpt-4o\\ud800"}'})
            | {"metadata": '{"team\\udc80": "ops\\ud83d", "n": 1}'},
        ),
        ("deep metadata", openinference_llm(metadata=nested, **{"llm.model_name": "gpt-4o"})),
        ("deep parameters", openinference_llm(**{"llm.invocation_parameters": nested})),
    )
    surrogates, deep_metadata, deep_parameters = spans

    export(since.collector, "http-protobuf", encode_spans(spans))

    refusal = since.refused(1)
    assert "llm.invocation_parameters: neither JSON nor a literal: '[[[[" in rejection(refusal, deep_parameters)
    stored = since.stored_span_ids(2)
    assert stored == sorted([span_id(surrogates), span_id(deep_metadata)])
    by_id = {row["span_id"]: row for row in since.rows()}
    assert by_id[span_id(surrogates)]["request_model"] == "gpt-4o?"
    assert by_id[span_id(surrogates)]["tags"] == {"team?": "ops?", "n": "1"}
    assert by_id[span_id(deep_metadata)]["tags"] == {}


# --- bodies no span can be read from: 400 / INVALID_ARGUMENT, never 500 or UNKNOWN ------------------


def nested_any_value_request(depth: int) -> ExportTraceServiceRequest:
    """A valid GenAI span with an attribute whose AnyValue arrays nest `depth` deep."""
    request = encode_spans(finished_spans(("chat", chat())))
    value = request.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="nested").value
    for _ in range(depth):
        value = value.array_value.values.add()
    value.int_value = 1
    return request


def json_body_with(replace: str, by: str) -> bytes:
    """A valid OTLP/JSON request, one piece of its text replaced."""
    text = json.dumps(otlp_json(encode_spans(finished_spans(("chat", chat(model="MODEL"))))))
    assert replace in text
    return text.replace(replace, by).encode()


@pytest.mark.parametrize(
    ("content_type", "body", "problem"),
    [
        (JSON, b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested more than 100 levels"),
        (JSON, b'{"resourceSpans": ' + b"[" * 150 + b"]" * 150 + b"}", "nested more than 100 levels"),
        (JSON, json_body_with('"MODEL"', '"\xff\xfe"').replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe"), "not valid JSON"),
        (JSON, json_body_with('"MODEL"', '"\\ud800"'), "Unpaired surrogate"),
        (JSON, json_body_with('"MODEL"', "1" + "0" * 5000), "not valid JSON"),
        (JSON, json_body_with('"100"', '"100000000000000000000"'), "not a valid OTLP/JSON"),
        (PROTOBUF, nested_any_value_request(60).SerializeToString(), "not a valid protobuf"),
    ],
    ids=[
        "json-100000-deep",
        "json-150-deep",
        "json-invalid-utf8",
        "json-lone-surrogate",
        "json-5000-digits",
        "json-int-over-int64",
        "protobuf-anyvalue-60-deep",
    ],
)
def test_bodies_that_cannot_be_read_are_400_and_later_spans_stored(
    since: Since, content_type: str, body: bytes, problem: str
) -> None:
    status, rpc = post_traces(since.collector, body, content_type)
    assert status == 400
    assert rpc.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert problem in rpc.message
    assert len(rpc.message) < 1000
    transport = "http-json" if content_type == JSON else "http-protobuf"
    assert_later_spans_stored(since, transport, 0)


def test_grpc_anyvalue_nested_past_the_parser_limit_is_invalid_argument(since: Since) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(since.collector, nested_any_value_request(60).SerializeToString())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    response = export(since.collector, "grpc", nested_any_value_request(40))
    assert not response.HasField("partial_success")
    assert len(since.stored_span_ids(1)) == 1
    [row] = since.rows()
    assert row["span_attributes"]["nested"] == "[" * 40 + "1" + "]" * 40
    assert_later_spans_stored(since, "grpc", 1)
