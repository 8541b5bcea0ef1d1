"""Fuzzing both receivers with hypothesis: random bytes, mutated OTLP protobuf, OTLP-shaped JSON with
anything in it, and well-formed requests carrying extreme values (AnyValue trees, int64/uint64 edges,
long and unusual strings, NaN and infinite doubles), sent over loopback to a real collector on chDB.

Whatever arrives, the answer is one of the documented statuses (README, "Answers to senders"): never
HTTP 500 nor gRPC UNKNOWN/INTERNAL; what was valid in it is stored (a row that passed validation but
could not be inserted would block the store); and valid spans sent afterwards are stored. Bounded:
a few hundred examples per transport, well under 30 s together.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from clickhouse_connect.driver.client import Client
from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from spanmeter.conventions import CONVENTIONS
from spanmeter.service import Collector

from .conftest import TRANSPORTS, emit, http_request, otlp_json, tracer_provider
from .test_bad_input import JSON, PROTOBUF, TRACE_EXPORT, chat, finished_spans, nested_any_value_request

HTTP_STATUSES = {200, 400, 413, 415, 503}
GRPC_STATUSES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
}
FUZZ = settings(
    max_examples=150,
    deadline=None,  # loopback round trips, not the code under test, set the pace
    database=None,  # no .hypothesis/ directory in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

NOW_NS = time.time_ns()
YEAR_2000_NS = 946_684_800 * 1_000_000_000
HOUR_NS = 3600 * 1_000_000_000

# --- strategies ----------------------------------------------------------------------------------


def mostly(usual: st.SearchStrategy[Any], unusual: st.SearchStrategy[Any], one_in: int = 10) -> st.SearchStrategy[Any]:
    """`unusual` one time in `one_in`: enough spans get past ids and times to reach pricing and the store."""
    return st.integers(1, one_in).flatmap(lambda n: unusual if n == 1 else usual)


# Every attribute a convention reads (JSON paths as their attribute), plus tag prefixes and others.
READ_KEYS = sorted({key.split("#", 1)[0] for convention in CONVENTIONS for key in convention.consumed})
KEYS = st.one_of(
    st.sampled_from(READ_KEYS),
    st.sampled_from(["spanmeter.tag.feature", "spanmeter.tag.user_id", "ai.telemetry.metadata.userId", "x" * 2000]),
    st.text(max_size=12),
)
SCOPES = st.one_of(
    st.sampled_from(
        [
            "",
            "openinference.instrumentation.openai",
            "langsmith",
            "openlit",
            "logfire",
            "pydantic-ai",
            "com.anthropic.sdk",
            "opentelemetry.instrumentation.openai.v1",
            "traceloop",
        ]
    ),
    st.text(max_size=20),
)
INT64 = st.one_of(
    st.sampled_from([0, 1, -1, 10**9, 10**9 + 1, 2**53 + 1, 2**63 - 1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
)
UINT64_TIMES = st.one_of(
    st.sampled_from(
        [
            0,
            YEAR_2000_NS - 1,
            YEAR_2000_NS,
            NOW_NS,
            NOW_NS - 10**9,
            NOW_NS + HOUR_NS - 10**9,
            NOW_NS + 2 * HOUR_NS,
            2**63 - 1,
            2**63,
            2**64 - 1,
        ]
    ),
    st.integers(0, 2**64 - 1),
)
PLAUSIBLE_TIMES = st.one_of(
    st.sampled_from([YEAR_2000_NS, NOW_NS, NOW_NS + HOUR_NS - 10**9]),
    st.integers(NOW_NS - 40 * 24 * HOUR_NS, NOW_NS),
)
TIMES = mostly(PLAUSIBLE_TIMES, UINT64_TIMES, one_in=3)
DOUBLES = st.one_of(st.floats(), st.sampled_from([1e20, 1e300, -0.0, 0.5, 1e9, 1e9 + 1]))
STRINGS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "chat",
            "LLM",
            "openai",
            "anthropic",
            "gpt-4o-mini",
            "claude-sonnet-4-5",
            "ai.generateText.doGenerate",
            "123",
            "-5",
            "1e5",
            "²",
            "١٢",
            "1" * 40,
            "NaN",
            "\x00",
            '{"model": "gpt-4o\\ud800", "usage": {"input_tokens": 1e400}}',
            '{"a": [1, {"b": "\\udc80"}], "n": 12345678901234567890123}',
            "{'cache_read': 5, 'k': (1, 2)}",
        ]
    ),
    # Long ones built from short specs (a strategy's repr stays short).
    st.sampled_from([("x", 5000, ""), ("é", 1500, ""), ("[", 3000, "]"), ('["stop", ' + "[", 1500, "]")]).map(
        lambda spec: spec[0] * spec[1] + spec[2] * spec[1]
    ),
)
LEAVES = st.one_of(
    st.tuples(st.just("string_value"), STRINGS),
    st.tuples(st.just("int_value"), INT64),
    st.tuples(st.just("double_value"), DOUBLES),
    st.tuples(st.just("bool_value"), st.booleans()),
    st.tuples(st.just("bytes_value"), st.binary(max_size=20)),
    st.tuples(st.just("empty"), st.none()),
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.tuples(st.just("array_value"), st.lists(children, max_size=4)),
        st.tuples(st.just("kvlist_value"), st.lists(st.tuples(KEYS, children), max_size=4)),
    ),
    max_leaves=12,
)
GENAI_BASE = [
    ("gen_ai.operation.name", ("string_value", "chat")),
    ("gen_ai.provider.name", ("string_value", "openai")),
    ("gen_ai.request.model", ("string_value", "gpt-4o-mini")),
]


def fill(target: AnyValue, value: tuple[str, Any]) -> None:
    """Set an AnyValue from a strategy's (kind, payload) tree."""
    kind, payload = value
    if kind == "empty":
        return
    if kind == "array_value":
        target.array_value.SetInParent()
        for child in payload:
            fill(target.array_value.values.add(), child)
    elif kind == "kvlist_value":
        target.kvlist_value.SetInParent()
        for key, child in payload:
            fill(target.kvlist_value.values.add(key=key).value, child)
    else:
        setattr(target, kind, payload)


ATTRIBUTES = st.lists(st.tuples(KEYS, VALUES), max_size=6)
SPANS = st.fixed_dictionaries(
    {
        "genai": mostly(st.just(True), st.just(False), one_in=4),
        "trace_id": mostly(st.binary(min_size=16, max_size=16), st.binary(max_size=20)),
        "span_id": mostly(st.binary(min_size=8, max_size=8), st.binary(max_size=10)),
        "parent_span_id": mostly(st.sampled_from([b"", b"\x01" * 8]), st.binary(max_size=10)),
        "name": STRINGS,
        "start": TIMES,
        "end": TIMES,
        "status": st.integers(0, 7),  # proto3 enums are open: unknown codes arrive too
        "attributes": ATTRIBUTES,
    }
)


@st.composite
def extreme_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    """Well-formed OTLP requests whose spans carry extreme values: the genai processor reads them all."""
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        resource_spans = request.resource_spans.add()
        resource = st.tuples(
            st.sampled_from(["service.name", "spanmeter.project", "deployment.environment.name"]), VALUES
        )
        for key, value in draw(st.lists(resource, max_size=3)):
            fill(resource_spans.resource.attributes.add(key=key).value, value)
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = draw(SCOPES)
        for spec in draw(st.lists(SPANS, min_size=1, max_size=4)):
            span = scope_spans.spans.add(
                trace_id=spec["trace_id"],
                span_id=spec["span_id"],
                parent_span_id=spec["parent_span_id"],
                name=spec["name"],
                start_time_unix_nano=spec["start"],
                end_time_unix_nano=spec["end"],
            )
            span.status.code = spec["status"]
            for key, value in (GENAI_BASE if spec["genai"] else []) + spec["attributes"]:
                fill(span.attributes.add(key=key).value, value)
    return request


def valid_bodies() -> list[bytes]:
    """Requests the real SDK encodes, to mutate."""
    spans = finished_spans(
        ("chat", chat()),
        ("chat", chat(model="claude-sonnet-4-5", **{"gen_ai.usage.cache_read.input_tokens": 10})),
        ("GET /", {"http.route": "/"}),
    )
    return [encode_spans(spans).SerializeToString(), encode_spans(spans[:1]).SerializeToString()]


@st.composite
def mutated(draw: st.DrawFn, bodies: st.SearchStrategy[bytes]) -> bytes:
    """A body with bit flips, truncation, splices, insertions, deletions or duplicated runs."""
    body = bytearray(draw(bodies))
    for _ in range(draw(st.integers(1, 6))):
        if not body:
            break
        at = draw(st.integers(0, len(body) - 1))
        operation = draw(st.sampled_from(["flip", "truncate", "splice", "insert", "delete", "duplicate"]))
        if operation == "flip":
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "truncate":
            del body[at:]
        elif operation == "splice":
            other = draw(bodies)
            body[at:] = other[draw(st.integers(0, max(len(other) - 1, 0))) :]
        elif operation == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del body[at : at + draw(st.integers(1, 16))]
        else:
            body[at:at] = body[at : at + draw(st.integers(1, 64))]
    return bytes(body)


def sampled(bodies: list[bytes]) -> st.SearchStrategy[bytes]:
    """One of `bodies` (by index: the strategy's repr, shown in failures, stays short)."""
    return st.sampled_from(range(len(bodies))).map(bodies.__getitem__)


# AnyValue arrays nested up to and past the protobuf parser's depth limit (upb: 100 messages).
NESTED_BODIES = [nested_any_value_request(depth).SerializeToString() for depth in (1, 20, 45, 47, 48, 60, 120)]
PROTOBUF_BODIES = st.one_of(
    st.binary(max_size=512),
    sampled(NESTED_BODIES),
    mutated(sampled(valid_bodies())),
    # Twice: the requests whose spans reach pricing and the store are the ones most worth sending.
    extreme_requests().map(ExportTraceServiceRequest.SerializeToString),
    extreme_requests().map(ExportTraceServiceRequest.SerializeToString),
    mutated(extreme_requests().map(ExportTraceServiceRequest.SerializeToString)),
)

# OTLP/JSON: the spec's shape with anything in its places.
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), STRINGS, st.sampled_from(["NaN", "Infinity", "-1"])
)
JSON_ANY = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
JSON_VALUES = st.recursive(
    mostly(
        st.one_of(
            st.builds(lambda v: {"stringValue": v}, STRINGS),
            st.builds(lambda v: {"intValue": v}, st.one_of(INT64, INT64.map(str))),
            st.builds(lambda v: {"doubleValue": v}, st.one_of(DOUBLES, st.sampled_from(["NaN", "-Infinity"]))),
            st.builds(lambda v: {"boolValue": v}, st.booleans()),
            st.builds(lambda v: {"bytesValue": v}, st.binary(max_size=9).map(lambda b: base64.b64encode(b).decode())),
        ),
        # Values of the wrong type, past int64, not base64...: the whole request is 400.
        st.one_of(
            JSON_ANY,
            st.builds(lambda v: {"intValue": v}, st.one_of(st.integers(), STRINGS, st.just("1e999"))),
            st.builds(lambda v: {"stringValue": v}, JSON_ANY),
            st.builds(lambda v: {"boolValue": v}, JSON_SCALARS),
            st.builds(lambda v: {"bytesValue": v}, STRINGS),
        ),
    ),
    lambda children: st.one_of(
        st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(children, max_size=3)),
        st.builds(
            lambda kvs: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kvs]}},
            st.lists(st.tuples(KEYS, children), max_size=3),
        ),
    ),
    max_leaves=10,
)
GENAI_JSON = [("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai")]
HEX_IDS = st.one_of(st.binary(min_size=16, max_size=16).map(bytes.hex), st.binary(max_size=20).map(bytes.hex), STRINGS)
JSON_SPANS = st.fixed_dictionaries(
    {
        "traceId": mostly(st.binary(min_size=16, max_size=16).map(bytes.hex), HEX_IDS),
        "spanId": mostly(st.binary(min_size=8, max_size=8).map(bytes.hex), HEX_IDS),
        "name": mostly(STRINGS, JSON_ANY),
        "startTimeUnixNano": mostly(TIMES.map(str), st.one_of(UINT64_TIMES, st.integers(), JSON_ANY)),
        "endTimeUnixNano": mostly(TIMES.map(str), UINT64_TIMES),
        "attributes": st.lists(
            mostly(st.builds(lambda k, v: {"key": k, "value": v}, KEYS, JSON_VALUES), JSON_ANY), max_size=8
        ).map(lambda attributes: [{"key": k, "value": {"stringValue": v}} for k, v in GENAI_JSON] + attributes),
    },
    optional={"parentSpanId": HEX_IDS, "status": JSON_ANY, "kind": JSON_ANY, "futureField": JSON_ANY},
)
JSON_REQUESTS = st.builds(
    lambda resource, scope, spans, extra: {
        "resourceSpans": [
            {"resource": {"attributes": resource}, "scopeSpans": [{"scope": {"name": scope}, "spans": spans}]}
        ],
        **extra,
    },
    st.lists(st.builds(lambda k, v: {"key": k, "value": v}, KEYS, JSON_VALUES), max_size=3),
    st.one_of(SCOPES, JSON_ANY),
    st.lists(JSON_SPANS, max_size=3),
    st.dictionaries(st.text(max_size=8), JSON_ANY, max_size=2),
)


def json_text(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity written as JSON's Python dialect does: 400 or read


NESTING = st.integers(1, 3000) | st.sampled_from([100_000])
JSON_BODIES = st.one_of(
    NESTING.map(lambda n: b'{"resourceSpans": ' + b"[" * n + b"]" * n + b"}"),
    NESTING.map(lambda n: b'{"a": ' + b'{"a": ' * n + b"1" + b"}" * (n + 1)),
    JSON_REQUESTS.map(json_text),
    JSON_ANY.map(json_text),
    extreme_requests().map(lambda request: json_text(otlp_json(request))),
    extreme_requests().map(lambda request: json_text(otlp_json(request))),
    mutated(JSON_REQUESTS.map(json_text)),
    st.binary(max_size=256),
)


# --- the tests -------------------------------------------------------------------------------------


@pytest.fixture
def collector(start_collector: Callable[..., Collector]) -> Collector:
    """Segments sealed each second, not each 100 ms: fuzzing sends hundreds of requests, and each segment costs an
    engine read and an insert through every rollup's view; the valid spans sent afterwards wait behind them."""
    return start_collector({"exporters": {"clickhouse": {"batch": {"max_age": "1s"}}}})


@pytest.fixture
def grpc_channel(collector: Collector) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        yield channel


def test_grpc_answers_any_body_with_a_documented_status(
    collector: Collector, store: Client, database: str, grpc_channel: grpc.Channel
) -> None:
    export = grpc_channel.unary_unary(TRACE_EXPORT)

    @FUZZ
    @given(PROTOBUF_BODIES)
    def send(body: bytes) -> None:
        try:
            reply = export(body, timeout=10)
        except grpc.RpcError as error:
            assert error.code() in GRPC_STATUSES, (error.code(), error.details())
        else:
            ExportTraceServiceResponse.FromString(reply)

    send()
    assert_valid_spans_stored_afterwards(collector, store, database)


@pytest.mark.parametrize(
    ("content_type", "bodies"), [(PROTOBUF, PROTOBUF_BODIES), (JSON, JSON_BODIES)], ids=["protobuf", "json"]
)
def test_http_answers_any_body_with_a_documented_status(
    collector: Collector, store: Client, database: str, content_type: str, bodies: st.SearchStrategy[bytes]
) -> None:
    @FUZZ
    @given(bodies)
    def send(body: bytes) -> None:
        status, reply_type, reply = http_request(collector, "/v1/traces", body, {"Content-Type": content_type})
        assert status in HTTP_STATUSES, (status, reply[:500])
        parse: Callable[[bytes, Any], Any] = (
            (lambda data, message: message.FromString(data))
            if reply_type.startswith(PROTOBUF)
            else (lambda data, message: json_format.Parse(data, message()))
        )
        parse(reply, ExportTraceServiceResponse if status == 200 else status_pb2.Status)

    send()
    assert_valid_spans_stored_afterwards(collector, store, database)


def assert_valid_spans_stored_afterwards(collector: Collector, store: Client, database: str) -> None:
    """Valid spans sent after the fuzzing, over each transport by the real SDK, are stored within seconds."""
    sent = {emit(tracer_provider(collector, transport), "chat after", chat()) for transport in TRANSPORTS}
    deadline = time.monotonic() + 20
    while True:
        stored = {
            row[0]
            for row in store.query(
                "SELECT span_id FROM {database:Identifier}.genai_spans WHERE span_id IN {ids:Array(String)}",
                parameters={"database": database, "ids": sorted(sent)},
            ).result_rows
        }
        if stored == sent:
            return
        assert time.monotonic() < deadline, f"stored {len(stored)} of the {len(sent)} spans sent after fuzzing"
        time.sleep(0.05)
