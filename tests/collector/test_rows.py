"""A write-ahead-log segment read into rows two ways, the engine (with its columnar stages) and the Python reader
(the reference): the same rows, column for column, and the same refusals, for spans of every convention, invalid
spans, resent calls, senders' keys claiming other projects, redaction, tag rules and price overrides."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from spanmeter.config import GenAIProcessorConfig, PricingProcessorConfig, TagsProcessorConfig
from spanmeter.conventions import CONVENTIONS
from spanmeter.decoding import InlineReader
from spanmeter.exporters.accepted import request_record
from spanmeter.rows import Built, ColumnStages, RowBuilder
from spanmeter.telemetry import CollectorMetrics

from .test_engine_reader import convention_requests, otel_request, sdk_request

GENAI = GenAIProcessorConfig.model_validate(
    {
        "redaction": {"rules": [{"name": "ticket", "regex": r"TICKET-\d{6}"}]},  # attributes redacted (the default)
        "engine_min_spans": 0,
    }
)
PRICING = PricingProcessorConfig.model_validate(
    {"overrides": [{"model": "house-model", "input_per_mtok": "0.25", "output_per_mtok": "1.5"}]}
)
TAGS = TagsProcessorConfig.model_validate(
    {
        "rules": [
            {"tag": "team", "from": "resource.team"},
            {"tag": "route", "from": "span.http.route", "regex": "^/(?P<value>[a-z]+)"},
        ]
    }
)


def segment() -> pa.Table:
    """Requests as the pipeline keeps them: every convention, invalid spans, a resend, keyed senders."""
    now = time.time_ns()
    bodies = [body for convention in CONVENTIONS for body in convention_requests(convention)]
    tagged = sdk_request(
        "app",
        [
            ("chat house-model", {
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "vllm", "gen_ai.request.model": "house-model",
                "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300, "http.route": "/billing/run",
                "support.note": "customer quoted TICKET-123456 and sk-proj-" + "a" * 40,
            }),
        ],
        {"service.name": "billing", "team": "payments"},
    )  # fmt: skip
    # A route past max_attribute_value_length: its tag rule is read by the Python reader, after the engine read the
    # request (and counted its ordinary span).
    long_route = sdk_request(
        "app",
        [
            ("GET /", {"http.request.method": "GET"}),
            ("chat", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                      "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10,
                      "http.route": "/" + "r" * 5000}),
        ],
        {"service.name": "billing"},
    )  # fmt: skip
    invalid = otel_request(**{"attribute:gen_ai.usage.cache_read.input_tokens": AnyValue(int_value=-5)})
    bodies += [tagged, long_route, invalid.SerializeToString(), *sampled(), bodies[0]]  # the last one: a resend
    records = [request_record(body, None, 1, now) for body in bodies]
    # A key of project p1 may write p1 or the default project; p2's spans are refused.
    records += [request_record(convention_requests(CONVENTIONS[-1])[index], "p1", 1, now) for index in range(3)]
    return pa.concat_tables(records)


SAMPLED = {"ot=th:e6666666666666": 0xE6666666666666, "vendor=1,ot=th:not-hex": 0}
"""Tracestates of sampled calls and the threshold kept (a malformed one: none, the call stored all the same)."""


def sampled() -> list[bytes]:
    bodies = []
    for state in SAMPLED:
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                      "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 100}  # fmt: skip
        request = ExportTraceServiceRequest.FromString(
            sdk_request("app", [("chat", attributes)], {"service.name": state})
        )
        for span in request.resource_spans[0].scope_spans[0].spans:
            span.trace_state = state
        bodies.append(request.SerializeToString())
    return bodies


def builder(columns: ColumnStages | None, metrics: CollectorMetrics | None = None) -> RowBuilder:
    reader = InlineReader(GENAI, [PRICING, TAGS])
    return RowBuilder(reader, [], metrics or CollectorMetrics(), retention_days=0, columns=columns)


def stages(store: Client, scratch: Path) -> ColumnStages:
    return ColumnStages(GENAI, PRICING, TAGS, scratch, lambda: store)


def assert_same(engine: Built, reference: Built) -> None:
    assert engine.table.schema.equals(reference.table.schema)
    for name in reference.table.column_names:
        assert engine.table.column(name).to_pylist() == reference.table.column(name).to_pylist(), name
    assert (engine.rejections.count, engine.rejections.messages) == (
        reference.rejections.count,
        reference.rejections.messages,
    )


def test_the_engine_and_the_python_reader_build_the_same_rows(store: Client, tmp_path: Path) -> None:
    requests = segment()
    metrics, reference_metrics = CollectorMetrics(), CollectorMetrics()
    engine = builder(stages(store, tmp_path / "engine"), metrics).build(requests, counted=True)
    reference = builder(None, reference_metrics).build(requests, counted=True)

    assert_same(engine, reference)
    for reason in ("not_genai", "not_a_model_call", "duplicate_call"):
        counted = metrics.spans_dropped.labels(reason)._value.get()
        assert counted == reference_metrics.spans_dropped.labels(reason)._value.get() > 0, reason
    rows = engine.table.to_pylist()
    assert len(rows) > 50
    # What the comparison covers, checked on the rows themselves.
    house = next(row for row in rows if row["request_model"] == "house-model")
    assert (house["price_status"], house["total_cost"]) == ("override", Decimal("0.00075"))
    tags = dict(house["tags"])
    assert tags["team"] == "payments" and tags["route"] == "billing"
    note = dict(house["span_attributes"])["support.note"]
    assert "TICKET-123456" not in note and "sk-proj-" not in note and "[REDACTED:ticket]" in note
    assert {row["convention"] for row in rows} == {c.name for c in CONVENTIONS}
    assert {row["service_name"]: row["sampling_threshold"] for row in rows if row["service_name"] in SAMPLED} == SAMPLED
    assert {row["sampling_threshold"] for row in rows if row["service_name"] not in SAMPLED} == {0}
    # The prompt prefix hash, kept unredacted (genai_spans.prompt_prefix_hash is filled from it at insert).
    hashes = {dict(row["span_attributes"]).get("spanmeter.prompt.prefix_hash") for row in rows}
    assert {f"{n:032x}" for n in range(4)} <= hashes
    refusals = "; ".join(engine.rejections.messages)
    assert "is negative" in refusals and "is not the project of the sender's key ('p1')" in refusals
    assert {row["project"] for row in rows if row["service_name"] == "engine"} >= {"p1"}
    # The resend is recognised (its rows are dropped), and the engine read all but the invalid request.
    assert metrics.spans_dropped.labels("duplicate_call")._value.get() > 0
    assert metrics.engine_fallback_requests._value.get() == 2  # the invalid span's request, the long route's


def test_a_failing_engine_leaves_the_segment_to_the_python_reader(store: Client, tmp_path: Path) -> None:
    """A scratch directory that cannot be made (a file in its way) fails every engine read: the segment is still
    read, by the reference, to the same rows."""
    blocked = tmp_path / "scratch"
    blocked.write_text("not a directory")
    requests = segment()
    metrics = CollectorMetrics()
    built = builder(stages(store, blocked / "engine"), metrics).build(requests, counted=True)

    assert_same(built, builder(None).build(requests, counted=True))
    assert built.table.num_rows > 50
    assert metrics.engine_failures._value.get() == 1


def test_a_segment_below_engine_min_spans_is_read_by_the_python_reader(store: Client, tmp_path: Path) -> None:
    """The engine's planning costs the same for 10 spans as for 50,000: small segments skip it. Its scratch
    directory is blocked here, so an engine read would be counted as a failure."""
    blocked = tmp_path / "scratch"
    blocked.write_text("not a directory")
    config = GENAI.model_copy(update={"engine_min_spans": 10_000})
    metrics = CollectorMetrics()
    columns = ColumnStages(config, PRICING, TAGS, blocked / "engine", lambda: store)
    built = RowBuilder(InlineReader(config, [PRICING, TAGS]), [], metrics, columns=columns).build(
        segment(), counted=True
    )
    assert built.table.num_rows > 50
    assert metrics.engine_failures._value.get() == 0
