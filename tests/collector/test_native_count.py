"""The native count of metrics and logs requests (`otlp_codec.count_protobuf`, processors/_scan.c) against
protobuf's own parser.

The collector needs only a count of a metrics or logs request's items (and forwards its bytes as they came), so
native code reads the bytes, checks them as protobuf's parser does and counts, building no message. What it
accepts, protobuf accepts, with the same count; what protobuf rejects, it hands back (None) for protobuf to reject
with its message.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Exemplar, Metric
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExportResult

from spanmeter.processors import prefilter
from spanmeter.receivers import otlp_codec
from spanmeter.receivers.otlp_codec import SIGNALS, BadRequest, count_items, count_protobuf

from .conftest import Since
from .test_prefilter_scan import FUZZ, any_values, attributes, mutation, texts
from .test_telemetry_signals import LOG_BODIES, METRIC_NAMES, SIGNAL_TRANSPORTS, export

pytestmark = pytest.mark.skipif(
    prefilter._scan is None, reason="spanmeter.processors._scan is not built (no C compiler at install)"
)

u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)
doubles = st.floats()


def native(body: bytes, signal: str) -> int | None:
    return prefilter._scan.count(body, signal)


@st.composite
def exemplars(draw: Any) -> Exemplar:
    exemplar = Exemplar(
        time_unix_nano=draw(u64),
        span_id=draw(st.binary(max_size=8)),
        trace_id=draw(st.binary(max_size=16)),
        filtered_attributes=draw(attributes),
    )
    if draw(st.booleans()):
        exemplar.as_double = draw(doubles)
    else:
        exemplar.as_int = draw(i64)
    return exemplar


def _point(draw: Any, point: Any) -> None:
    """The fields every kind of data point has."""
    point.start_time_unix_nano = draw(u64)
    point.time_unix_nano = draw(u64)
    point.flags = draw(u32)
    point.attributes.extend(draw(attributes))


@st.composite
def metrics(draw: Any) -> Metric:
    metric = Metric(name=draw(texts), description=draw(texts), unit=draw(texts), metadata=draw(attributes))
    kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exponential_histogram", "summary", "none"]))
    for _ in range(draw(st.integers(0, 3)) if kind != "none" else 0):
        if kind in ("gauge", "sum"):
            data = getattr(metric, kind)
            point = data.data_points.add()
            if draw(st.booleans()):
                point.as_double = draw(doubles)
            else:
                point.as_int = draw(i64)
            point.exemplars.extend(draw(st.lists(exemplars(), max_size=2)))
            if kind == "sum":
                metric.sum.aggregation_temporality = draw(st.integers(0, 2))
                metric.sum.is_monotonic = draw(st.booleans())
        elif kind == "histogram":
            point = metric.histogram.data_points.add(
                count=draw(u64),
                sum=draw(doubles),
                bucket_counts=draw(st.lists(u64, max_size=5)),
                explicit_bounds=draw(st.lists(doubles, max_size=4)),
                min=draw(doubles),
                max=draw(doubles),
                exemplars=draw(st.lists(exemplars(), max_size=2)),
            )
            metric.histogram.aggregation_temporality = draw(st.integers(0, 2))
        elif kind == "exponential_histogram":
            point = metric.exponential_histogram.data_points.add(
                count=draw(u64),
                sum=draw(doubles),
                scale=draw(st.integers(-(2**31), 2**31 - 1)),
                zero_count=draw(u64),
                zero_threshold=draw(doubles),
                exemplars=draw(st.lists(exemplars(), max_size=2)),
            )
            for buckets in (point.positive, point.negative):
                if draw(st.booleans()):
                    buckets.offset = draw(st.integers(-(2**31), 2**31 - 1))
                    buckets.bucket_counts.extend(draw(st.lists(u64, max_size=5)))
        else:
            point = metric.summary.data_points.add(count=draw(u64), sum=draw(doubles))
            for _ in range(draw(st.integers(0, 3))):
                point.quantile_values.add(quantile=draw(doubles), value=draw(doubles))
        _point(draw, point)
    return metric


def metrics_requests() -> st.SearchStrategy[ExportMetricsServiceRequest]:
    return otlp_requests(ExportMetricsServiceRequest, "resource_metrics", "scope_metrics", "metrics", metrics())


@st.composite
def log_records(draw: Any) -> LogRecord:
    record = LogRecord(
        time_unix_nano=draw(u64),
        observed_time_unix_nano=draw(u64),
        severity_number=draw(st.integers(0, 24)),
        severity_text=draw(texts),
        attributes=draw(attributes),
        dropped_attributes_count=draw(u32),
        flags=draw(u32),
        trace_id=draw(st.binary(max_size=16)),
        span_id=draw(st.binary(max_size=8)),
        event_name=draw(texts),
    )
    if draw(st.booleans()):
        record.body.CopyFrom(draw(any_values()))
    return record


def logs_requests() -> st.SearchStrategy[ExportLogsServiceRequest]:
    return otlp_requests(ExportLogsServiceRequest, "resource_logs", "scope_logs", "log_records", log_records())


@st.composite
def otlp_requests(draw: Any, request_type: type[Any], resources: str, scopes: str, items: str, item: Any) -> Any:
    """Requests of a few resources of a few scopes (named or not) of a few items each."""
    request = request_type()
    for _ in range(draw(st.integers(0, 3))):
        resource = getattr(request, resources).add(schema_url=draw(texts))
        resource.resource.attributes.extend(draw(attributes))
        for _ in range(draw(st.integers(0, 3))):
            scope = getattr(resource, scopes).add(schema_url=draw(texts))
            if draw(st.booleans()):
                scope.scope.name = draw(texts)
                scope.scope.version = draw(texts)
                scope.scope.attributes.extend(draw(attributes))
            getattr(scope, items).extend(draw(st.lists(item, max_size=4)))
    return request


REQUESTS = {"metrics": metrics_requests(), "logs": logs_requests()}


def protobuf_count(signal: str, body: bytes) -> int:
    return count_items(signal, SIGNALS[signal].request.FromString(body))


@FUZZ
@given(st.sampled_from(sorted(REQUESTS)).flatmap(lambda signal: st.tuples(st.just(signal), REQUESTS[signal])))
def test_a_well_formed_request_is_counted_exactly(case: tuple[str, Any]) -> None:
    signal, request = case
    body = request.SerializeToString()
    assert native(body, signal) == count_items(signal, request)


@st.composite
def mutated(draw: Any) -> tuple[str, bytes]:
    """A well-formed request's bytes with a few bytes changed, cut, or put in."""
    signal = draw(st.sampled_from(sorted(REQUESTS)))
    return signal, mutation(draw, draw(REQUESTS[signal]).SerializeToString())


@FUZZ
@given(mutated() | st.tuples(st.sampled_from(sorted(REQUESTS)), st.binary(max_size=64)))
def test_what_the_count_accepts_protobuf_accepts_with_the_same_count(case: tuple[str, bytes]) -> None:
    signal, body = case
    found = native(body, signal)
    try:
        expected = protobuf_count(signal, body)
    except Exception:
        assert found is None, "accepted bytes protobuf rejects"
        return
    if found is not None:
        assert found == expected


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return bytes([number << 3 | wire]) + (bytes([len(payload)]) if wire == 2 else b"") + payload


def _nested(*numbers: int, payload: bytes) -> bytes:
    """`payload` inside LEN fields of these numbers, outermost first."""
    for number in reversed(numbers):
        payload = _field(number, 2, payload)
    return payload


def test_repeated_numbers_not_packed_are_read_as_protobuf_reads_them() -> None:
    """proto3 writes repeated numbers packed, but parsers accept them a field each: so does the count."""
    histogram_point = _field(6, 1, (3).to_bytes(8, "little")) + _field(6, 1, (4).to_bytes(8, "little"))
    histogram_point += _field(7, 1, b"\x00" * 8)
    buckets = _field(2, 0, b"\x05") + _field(2, 0, b"\x96\x01")
    exponential_point = _field(8, 2, buckets)
    metric = _field(1, 2, b"m") + _nested(9, 1, payload=histogram_point)
    other = _field(1, 2, b"n") + _nested(10, 1, payload=exponential_point)
    body = _nested(1, 2, payload=_field(2, 2, metric) + _field(2, 2, other))
    request = ExportMetricsServiceRequest.FromString(body)
    [histogram, exponential] = request.resource_metrics[0].scope_metrics[0].metrics
    assert list(histogram.histogram.data_points[0].bucket_counts) == [3, 4]
    assert list(exponential.exponential_histogram.data_points[0].positive.bucket_counts) == [5, 150]
    assert native(body, "metrics") == 2


def test_packed_numbers_that_do_not_divide_are_left_to_protobuf_which_rejects_them() -> None:
    point = _field(6, 2, b"\x00" * 7)  # bucket_counts, packed fixed64: 7 bytes
    body = _nested(1, 2, 2, payload=_field(1, 2, b"m") + _nested(9, 1, payload=point))
    assert native(body, "metrics") is None
    with pytest.raises(BadRequest, match="not a valid protobuf ExportMetricsServiceRequest"):
        count_protobuf(SIGNALS["metrics"], body)


def test_invalid_utf8_is_left_to_protobuf_which_names_it() -> None:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add(severity_text="INFO-MARK")
    body = request.SerializeToString().replace(b"INFO-MARK", b"INFO-\xff\xfeRK")
    assert native(body, "logs") is None
    with pytest.raises(BadRequest, match=r"not a valid protobuf ExportLogsServiceRequest.*UTF-8"):
        count_protobuf(SIGNALS["logs"], body)


def test_a_field_otlp_does_not_define_is_counted_by_protobuf() -> None:
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    scope.metrics.add(name="a").gauge.data_points.add(as_int=1)
    scope.metrics.add(name="b")
    body = request.SerializeToString() + b"\xa0\x06\x01"  # field 100, a varint: an unknown field, kept by protobuf
    assert native(body, "metrics") is None
    assert count_protobuf(SIGNALS["metrics"], body) == 2


def test_a_signal_other_than_metrics_or_logs_is_refused() -> None:
    with pytest.raises(ValueError, match=r"metrics.*logs.*'traces'"):
        native(b"", "traces")


@pytest.fixture
def parsed_signals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The signals of the requests the receivers parse with protobuf."""
    parsed: list[str] = []
    parse = otlp_codec.parse_protobuf

    def counting(signal: otlp_codec.Signal, body: bytes) -> Any:
        parsed.append(signal.name)
        return parse(signal, body)

    monkeypatch.setattr(otlp_codec, "parse_protobuf", counting)
    return parsed


@pytest.mark.parametrize("transport", SIGNAL_TRANSPORTS)
def test_sdk_metrics_and_logs_are_counted_without_a_parse(
    since: Since, transport: str, parsed_signals: list[str]
) -> None:
    assert export(since.collector, "metrics", transport) is MetricExportResult.SUCCESS
    assert export(since.collector, "logs", transport) is LogRecordExportResult.SUCCESS
    assert since.metric("spanmeter_telemetry_items_received_total", signal="metrics") == len(METRIC_NAMES)
    assert since.metric("spanmeter_telemetry_items_received_total", signal="logs") == len(LOG_BODIES)
    assert parsed_signals == []
