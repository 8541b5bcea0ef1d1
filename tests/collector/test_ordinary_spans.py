"""Ordinary spans cost next to nothing: spans that cannot be GenAI are set aside from the request's bytes
(`GenAIPrefilter`) and counted as not GenAI without being decoded, and no GenAI span is missed.

Requests are built with the real SDK (its tracers, the OTLP exporter's encoder); the collector tests send them
over loopback to a real collector on chDB.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter.config import GenAIProcessorConfig
from spanmeter.engine import EngineBatch, EngineReader
from spanmeter.processors import DecodeResult, GenAIProcessor
from spanmeter.processors.prefilter import GenAIPrefilter, Split
from spanmeter.receivers import otlp_codec
from spanmeter.records import COLUMNS
from spanmeter.service import Collector

from .conftest import TRANSPORTS, Since
from .test_bad_input import export, grpc_export
from .test_telemetry_signals import OtlpSink, sink  # noqa: F401 (the sink fixture)

HTTP_SCOPE = "opentelemetry.instrumentation.flask"
DB_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
GENAI_SCOPE = "opentelemetry.instrumentation.openai_v2"  # names no convention: its spans are GenAI by markers


def http_attributes(index: int, url: str = "") -> dict[str, Any]:
    return {
        "http.request.method": "GET",
        "url.full": url or f"https://shop.example.com/api/items/{index}?ref=home",
        "http.route": "/api/items/{id}",
        "http.response.status_code": 200,
        "server.address": "shop.example.com",
        "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64)",
    }


DB = {"db.system.name": "postgresql", "db.query.text": "SELECT id, price FROM items WHERE id = $1"}


def chat(index: int) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 100 + index,
        "gen_ai.usage.output_tokens": 20,
    }


def request_of(spans: list[tuple[str, str, dict[str, Any]]]) -> ExportTraceServiceRequest:
    """(scope, name, attributes) each, ended in this order, encoded as the SDK's OTLP exporters do (one
    resource, spans grouped by scope)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for scope, name, attributes in spans:
        provider.get_tracer(scope).start_span(name, attributes=attributes).end()
    return encode_spans(memory.get_finished_spans())


def mixed(count: int, every: int = 20) -> tuple[ExportTraceServiceRequest, list[str]]:
    """`count` spans, every `every`th a GenAI call, the others HTTP and DB spans; and the GenAI span ids."""
    spans = []
    for index in range(count):
        if index % every == every - 1:
            spans.append((GENAI_SCOPE, "chat gpt-4o-mini", chat(index)))
        elif index % 2:
            spans.append((HTTP_SCOPE, "GET /api/items/{id}", http_attributes(index)))
        else:
            spans.append((DB_SCOPE, "SELECT items", DB))
    request = request_of(spans)
    genai = [
        s.span_id.hex()
        for r in request.resource_spans
        for sc in r.scope_spans
        for s in sc.spans
        if s.name[:4] == "chat"
    ]
    return request, sorted(genai)


def span_count(request: ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def columns(result: DecodeResult) -> list[dict[str, Any]]:
    return [{name: getattr(record, name) for name in COLUMNS} for record in result.records]


def assert_same_reading(request: ExportTraceServiceRequest, body: bytes | None = None) -> dict[str, tuple[int, int]]:
    """The processor reading only what the prefilter keeps gives the rows and counts of reading everything, with
    the request split by native code (`scan`) and in Python (`split`); for each, (spans set aside, handed on)."""
    body = body if body is not None else request.SerializeToString()
    processor = GenAIProcessor(GenAIProcessorConfig())
    whole = processor.decode(request)
    native = GenAIPrefilter().scan(body)
    assert native is not None, "a well-formed request the native scan does not read"
    found = {}
    for name, split in (("native", native), ("python", GenAIPrefilter(native=False).split(request, body))):
        assert split.spans == span_count(request)
        subset = ExportTraceServiceRequest.FromString(split.kept) if split.kept is not None else None
        kept = processor.decode(subset) if subset is not None else DecodeResult()
        assert columns(kept) == columns(whole), name
        assert (kept.non_genai + split.skipped, kept.not_model_calls, kept.rejected) == (
            whole.non_genai,
            whole.not_model_calls,
            whole.rejected,
        ), name
        found[name] = (split.skipped, span_count(subset) if subset is not None else 0)
    return found


def both(skipped: int, kept: int) -> dict[str, tuple[int, int]]:
    return {"native": (skipped, kept), "python": (skipped, kept)}


# --- the prefilter against the processor reading everything ------------------------------------------------


def test_ordinary_scopes_are_set_aside_and_every_genai_span_kept() -> None:
    request, genai = mixed(200)
    assert assert_same_reading(request) == both(200 - len(genai), len(genai))


def test_one_scope_mixing_ordinary_and_genai_spans_is_split_per_span() -> None:
    spans = [("app", f"span {i}", chat(i) if i % 7 == 0 else http_attributes(i)) for i in range(70)]
    assert assert_same_reading(request_of(spans)) == both(60, 10)


def test_a_marker_in_a_value_only_hands_that_span_on() -> None:
    spans = [
        (HTTP_SCOPE, "GET /docs", http_attributes(1, url="https://docs.example.com/?q=gen_ai.operation.name")),
        (HTTP_SCOPE, "GET /", http_attributes(2)),
    ]
    # In Python handed on, then found not GenAI by the processor: still counted as not GenAI, nothing stored. The
    # native scan compares attribute keys: set aside.
    assert assert_same_reading(request_of(spans)) == {"native": (2, 0), "python": (1, 1)}


def test_a_scope_with_the_commonest_marker_once_a_span_is_handed_on_whole() -> None:
    """Counted in the scope's bytes, not looked for span by span: a span holding it twice (key and value) lets an
    ordinary one through, which the processor then counts as not GenAI (the same counts as reading everything)."""
    twice = chat(1) | {"app.note": "gen_ai.operation.name"}
    spans = [("app", "chat", twice), ("app", "GET /", http_attributes(2))]
    assert assert_same_reading(request_of(spans)) == {"native": (1, 1), "python": (0, 2)}
    spans = [("app", "chat", chat(1)), ("app", "GET /", http_attributes(2))]
    assert assert_same_reading(request_of(spans)) == both(1, 1)


def test_spans_of_a_scope_a_convention_names_are_kept_without_markers() -> None:
    spans = [
        ("openlit.instrumentation.openai", "chat", {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5}),
        (DB_SCOPE, "SELECT", DB),
    ]
    assert assert_same_reading(request_of(spans)) == both(1, 1)


def test_every_convention_marker_and_scope_is_looked_for() -> None:
    """Each convention's markers and scopes, taken from the tables: one span each among ordinary ones."""
    from spanmeter.conventions import CONVENTIONS

    spans: list[tuple[str, str, dict[str, Any]]] = [(HTTP_SCOPE, "GET /", http_attributes(0))]
    for convention in CONVENTIONS:
        spans += [
            ("app", f"{convention.name} {m}", {m: "llm", "gen_ai.usage.input_tokens": 3}) for m in convention.markers
        ]
        spans += [(scope, f"{convention.name} scope", {"gen_ai.usage.input_tokens": 3}) for scope in convention.scopes]
    assert assert_same_reading(request_of(spans)) == both(1, len(spans) - 1)


def test_no_marker_and_no_named_scope_decodes_nothing() -> None:
    request = request_of([(HTTP_SCOPE, "GET /", http_attributes(i)) for i in range(30)])
    body = request.SerializeToString()
    assert GenAIPrefilter().scan(body) == Split(30, 30, None)
    assert GenAIPrefilter().split(request, body) == Split(30, 30, None)


def test_all_genai_request_is_handed_on_as_it_is() -> None:
    request = request_of([(GENAI_SCOPE, "chat", chat(i)) for i in range(10)])
    body = request.SerializeToString()
    for split in (GenAIPrefilter().scan(body), GenAIPrefilter().split(request, body)):
        assert split is not None and split.kept is body and (split.spans, split.skipped) == (10, 0)


def _field(number: int, payload: bytes, length: bytes | None = None) -> bytes:
    """A length-delimited protobuf field; `length` overrides the (canonical) length varint."""
    size = len(payload)
    if length is None:
        length = bytes([size]) if size < 0x80 else bytes([size & 0x7F | 0x80, size >> 7])
    return bytes([number << 3 | 2]) + length + payload


def test_a_marker_key_with_a_non_minimal_length_varint_is_found() -> None:
    """Protobuf parsers accept a length written in more bytes than needed; the marker's bytes are still there."""
    model = _field(1, b"gen_ai.request.model") + _field(2, AnyValue(string_value="gpt-4o").SerializeToString())
    key = b"gen_ai.operation.name"
    marker = _field(1, key, length=bytes([len(key) | 0x80, 0])) + _field(
        2, AnyValue(string_value="chat").SerializeToString()
    )
    template = request_of([("app", "chat", {}), ("app", "GET /", http_attributes(0))])
    genai, ordinary = template.resource_spans[0].scope_spans[0].spans
    span = genai.SerializeToString() + _field(9, model) + _field(9, marker)  # attributes, field 9
    scope = _field(1, b"\x0a\x03app") + _field(2, span) + _field(2, ordinary.SerializeToString())
    resource = template.resource_spans[0].resource.SerializeToString()
    body = _field(1, _field(1, resource) + _field(2, scope))
    request = ExportTraceServiceRequest.FromString(body)
    assert {a.key for a in request.resource_spans[0].scope_spans[0].spans[0].attributes} >= {key.decode()}
    assert assert_same_reading(request, body) == both(1, 1)
    assert len(GenAIProcessor(GenAIProcessorConfig()).decode(request).records) == 1


def test_bytes_it_does_not_walk_hand_everything_on() -> None:
    """A group (an unknown field's old wire type, which parsers keep): nothing is set aside."""
    request, _ = mixed(40)
    body = request.SerializeToString() + b"\x7b\x08\x01\x7c"  # field 15: start group, a varint, end group
    parsed = ExportTraceServiceRequest.FromString(body)
    assert GenAIPrefilter().scan(body) is None  # outside what the native scan reads: parsed, then split in Python
    assert GenAIPrefilter().split(parsed, body) == Split(40, 0, body)


# --- through a real collector ------------------------------------------------------------------------------


@pytest.fixture
def decoded_spans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spans handed to a reader (the engine's or the Python one), per request it reads."""
    handed: list[int] = []
    decode = GenAIProcessor.decode
    read = EngineReader.read

    def counting(self: GenAIProcessor, request: ExportTraceServiceRequest, latest: int | None = None) -> DecodeResult:
        handed.append(span_count(request))
        return decode(self, request, latest)

    def counting_engine(self: EngineReader, bodies: Sequence[bytes], latest_ns: Sequence[int]) -> EngineBatch:
        handed.extend(span_count(ExportTraceServiceRequest.FromString(body)) for body in bodies)
        return read(self, bodies, latest_ns)

    monkeypatch.setattr(GenAIProcessor, "decode", counting)
    monkeypatch.setattr(EngineReader, "read", counting_engine)
    return handed


@pytest.fixture
def parsed_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The signals of the requests receivers parse with protobuf, and the requests split in Python (the native
    scan reads well-formed trace requests, and OTLP/JSON ones once json_format has parsed them)."""
    parsed: list[str] = []
    parse = otlp_codec.parse_protobuf

    def counting(signal: otlp_codec.Signal, body: bytes) -> Any:
        parsed.append(signal.name)
        return parse(signal, body)

    monkeypatch.setattr(otlp_codec, "parse_protobuf", counting)  # the receivers parse through otlp_codec only
    split = GenAIPrefilter.split

    def splitting(self: GenAIPrefilter, request: ExportTraceServiceRequest, body: bytes) -> Split:
        parsed.append("split in Python")
        return split(self, request, body)

    monkeypatch.setattr(GenAIPrefilter, "split", splitting)
    return parsed


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_mixed_request_stores_exactly_its_genai_spans(
    since: Since, transport: str, decoded_spans: list[int], parsed_requests: list[str]
) -> None:
    request, genai = mixed(120)
    response = export(since.collector, transport, request)
    assert not response.HasField("partial_success")
    since.stored_span_ids(len(genai))
    time.sleep(0.3)  # anything else would have been stored by now
    assert sorted(row["span_id"] for row in since.rows()) == genai
    assert since.metric("spanmeter_spans_received_total") == 120
    assert since.metric("spanmeter_spans_dropped_total", reason="not_genai") == 120 - len(genai)
    assert decoded_spans == [len(genai)]  # the ordinary spans never reached the processor
    assert parsed_requests == []  # read by the native scan (OTLP/JSON parsed by json_format first)


def test_a_request_without_markers_is_answered_counted_and_not_decoded(since: Since, decoded_spans: list[int]) -> None:
    request = request_of([(HTTP_SCOPE, "GET /", http_attributes(i)) for i in range(50)])
    response = export(since.collector, "grpc", request)
    assert not response.HasField("partial_success")
    assert since.metric("spanmeter_spans_received_total") == 50
    assert since.metric("spanmeter_spans_dropped_total", reason="not_genai") == 50
    assert decoded_spans == []
    assert since.rows() == []


def test_a_request_without_markers_is_forwarded_unchanged(
    start_collector: Callable[..., Collector],
    sink: OtlpSink,  # noqa: F811 (the fixture imported above)
    decoded_spans: list[int],
) -> None:
    collector = start_collector(
        {
            "exporters": {"otlp": {"endpoint": sink.endpoint}},
            "service": {"pipelines": {"traces": {"exporters": ["clickhouse", "otlp"]}}},
        }
    )
    body = request_of([(DB_SCOPE, "SELECT", DB) for _ in range(20)]).SerializeToString()
    grpc_export(collector, body)
    [(_, forwarded)] = sink.wait_for({"/v1/traces": 1})["/v1/traces"]
    assert forwarded == body
    assert decoded_spans == []
