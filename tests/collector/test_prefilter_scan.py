"""The native scan of trace requests (`GenAIPrefilter.scan`, processors/_scan.c) against protobuf's own parser.

What it accepts, protobuf accepts, with the same spans; what protobuf rejects, it hands back (None) for protobuf to
reject with its message. Well-formed requests of every shape OTLP gives them are read, and split exactly: a span
is kept when its scope's name starts with a convention's prefix or one of its attributes' keys is a marker.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spanmeter.conventions import CONVENTIONS
from spanmeter.conventions.base import detection_keys
from spanmeter.processors import prefilter
from spanmeter.processors.prefilter import GenAIPrefilter
from spanmeter.receivers.otlp_codec import BadRequest, split_traces

pytestmark = pytest.mark.skipif(
    prefilter._scan is None, reason="spanmeter.processors._scan is not built (no C compiler at install)"
)

MARKERS, SCOPES = detection_keys(CONVENTIONS)
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.text(max_size=12) | st.sampled_from(["", "é", "日本", "\U0001f600", "a\x00b"])
keys = st.sampled_from([m.decode() for m in MARKERS] + ["http.route", "gen_ai", "llm", "url.full"]) | texts
scope_names = st.sampled_from([*SCOPES, "opentelemetry.instrumentation.flask", "app", ""]) | texts


def any_values(depth: int = 3) -> st.SearchStrategy[AnyValue]:
    scalars = st.one_of(
        texts.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: AnyValue(int_value=v)),
        st.floats().map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=8).map(lambda v: AnyValue(bytes_value=v)),
        st.just(AnyValue()),
    )
    if depth == 0:
        return scalars
    inner = any_values(depth - 1)
    arrays = st.lists(inner, max_size=3).map(lambda vs: _array(vs))
    maps = st.lists(st.tuples(texts, inner), max_size=3).map(lambda kvs: _kvlist(kvs))
    return st.one_of(scalars, arrays, maps)


def _array(values: list[AnyValue]) -> AnyValue:
    value = AnyValue()
    value.array_value.values.extend(values)
    return value


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    value = AnyValue()
    value.kvlist_value.values.extend(KeyValue(key=k, value=v) for k, v in pairs)
    return value


attributes = st.lists(st.builds(KeyValue, key=keys, value=any_values()), max_size=5)


@st.composite
def spans(draw: Any) -> Span:
    span = Span(
        trace_id=draw(st.binary(min_size=16, max_size=16)),
        span_id=draw(st.binary(min_size=8, max_size=8)),
        parent_span_id=draw(st.binary(max_size=8)),
        trace_state=draw(texts),
        name=draw(texts),
        kind=draw(st.integers(0, 5)),
        start_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        end_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        attributes=draw(attributes),
        dropped_attributes_count=draw(st.integers(0, 2**32 - 1)),
        flags=draw(st.integers(0, 2**32 - 1)),
    )
    for _ in range(draw(st.integers(0, 2))):
        span.events.add(time_unix_nano=draw(st.integers(0, 2**64 - 1)), name=draw(texts), attributes=draw(attributes))
    for _ in range(draw(st.integers(0, 1))):
        span.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, trace_state=draw(texts), attributes=draw(attributes))
    if draw(st.booleans()):
        span.status.code = draw(st.integers(0, 2))
        span.status.message = draw(texts)
    return span


@st.composite
def requests(draw: Any) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        resource = request.resource_spans.add(schema_url=draw(texts))
        resource.resource.attributes.extend(draw(attributes))
        for _ in range(draw(st.integers(0, 3))):
            scope = resource.scope_spans.add(schema_url=draw(texts))
            if draw(st.booleans()):
                scope.scope.name = draw(scope_names)
                scope.scope.version = draw(texts)
                scope.scope.attributes.extend(draw(attributes))
            scope.spans.extend(draw(st.lists(spans(), max_size=4)))
    return request


def may_be_genai(scope: ScopeSpans, span: Span) -> bool:
    return scope.scope.name.startswith(SCOPES) or any(a.key.encode() in MARKERS for a in span.attributes)


def expected_subset(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """The request of the spans that may be GenAI, each scope kept with them (or named), each resource with them;
    the rest of each as it was."""
    subset = ExportTraceServiceRequest()
    for resource in request.resource_spans:
        kept_resource = ResourceSpans()
        kept_resource.CopyFrom(resource)
        del kept_resource.scope_spans[:]
        for scope in resource.scope_spans:
            kept = [span for span in scope.spans if may_be_genai(scope, span)]
            if kept or scope.scope.name.startswith(SCOPES):
                kept_scope = kept_resource.scope_spans.add()
                kept_scope.CopyFrom(scope)
                del kept_scope.spans[:]
                kept_scope.spans.extend(kept)
        if kept_resource.scope_spans:
            subset.resource_spans.append(kept_resource)
    return subset


@FUZZ
@given(requests())
def test_a_well_formed_request_is_read_and_split_exactly(request: ExportTraceServiceRequest) -> None:
    body = request.SerializeToString()
    split = GenAIPrefilter().scan(body)
    assert split is not None
    spans = [
        (scope, span) for resource in request.resource_spans for scope in resource.scope_spans for span in scope.spans
    ]
    kept = sum(may_be_genai(scope, span) for scope, span in spans)
    assert (split.spans, split.skipped) == (len(spans), len(spans) - kept)
    if split.skipped == 0:
        assert split.kept is body
    elif kept == 0:
        assert split.kept is None
    else:
        assert split.kept is not None
        assert ExportTraceServiceRequest.FromString(split.kept) == expected_subset(request)


@st.composite
def mutated(draw: Any) -> bytes:
    """A well-formed request's bytes with a few bytes changed, cut, or put in."""
    return mutation(draw, draw(requests()).SerializeToString())


def mutation(draw: Any, well_formed: bytes) -> bytes:
    """`well_formed` with a few bytes changed, cut, or put in."""
    body = bytearray(well_formed)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, len(body)))
        if action == "flip" and at < len(body):
            body[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del body[at : at + draw(st.integers(1, 4))]
        else:
            body[at:at] = draw(st.binary(min_size=1, max_size=3))
    return bytes(body)


@FUZZ
@given(mutated() | st.binary(max_size=64))
def test_what_the_scan_accepts_protobuf_accepts_with_the_same_spans(body: bytes) -> None:
    split = GenAIPrefilter().scan(body)
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except Exception:
        assert split is None, "accepted bytes protobuf rejects"
        return
    if split is not None:
        assert split.spans == sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


def _body_with(span: Span, name: str = "app") -> bytes:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add(spans=[span]).scope.name = name
    return request.SerializeToString()


def test_invalid_utf8_in_a_key_is_left_to_protobuf_which_names_it() -> None:
    body = _body_with(Span(name="x", attributes=[KeyValue(key="gen_ai.system")]))
    body = body.replace(b"gen_ai.system", b"gen_ai.syst\xff\xfe")
    assert GenAIPrefilter().scan(body) is None
    with pytest.raises(BadRequest, match=r"not a valid protobuf ExportTraceServiceRequest.*UTF-8"):
        split_traces(GenAIPrefilter(), body)


def test_a_field_otlp_does_not_define_is_read_by_protobuf_and_split_in_python() -> None:
    marked = Span(name="chat", attributes=[KeyValue(key=MARKERS[0].decode())])
    body = _body_with(marked) + b"\xa0\x06\x01"  # field 100, a varint: an unknown field, kept by protobuf
    assert GenAIPrefilter().scan(body) is None
    split, raw = split_traces(GenAIPrefilter(), body)
    assert (split.spans, split.skipped, raw) == (1, 0, body)


def test_a_scope_name_given_twice_is_left_to_protobuf() -> None:
    """Protobuf keeps the last name: a prefix only the first has must not keep the spans."""
    scope = b"\x0a\x0bopenlit.app" + b"\x0a\x03app"  # InstrumentationScope: name twice
    scope_spans = b"\x0a" + bytes([len(scope)]) + scope + b"\x12\x07" + b"\x2a\x05GET /"  # a span named GET /
    resource_spans = b"\x12" + bytes([len(scope_spans)]) + scope_spans
    body = b"\x0a" + bytes([len(resource_spans)]) + resource_spans
    parsed = ExportTraceServiceRequest.FromString(body)
    assert parsed.resource_spans[0].scope_spans[0].scope.name == "app"
    assert GenAIPrefilter().scan(body) is None
    split, _ = split_traces(GenAIPrefilter(), body)
    assert (split.spans, split.skipped) == (1, 1)


def test_values_nested_deeper_than_the_scan_reads_are_left_to_protobuf() -> None:
    def nested(depth: int) -> AnyValue:
        value = AnyValue(string_value="leaf")
        for _ in range(depth):
            value = _array([value])
        return value

    shallow = _body_with(Span(name="x", attributes=[KeyValue(key="k", value=nested(20))]))
    deep = _body_with(Span(name="x", attributes=[KeyValue(key="k", value=nested(40))]))
    assert GenAIPrefilter().scan(shallow) is not None
    assert GenAIPrefilter().scan(deep) is None
    split, _ = split_traces(GenAIPrefilter(), deep)
    assert split.spans == 1


def test_a_body_the_scan_is_given_as_a_memoryview_is_kept_as_bytes() -> None:
    body = _body_with(Span(name="chat", attributes=[KeyValue(key=MARKERS[0].decode())]))
    split = GenAIPrefilter().scan(memoryview(body))  # type: ignore[arg-type]
    assert split is not None and split.kept == body and isinstance(split.kept, bytes)


SENTINEL = "SENTINEL-TEXT"


@pytest.mark.parametrize(
    "where",
    ["span name", "attribute key", "attribute value", "nested value", "event name", "link state", "scope name"],
)
@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"], ids=repr)
def test_invalid_utf8_anywhere_in_a_string_is_left_to_protobuf(where: str, bad: bytes) -> None:
    """Overlong forms, surrogates and code points past U+10FFFF too, in every kind of string field."""
    span = Span(name="chat")
    if where == "span name":
        span.name = SENTINEL
    elif where == "attribute key":
        span.attributes.add(key=SENTINEL)
    elif where == "attribute value":
        span.attributes.add(key="k", value=AnyValue(string_value=SENTINEL))
    elif where == "nested value":
        span.attributes.add(key="k", value=_kvlist([("inner", AnyValue(string_value=SENTINEL))]))
    elif where == "event name":
        span.events.add(name=SENTINEL)
    elif where == "link state":
        span.links.add(trace_state=SENTINEL)
    body = _body_with(span, name=SENTINEL if where == "scope name" else "app")
    assert GenAIPrefilter().scan(body) is not None
    broken = body.replace(SENTINEL.encode(), bad + SENTINEL.encode()[len(bad) :])
    with pytest.raises(Exception, match="UTF-8"):
        ExportTraceServiceRequest.FromString(broken)
    assert GenAIPrefilter().scan(broken) is None
