"""The engine reader (ClickHouse, chDB) against the Python reader (`GenAIProcessor.decode`), row for row: spans the
real OTel SDK made for every convention, generated from the convention tables; invalid spans, which must fall back
to the Python reader; and random attribute values (hypothesis)."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from clickhouse_connect.driver.client import Client
from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter.config import GenAIProcessorConfig
from spanmeter.conventions import CONVENTIONS, Convention, Field
from spanmeter.conventions.base import JSON_PATH, TOKEN_FIELDS
from spanmeter.engine import EngineBatch, EngineReader
from spanmeter.engine import reader as engine_reader
from spanmeter.exporters.accepted import request_record
from spanmeter.exporters.clickhouse import to_arrow
from spanmeter.privacy import CONTENT_ATTRIBUTES
from spanmeter.processors import GenAIProcessor

from .sampling_helpers import ConsistentSampler

LATEST = time.time_ns() + 3600 * 10**9
CONFIG = GenAIProcessorConfig.model_validate({"redaction": {"attributes": False}})
"""Unredacted: the engine's table is redacted afterwards by whoever stores it."""
EXTRA = ["has_usage", "response_id", "request"]
TOKENS = {
    Field.INPUT_TOKENS: 1000,
    Field.UNCACHED_INPUT_TOKENS: 850,
    Field.OUTPUT_TOKENS: 200,
    Field.CACHE_READ_TOKENS: 100,
    Field.CACHE_WRITE_TOKENS: 50,
    Field.REASONING_TOKENS: 20,
}


def compare(reader: EngineReader, bodies: list[bytes], config: GenAIProcessorConfig = CONFIG) -> EngineBatch:
    """Read `bodies` with both readers; every request the engine read gives the reference's rows and counts."""
    batch = reader.read(bodies, [LATEST] * len(bodies))
    reference = GenAIProcessor(config)
    non_genai = not_model_calls = 0
    requests = batch.table.column("request")
    assert batch.table.num_rows == 0 or pc.all(pc.less_equal(requests[:-1], requests[1:])).as_py() is not False
    for index, body in enumerate(bodies):
        if index in batch.fallback:
            continue
        result = reference.decode(ExportTraceServiceRequest.FromString(body), latest=LATEST)
        assert result.rejected == 0, (index, result.message)
        expected = to_arrow(result.records)
        rows = batch.table.filter(pc.equal(requests, index))
        got = rows.drop_columns(EXTRA)
        assert got.schema == expected.schema
        for name in expected.column_names:
            assert got.column(name).to_pylist() == expected.column(name).to_pylist(), (index, name)
        assert got.equals(expected)
        assert rows.column("has_usage").to_pylist() == [r.has_usage for r in result.records]
        assert rows.column("response_id").to_pylist() == [r.response_id for r in result.records]
        non_genai += result.non_genai
        not_model_calls += result.not_model_calls
    assert not any(pc.is_in(requests, value_set=pc.cast(batch.fallback, requests.type)).to_pylist())
    assert (batch.non_genai, batch.not_model_calls) == (non_genai, not_model_calls)
    return batch


NOT_BUILT = pytest.mark.skipif(
    engine_reader._flatten is None, reason="spanmeter.engine._flatten is not built (no C compiler at install)"
)


@pytest.fixture(params=[pytest.param(True, id="flattened", marks=NOT_BUILT), pytest.param(False, id="protobuf")])
def reader(store: Client, tmp_path: Path, request: pytest.FixtureRequest) -> EngineReader:
    """Each test through both ways the engine reads requests: flattened by `_flatten`, or by ClickHouse's Protobuf
    format and the query's ARRAY JOINs."""
    return EngineReader(CONFIG, store, tmp_path, flatten=request.param)


# --- spans of every convention, from its table ---------------------------------------------------------------


def plain(convention: Convention, field: Field) -> list[str]:
    return [key for key in convention.fields.get(field, ()) if JSON_PATH not in key]


def field_value(convention: Convention, field: Field, variant: int) -> Any:
    """A valid value for the field, its type varied as senders vary it."""
    if field in TOKEN_FIELDS:
        count = TOKENS[field] + variant
        return (count, str(count), float(count))[variant % 3]
    if field is Field.OPERATION:
        return ("chat", *convention.operation_values, "embeddings")[variant % (2 + len(convention.operation_values))]
    if field is Field.PROVIDER:
        prefixes = [prefix + "chat" for prefix, _ in convention.provider_prefixes]
        return (" OpenAI ", "anthropic", "\tgemini\x1f", "Mistral", *prefixes)[variant % (4 + len(prefixes))]
    if field is Field.FINISH_REASONS:
        return (["stop"], "stop", '["stop", "length"]', ["stop", "tool_calls"])[variant % 4]
    return f"{field.value}-{variant}" if variant % 5 else ("é-ü 模型 " * (variant + 1))


def convention_spans(convention: Convention, variant: int) -> list[tuple[str, dict[str, Any]]]:
    """(name, attributes) of model calls, a wrapper, an agent span and an ordinary span, for this convention."""
    calls = []
    for n in range(4):
        attributes: dict[str, Any] = {}
        for field in Field:
            keys = plain(convention, field)
            if keys and (field is not Field.UNCACHED_INPUT_TOKENS or n % 2):
                attributes[keys[(variant + n) % len(keys)]] = field_value(convention, field, variant + n)
        if convention.markers:
            attributes.setdefault(convention.markers[(variant + n) % len(convention.markers)], "x")
        if convention.call_filter is not None:
            key, values = convention.call_filter
            attributes[key] = sorted(values)[n % len(values)]
        if convention.wrapper_filter is not None and convention.wrapper_filter[0] in attributes:
            del attributes[convention.wrapper_filter[0]]
        for i, prefix in enumerate(convention.tag_prefixes):
            attributes[f"{prefix}team{i}"] = f"growth-{n}"
        for skip in convention.tag_skip:
            attributes[f"{convention.tag_prefixes[0]}{skip}x"] = "skipped"
        attributes.update(
            {
                "server.address": "api.example.com",
                "server.port": 443,
                "gen_ai.request.temperature": (0.7, 1.0, 0.0001, 2.5e15)[n % 4],
                "app.flags": [True, False],
                "app.ids": [1, 2, 3],
                "app.scores": [0.5, -1.25],
                "app.names": ["a", "b c", "é"],
                "app.empty": "",
                "app.zero": 0,
                "app.false": False,
                # The instrumentation's prompt prefix hash: kept among span_attributes by both readers (the
                # prompt_prefix_hash column is filled from it at insert).
                "spanmeter.prompt.prefix_hash": f"{n:032x}",
                sorted(CONTENT_ATTRIBUTES)[n]: "a prompt",
            }
        )
        calls.append((f"chat {n}", attributes))
    spans = list(calls)
    if convention.call_filter is not None:
        key, values = convention.call_filter
        spans.append(("chain", {**calls[0][1], key: "CHAIN-not-a-call"}))
    if convention.wrapper_filter is not None:
        key, values = convention.wrapper_filter
        spans.append(("workflow", {**calls[0][1], key: sorted(values)[0]}))
    operation = plain(convention, Field.OPERATION)
    if operation:
        spans.append(("invoke_agent x", {**calls[1][1], operation[0]: "invoke_agent"}))
    spans.append(("execute_tool search", {k: v for k, v in calls[2][1].items() if k not in operation}))
    spans.append(("GET /health", {"http.request.method": "GET", "url.full": "http://x/health"}))
    return spans


def sdk_request(scope: str, spans: list[tuple[str, dict[str, Any]]], resource: dict[str, Any]) -> bytes:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer(scope)
    with tracer.start_as_current_span("parent"):
        for name, attributes in spans:
            tracer.start_span(name, attributes=attributes).end()
    provider.shutdown()
    return encode_spans(memory.get_finished_spans()).SerializeToString()


def convention_requests(convention: Convention) -> list[bytes]:
    resource = {"service.name": "engine", "deployment.environment.name": "prod", "process.command_args": ["a", "b"]}
    scopes = [*(f"{scope}.sdk" for scope in convention.scopes[:2]), "app"] if convention.scopes else ["app"]
    return [
        sdk_request(
            scopes[variant % len(scopes)],
            convention_spans(convention, variant),
            {**resource, "spanmeter.project": f"p{variant}"} if variant else resource,
        )
        for variant in range(3)
    ]


@pytest.mark.parametrize("convention", CONVENTIONS, ids=[c.name for c in CONVENTIONS])
def test_the_engine_reads_each_conventions_spans_as_the_python_reader(
    reader: EngineReader, convention: Convention
) -> None:
    bodies = convention_requests(convention)
    batch = compare(reader, bodies)
    assert batch.fallback == []  # plain valid spans are read by the engine, not handed back
    assert batch.table.num_rows >= 3 * 4
    hashes = [dict(a).get("spanmeter.prompt.prefix_hash") for a in batch.table.column("span_attributes").to_pylist()]
    assert {f"{n:032x}" for n in range(4)} <= set(hashes)
    assert set(batch.table.column("convention").to_pylist()) >= {convention.name}


def test_all_conventions_in_one_batch(reader: EngineReader) -> None:
    bodies = [body for convention in CONVENTIONS for body in convention_requests(convention)]
    batch = compare(reader, bodies)
    assert batch.fallback == []
    assert batch.non_genai > 0 and batch.not_model_calls > 0


def test_conventions_are_found_wherever_their_requests_sit_among_ordinary_ones(reader: EngineReader) -> None:
    """The search for the batch's conventions goes on after the first body holding one: a convention whose only
    request is first, next to another's, deep in the batch or last is still read (else its spans count as not
    GenAI)."""
    ordinary = sdk_request("app", [("GET /", {"http.request.method": "GET"})], {"service.name": "x"})
    positions = [0, 1, 4, 5, 20, 21, 84, 85, 120]
    bodies = [ordinary] * 130
    requests = [convention_requests(convention)[0] for convention in CONVENTIONS]
    for position, request in zip(positions, requests * 2, strict=False):
        bodies[position] = request
    bodies.append(requests[-1])
    batch = compare(reader, bodies)
    assert batch.fallback == []
    read = set(batch.table.column("convention").to_pylist())
    assert read == {convention.name for convention in CONVENTIONS}
    # Every position of a batch, with one convention's request there and another's further on; the batch as
    # one chunk, as a chunk a request (the WAL's records) and as a slice of chunks; Hyperscan's search and RE2's.
    first, later = 1, len(CONVENTIONS)  # `_active` numbers conventions from 1
    assert reader._probe_search.accelerated
    for position in range(90):
        bodies = [ordinary] * 100
        bodies[position], bodies[position + 1 + position % 9] = requests[0], requests[-1]
        for column in (
            pa.chunked_array([pa.array(bodies, pa.binary())]),
            pa.chunked_array([pa.array([body], pa.large_binary()) for body in bodies]),
            pa.chunked_array([pa.array([b"", *bodies, b""], pa.binary()).slice(1, len(bodies))]),
        ):
            assert {first, later} <= set(reader._active(column)), position
            assert {first, later} <= set(reader._active_by_regex(column)), position
    assert reader._active(pa.chunked_array([pa.array([ordinary] * 3, pa.binary())])) == ()


def conventions_present(bodies: list[bytes]) -> tuple[int, ...]:
    """What the flattened reader's query must cover, from the parsed requests: each convention (numbered from 1)
    with a marker among some span's attribute keys, or a prefix some scope's name starts with."""
    present = set()
    for body in bodies:
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                keys = {kv.key for span in scope_spans.spans for kv in span.attributes}
                for index, convention in enumerate(CONVENTIONS, 1):
                    if keys & set(convention.markers) or scope_spans.scope.name.startswith(tuple(convention.scopes)):
                        present.add(index)
    return tuple(sorted(present))


def test_each_span_has_its_own_resources_attributes_whatever_its_place(reader: EngineReader) -> None:
    """Requests of several resources, each of two scopes whose first span is ordinary: a resource is written on its
    scopes' first rows only, and what the query makes of it given to the other rows after the query; every GenAI
    span gets its own resource's attributes, service, environment and project, in both halves of the batch
    (two files, read in parallel)."""
    chat = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    bodies = []
    for number in range(6):
        request = ExportTraceServiceRequest()
        for team in ("a", "b", "c"):
            resource = {
                "service.name": f"svc-{number}-{team}", "team": team, "number": number,
                "deployment.environment.name": f"env-{team}", "spanmeter.project": f"p-{team}",
            }  # fmt: skip
            one = ExportTraceServiceRequest.FromString(
                sdk_request("app", [("GET /", {"http.route": "/"}), ("chat", chat), ("chat", chat)], resource)
            )
            spans = one.resource_spans[0]
            scope = spans.scope_spans[0]
            ordinary = [span for span in scope.spans if "gen_ai.operation.name" not in {a.key for a in span.attributes}]
            genai = [span for span in scope.spans if span not in ordinary]
            del scope.spans[:]
            scope.spans.extend([*ordinary, *genai])  # the scope's first span is not a GenAI one
            spans.scope_spans.append(scope)  # a second scope of the same resource
            request.resource_spans.append(spans)
        bodies.append(request.SerializeToString())
    batch = compare(reader, bodies)
    assert batch.table.num_rows == 6 * 3 * 2 * 2
    rows = batch.table.to_pylist()
    assert len({dict(row["resource_attributes"])["service.name"] for row in rows}) == 18
    assert {(row["service_name"][-1], row["environment"], row["project"]) for row in rows} == {
        (team, f"env-{team}", f"p-{team}") for team in "abc"
    }


@NOT_BUILT
def test_the_flattener_names_the_conventions_present(store: Client, tmp_path: Path) -> None:
    """The flattened reader's query covers the conventions whose markers are among the spans' keys or whose scope
    prefixes start the scopes' names, as the flattener found them while writing the rows (no search of the
    requests' bytes): each convention's requests alone, all of them, none; a marker's name in a value only (not
    a key) does not count. Rows as the Python reader's."""
    reader = EngineReader(CONFIG, store, tmp_path, flatten=True)
    in_a_value = sdk_request("app", [("GET /", {"note": "gen_ai.operation.name"})], {"service.name": "x"})
    every = [body for convention in CONVENTIONS for body in convention_requests(convention)]
    batches = [convention_requests(convention) for convention in CONVENTIONS] + [every, [in_a_value]]
    for bodies in batches:
        reader._queries.clear()
        compare(reader, bodies)
        assert list(reader._queries) == [conventions_present(bodies)]
    assert conventions_present(every) == tuple(range(1, len(CONVENTIONS) + 1))
    assert conventions_present([in_a_value]) == ()


@NOT_BUILT
def test_parts_flattened_at_once_are_written_as_one_at_a_time(store: Client, tmp_path: Path) -> None:
    """A batch's parts are flattened on threads of their own, each with a set of the module's buffers: files
    written by many threads at once (more than the sets the module keeps) are byte for byte those written one at a
    time, and the conventions found the same."""
    reader = EngineReader(CONFIG, store, tmp_path, flatten=True)
    bodies = [body for convention in CONVENTIONS for body in convention_requests(convention)]
    middle = len(bodies) // 2
    halves = [(bodies[:middle], 0), (bodies[middle:], middle)]

    def parts(name: str) -> list[tuple[list[bytes], int, str]]:
        return [(part, first, str(tmp_path / f"{name}-{index}.bin")) for index, (part, first) in enumerate(halves)]

    alone = [reader._flatten_parts([part]) for part in parts("alone")]
    assert alone[0] and alone[1]

    def flatten_repeatedly(thread: int) -> set[int]:
        return {reader._flatten_parts(parts(f"thread-{thread}")) for _ in range(4)}

    with ThreadPoolExecutor(max_workers=6) as pool:
        found = list(pool.map(flatten_repeatedly, range(6)))
    assert found == [{alone[0] | alone[1]}] * 6
    for thread in range(6):
        for index in range(len(halves)):
            written = (tmp_path / f"thread-{thread}-{index}.bin").read_bytes()
            assert written == (tmp_path / f"alone-{index}.bin").read_bytes()
    if sys.platform.startswith("linux"):  # the flattening threads read behind the receivers, as the query does
        niceness = {os.getpriority(os.PRIO_PROCESS, thread.native_id) for thread in reader._flatteners._threads}
        assert niceness == {max(10, os.getpriority(os.PRIO_PROCESS, 0))}


def test_the_wal_column_of_bodies_reads_as_the_bodies(reader: EngineReader) -> None:
    """A segment's requests are handed over as the WAL's binary column (one chunk a record, or a slice of them),
    read in place: the same rows, counts and fallback as from the bodies as bytes."""
    bodies = [body for convention in CONVENTIONS for body in convention_requests(convention)]
    bodies.insert(1, otel_request(trace_id=b"short").SerializeToString())  # falls back: its index must hold
    column = pa.concat_tables([request_record(body, None, 1) for body in [b"", *bodies]]).column("body").slice(1)
    latest = [time.time_ns()] * len(bodies)
    expected, read = reader.read(bodies, latest), reader.read(column, latest)
    assert read.table.num_rows > 0 and read.fallback == expected.fallback == [1]
    assert read.table.equals(expected.table)
    assert (read.non_genai, read.not_model_calls) == (expected.non_genai, expected.not_model_calls)
    assert reader.read(column.cast(pa.large_binary()), latest).table.equals(expected.table)  # 64-bit offsets


def test_a_smaller_batch_after_a_larger_one_reads_only_its_own_requests(reader: EngineReader) -> None:
    """The reader keeps its request files and writes each batch over the last one's: what a larger batch left
    past a smaller one's end must not be read with it."""
    bodies = [body for convention in CONVENTIONS for body in convention_requests(convention)]
    large = compare(reader, bodies)
    small = compare(reader, bodies[:2])
    assert 0 < small.table.num_rows < large.table.num_rows
    assert set(small.table.column("request").to_pylist()) <= {0, 1}


@NOT_BUILT
def test_a_killed_runs_request_files_are_removed(store: Client, tmp_path: Path) -> None:
    """A batch's files are renamed for its query; a run killed during one leaves them under those names."""
    left = [tmp_path / "requests-0123abcd-0.bin", tmp_path / "requests-0123abcd-512.bin"]
    for path in left:
        path.write_bytes(b"\x00" * 1000)
    reader = EngineReader(CONFIG, store, tmp_path, flatten=True)
    assert not any(path.exists() for path in left)
    bodies = convention_requests(CONVENTIONS[0])
    assert compare(reader, bodies).table.num_rows > 0
    kept = sorted(path.name for path in tmp_path.iterdir())
    assert kept and kept == [f"part-{index}.bin" for index in range(len(kept))]  # only the files kept for reuse


def test_an_empty_batch_and_a_batch_without_genai(reader: EngineReader) -> None:
    assert reader.read([], []).table.num_rows == 0
    body = sdk_request("app", [("GET /", {"http.request.method": "GET"})], {"service.name": "x"})
    batch = compare(reader, [body, ExportTraceServiceRequest().SerializeToString()])
    assert (batch.table.num_rows, batch.non_genai, batch.fallback) == (0, 2, [])


# --- what falls back ------------------------------------------------------------------------------------------


def otel_request(**changes: Any) -> ExportTraceServiceRequest:
    """Two spans of the OTel convention; the first changed: `attribute:KEY` sets that attribute's value (the one
    of that key, else a new one), `attribute+:KEY` adds one more of that key, other names set span fields."""
    spans = [s for s in convention_spans(CONVENTIONS[-1], 0)[:2]]
    request = ExportTraceServiceRequest.FromString(sdk_request("app", spans, {"service.name": "x"}))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for change, value in changes.items():
        kind, _, key = change.partition(":")
        existing = [attribute for attribute in span.attributes if attribute.key == key]
        if kind == "attribute" and existing:
            existing[0].value.CopyFrom(value)
        elif kind in ("attribute", "attribute+"):
            span.attributes.append(KeyValue(key=key, value=value))
        else:
            setattr(span, change, value)
    return request


def with_resource(request: ExportTraceServiceRequest, key: str, value: AnyValue) -> ExportTraceServiceRequest:
    request.resource_spans[0].resource.attributes.append(KeyValue(key=key, value=value))
    return request


INVALID = {
    "short span id": otel_request(span_id=b"\x01\x02"),
    "long trace id": otel_request(trace_id=b"\x01" * 17),
    "odd parent id": otel_request(parent_span_id=b"\x01" * 3),
    "start before 2000": otel_request(start_time_unix_nano=5),
    "end in the future": otel_request(end_time_unix_nano=LATEST + 1),
    "negative count": otel_request(**{"attribute:gen_ai.usage.cache_read.input_tokens": AnyValue(int_value=-5)}),
    "fractional count": otel_request(**{"attribute:gen_ai.usage.cache_read.input_tokens": AnyValue(double_value=1.5)}),
    "count as words": otel_request(**{"attribute:gen_ai.usage.cache_read.input_tokens": AnyValue(string_value="many")}),
    "cache above input": otel_request(**{"attribute:gen_ai.usage.cache_read.input_tokens": AnyValue(int_value=10**6)}),
    "too many tokens": otel_request(**{"attribute:gen_ai.usage.cache_read.input_tokens": AnyValue(int_value=10**12)}),
    "19 digits": otel_request(**{"attribute:gen_ai.usage.input_tokens": AnyValue(string_value="1" * 19)}),
    "a count that is not a number": otel_request(
        **{"attribute:gen_ai.usage.output_tokens": AnyValue(double_value=math.nan)}
    ),
}
"""Spans the Python reader rejects: they fall back so that its message is the one answered."""
UNREAD = {
    "a map value": otel_request(**{"attribute:app.map": AnyValue(kvlist_value=KeyValueList())}),
    "bytes": otel_request(**{"attribute:app.bytes": AnyValue(bytes_value=b"\x00")}),
    "a nested array": otel_request(
        **{"attribute:app.nested": AnyValue(array_value=ArrayValue(values=[AnyValue(array_value=ArrayValue())]))}
    ),
    "a huge double": otel_request(**{"attribute:app.double": AnyValue(double_value=1e20)}),
    "a tiny double": otel_request(**{"attribute:app.double": AnyValue(double_value=1e-7)}),
    "a quote in a list": otel_request(
        **{"attribute:app.list": AnyValue(array_value=ArrayValue(values=[AnyValue(string_value='a"b')]))}
    ),
    "a duplicate key": otel_request(**{"attribute+:server.port": AnyValue(int_value=1)}),
    "a read key twice": otel_request(**{"attribute+:gen_ai.request.model": AnyValue(string_value="gpt-4o")}),
    "a content key twice": otel_request(
        **{
            "attribute:gen_ai.input.messages": AnyValue(string_value="a"),
            "attribute+:gen_ai.input.messages": AnyValue(string_value="b"),
        }
    ),
    "a count with spaces": otel_request(
        **{"attribute:gen_ai.usage.cache_read.input_tokens": AnyValue(string_value=" 12")}
    ),
    "two long keys": otel_request(
        **{f"attribute:{'k' * 1030}{n}": AnyValue(string_value="v") for n in range(2)},
    ),
    "a JSON list with escapes": otel_request(
        **{"attribute:gen_ai.response.finish_reasons": AnyValue(string_value='["st\\u006fp"]')}
    ),
    "a map in the resource": with_resource(otel_request(), "app.map", AnyValue(kvlist_value=KeyValueList())),
    "a resource key twice": with_resource(otel_request(), "service.name", AnyValue(string_value="y")),
    "a long double in a resource list": with_resource(
        otel_request(), "app.list", AnyValue(array_value=ArrayValue(values=[AnyValue(double_value=1e-9)]))
    ),
}
"""Spans the Python reader reads but the engine does not spell exactly: they fall back too."""


@pytest.mark.parametrize("case", [*INVALID, *UNREAD])
def test_what_sql_does_not_read_exactly_falls_back(reader: EngineReader, case: str) -> None:
    request = {**INVALID, **UNREAD}[case]
    valid = otel_request()
    bodies = [valid.SerializeToString(), request.SerializeToString(), valid.SerializeToString()]
    batch = compare(reader, bodies)
    assert batch.fallback == [1]
    assert set(batch.table.column("request").to_pylist()) == {0, 2}
    rejected = GenAIProcessor(CONFIG).decode(request, latest=LATEST).rejected
    assert rejected == (1 if case in INVALID else 0)


COUNTS = {
    "an int": (AnyValue(int_value=7), 7),
    "zero": (AnyValue(int_value=0), 0),
    "a whole double": (AnyValue(double_value=3.0), 3),
    "negative zero": (AnyValue(double_value=-0.0), 0),
    "digits": (AnyValue(string_value="007"), 7),
}


@pytest.mark.parametrize("case", COUNTS)
def test_counts_as_senders_spell_them_are_read_by_the_engine(reader: EngineReader, case: str) -> None:
    value, count = COUNTS[case]
    request = otel_request(**{"attribute:gen_ai.usage.cache_read.input_tokens": value})
    batch = compare(reader, [request.SerializeToString()])
    assert batch.fallback == []
    assert batch.table.column("cache_read_tokens")[0].as_py() == count


def test_texts_of_lists_and_long_values_are_read_as_the_python_reader(reader: EngineReader) -> None:
    def listed(*values: AnyValue) -> AnyValue:
        return AnyValue(array_value=ArrayValue(values=list(values)))

    long_text = AnyValue(string_value="é模" * 700)
    request = otel_request(
        **{
            "attribute:gen_ai.request.model": listed(AnyValue(string_value="gpt-x")),
            "attribute:gen_ai.response.model": listed(AnyValue(double_value=2.5)),
            "attribute:gen_ai.conversation.id": long_text,
            "attribute:user.id": listed(AnyValue(string_value="u"), AnyValue(int_value=3)),
        }
    )
    with_resource(request, "deployment.environment.name", listed(AnyValue(string_value="prod")))
    service = next(a for a in request.resource_spans[0].resource.attributes if a.key == "service.name")
    service.value.CopyFrom(long_text)
    batch = compare(reader, [request.SerializeToString()])
    assert batch.fallback == []
    first = batch.table.slice(0, 1).to_pylist()[0]
    assert (first["request_model"], first["response_model"], first["environment"]) == ("gpt-x", "2.5", "prod")
    assert first["service_name"] == long_text.string_value[:1024]


def test_lists_given_as_arrays_are_read_as_the_python_reader(reader: EngineReader) -> None:
    """Finish reasons and a list tag (OpenInference's `tag.tags`) given as arrays, of plain strings (none, one,
    several) or of numbers and bools, are read by the engine, with Python's rows."""
    chat = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    llm = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.provider": "openai"}
    read = [
        sdk_request("app", [("chat", {**chat, "gen_ai.response.finish_reasons": reasons})], {"service.name": "a"})
        for reasons in ([], ["stop"], ["stop", "length", "é模"])
    ] + [sdk_request("app", [("llm", {**llm, "tag.tags": ["a", "b"]})], {"service.name": "b"})]
    numbers = [
        sdk_request("app", [("chat", {**chat, "gen_ai.response.finish_reasons": [1, 2]})], {"service.name": "c"}),
        sdk_request("app", [("llm", {**llm, "tag.tags": [True]})], {"service.name": "d"}),
    ]
    batch = compare(reader, read + numbers)
    assert batch.fallback == []
    reasons = batch.table.column("finish_reasons").to_pylist()
    assert reasons[:3] == [[], ["stop"], ["stop", "length", "é模"]]
    assert {"a,b"} <= {dict(tags).get("tag.tags") for tags in batch.table.column("tags").to_pylist()}


def test_json_members_and_tag_objects_fall_back(reader: EngineReader) -> None:
    langsmith = next(c for c in CONVENTIONS if c.name == "langsmith")
    openinference = next(c for c in CONVENTIONS if c.name == "openinference")
    usage = {"langsmith.span.kind": "llm", "langsmith.metadata.usage_metadata": '{"input_tokens": 5}'}
    bodies = [
        sdk_request("langsmith", [("llm", usage)], {"service.name": "x"}),
        sdk_request("app", [("llm", {"openinference.span.kind": "LLM", "metadata": '{"a": 1}'})], {}),
        *convention_requests(langsmith)[:1],
        *convention_requests(openinference)[:1],
    ]
    assert compare(reader, bodies).fallback == [0, 1]


def test_content_falls_back_only_when_captured(store: Client, tmp_path: Path) -> None:
    config = GenAIProcessorConfig.model_validate({"capture_content": True, "redaction": {"attributes": False}})
    bodies = convention_requests(CONVENTIONS[-1])[:1]
    assert compare(EngineReader(config, store, tmp_path), bodies, config).fallback == [0]


@pytest.mark.parametrize(
    "flatten", [pytest.param(True, marks=NOT_BUILT, id="flattened"), pytest.param(False, id="protobuf")]
)
def test_bounds_on_attributes_as_the_python_reader(store: Client, tmp_path: Path, flatten: bool) -> None:
    config = GenAIProcessorConfig.model_validate(
        {"max_attributes": 3, "max_attribute_value_length": 5, "redaction": {"attributes": False}}
    )
    long_key = "k" * 1100
    spans = [
        ("chat", {**convention_spans(CONVENTIONS[-1], 0)[0][1], long_key: "v" * 2000, "spanmeter.tag.x": "y" * 2000})
    ]
    bodies = [sdk_request("app", spans, {"service.name": "s" * 2000, "a": 1, "b": 2, "c": 3, "d": 4})]
    request = ExportTraceServiceRequest.FromString(bodies[0])
    resource = request.resource_spans[0].resource.attributes
    resource.insert(0, KeyValue(key="é" * 1100, value=AnyValue(string_value="模" * 10)))  # among the 3 kept
    bodies.append(request.SerializeToString())
    batch = compare(EngineReader(config, store, tmp_path, flatten=flatten), bodies, config)
    assert batch.fallback == [] and batch.table.num_rows == 2


def test_doubles_are_spelled_as_python_repr(reader: EngineReader) -> None:
    doubles = [0.1, 0.1 + 0.2, 1 / 3, 2 / 3 * 1e15, 123456789.123, 1e-4, 9.99999999999998e15, -0.0, 1e15 + 0.5, 7.0]
    doubles += [-(2**52) + 0.5, 1.5e-4, 0.00012345678901234567, 4.35, 2.675, 1e15 * 3.3, 100.0, 1 / 7 * 1e-3]
    request = otel_request(**{f"attribute:app.d{n}": AnyValue(double_value=d) for n, d in enumerate(doubles)})
    array = AnyValue(array_value=ArrayValue(values=[AnyValue(double_value=d) for d in doubles]))
    listed = otel_request(**{"attribute:app.doubles": array})
    batch = compare(reader, [request.SerializeToString(), listed.SerializeToString()])
    assert batch.fallback == []


PLAIN_DOUBLES = st.floats(min_value=1e-4, max_value=1e16, exclude_max=True).flatmap(
    lambda d: st.sampled_from([d, -d, float(int(d))])
)
"""Doubles Python prints without an exponent: the engine spells them itself (`_flatten` or SQL)."""


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doubles=st.lists(PLAIN_DOUBLES, min_size=1, max_size=12))
def test_random_plain_doubles_are_spelled_as_python_repr(reader: EngineReader, doubles: list[float]) -> None:
    request = otel_request(**{f"attribute:app.d{n}": AnyValue(double_value=d) for n, d in enumerate(doubles)})
    array = AnyValue(array_value=ArrayValue(values=[AnyValue(double_value=d) for d in doubles]))
    listed = otel_request(
        **{
            "attribute:app.doubles": array,
            "attribute:app.one": AnyValue(array_value=ArrayValue(values=[AnyValue(double_value=doubles[0])])),
        }
    )
    batch = compare(reader, [request.SerializeToString(), listed.SerializeToString()])
    assert batch.fallback == []


# --- random values --------------------------------------------------------------------------------------------

KEYS = sorted(
    {key for c in CONVENTIONS for names in c.fields.values() for key in names if JSON_PATH not in key}
    | {m for c in CONVENTIONS for m in c.markers}
    | {f"{p}{n}" for c in CONVENTIONS for p in c.tag_prefixes for n in ("team", "ls_x", "")}
    | set(sorted(CONTENT_ATTRIBUTES)[:3])
    | {"app.a", "app.b", "app.c", "gen_ai.prompt.0.content"}
)
SCOPES = ["app", *(scope for c in CONVENTIONS for scope in c.scopes[:1])]
FILTER_VALUES = sorted({v for c in CONVENTIONS for f in (c.call_filter, c.wrapper_filter) if f for v in f[1]})

ordinary = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["chat", "openai", " Anthropic", "gemini", "0", "12", "[]", '["a", "b"]', "é 模型", *FILTER_VALUES]
    ),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=-(10**4), max_value=10**4).map(lambda n: n / 8),
    st.booleans(),
)
unusual = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["-3", " 12", "1e3", '["a\\"b"]', "[1, 2]"]),
    st.just(None),
    st.just(b"x"),
    st.just({"a": 1}),
    st.just([["nested"]]),
)
scalars = st.one_of(ordinary, unusual)
PART_FIELDS = (Field.CACHE_READ_TOKENS, Field.CACHE_WRITE_TOKENS, Field.REASONING_TOKENS)
PART_KEYS = frozenset(key for c in CONVENTIONS for f in PART_FIELDS for key in c.fields.get(f, ()))
TOKEN_KEYS = frozenset(key for c in CONVENTIONS for f in TOKEN_FIELDS for key in c.fields.get(f, ())) - PART_KEYS


def counts(low: int, high: int, clean: bool) -> st.SearchStrategy[Any]:
    """Token counts as senders send them (mostly valid: a cache or reasoning count is below the totals)."""
    valid = st.integers(low, high)
    return st.one_of(valid, valid.map(str), valid.map(float), *([] if clean else [unusual]))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if value is None:
        return AnyValue()
    if isinstance(value, dict):
        entries = [KeyValue(key=key, value=any_value(entry)) for key, entry in value.items()]
        return AnyValue(kvlist_value=KeyValueList(values=entries))
    return AnyValue(string_value=value)


values = st.one_of(ordinary, ordinary, ordinary, st.lists(ordinary, max_size=3), st.lists(scalars, max_size=2), unusual)


@st.composite
def attributes(draw: st.DrawFn, clean: bool) -> list[tuple[str, Any]]:
    """Attributes of random keys (those of the tables, mostly); `clean`: no value of an unusual kind."""
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=8, unique=True))
    other = st.one_of(ordinary, st.lists(ordinary, max_size=3)) if clean else values
    return [
        (
            key,
            draw(
                counts(0, 50, clean) if key in PART_KEYS else counts(100, 10**5, clean) if key in TOKEN_KEYS else other
            ),
        )
        for key in keys
    ]


@st.composite
def random_requests(draw: st.DrawFn) -> list[bytes]:
    bodies = []
    for r in range(draw(st.integers(1, 4))):
        clean = draw(st.sampled_from([True, True, False]))
        request = ExportTraceServiceRequest()
        resource = request.resource_spans.add()
        resource_keys = st.sampled_from(["service.name", "a", "spanmeter.project", "deployment.environment"])
        for key, value in draw(st.dictionaries(resource_keys, ordinary if clean else values)).items():
            resource.resource.attributes.append(KeyValue(key=key, value=any_value(value)))
        for s in range(draw(st.integers(1, 2))):
            scope = resource.scope_spans.add()
            scope.scope.name = draw(st.sampled_from(SCOPES))
            for n in range(draw(st.integers(0, 3))):
                span = Span(
                    trace_id=bytes([r + 1] * 16),
                    span_id=bytes([s + 1, n + 1] * 4),
                    name=draw(st.sampled_from(["chat x", "embeddings", "", "invoke_agent", "GET /"])),
                    start_time_unix_nano=1_700_000_000 * 10**9,
                    end_time_unix_nano=1_700_000_000 * 10**9 + draw(st.integers(-5, 10**9)),
                    status=Status(code=draw(st.sampled_from([0, 1, 2]))),
                    trace_state=draw(TRACE_STATE),
                )
                for key, value in draw(attributes(clean)):
                    span.attributes.append(KeyValue(key=key, value=any_value(value)))
                scope.spans.append(span)
        bodies.append(request.SerializeToString())
    return bodies


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bodies=random_requests())
def test_random_values_read_as_the_python_reader_or_fall_back(reader: EngineReader, bodies: list[bytes]) -> None:
    compare(reader, bodies)


# --- sampling: the threshold a span's tracestate carries ----------------------------------------------------

TRACE_STATES = {
    "": 0,
    "ot=th:e6666666666666": 0xE6666666666666,  # p = 0.1, as the SDK's consistent sampler writes it
    "ot=th:8;rv:0123456789abcd": 0x80000000000000,
    "vendor=a:b, ot=rv:0123456789abcd;th:c\t": 0xC0000000000000,
    "ot=th:e6 ,b=c": 0xE6 << 48,
    "ot=th:E6": 0xE6 << 48,
    "ot=th:0": 0,
    "ot=th:ffffffffffffff": 2**56 - 1,
    "xot=th:8,ot=th:4": 0x4 << 52,
    # Malformed thresholds: no threshold (weight 1), the span stored all the same.
    "ot=th:123456789abcdef": 0,
    "ot=th:zz": 0,
    "ot=th:": 0,
    "ot=th:8x": 0,
    "ot=rv:0123456789abcd": 0,
    "ot =th:8": 0,
    "ot=th:8\n": 0,  # not a list member's end (Python's `$` would match before the newline)
}


TRACE_STATE = st.one_of(
    st.sampled_from(list(TRACE_STATES)),
    st.lists(
        st.sampled_from(["ot=", "th:", "rv:", "x=", ",", ";", " ", "\t", "\n", "8", "e6", "F", "0" * 7, "g", "é"]),
        max_size=12,
    ).map("".join),
    st.text(max_size=20),
)
"""Tracestates, mostly of the pieces a threshold is read from (reading fails there first if anywhere)."""


def test_the_sampling_threshold_is_read_from_the_tracestate_as_the_python_reader(reader: EngineReader) -> None:
    bodies = []
    for state in TRACE_STATES:
        request = otel_request()
        for span in request.resource_spans[0].scope_spans[0].spans:
            span.trace_state = state
        bodies.append(request.SerializeToString())
    batch = compare(reader, bodies)
    assert batch.fallback == []
    thresholds = batch.table.column("sampling_threshold").to_pylist()
    requests = batch.table.column("request").to_pylist()
    assert {index: threshold for index, threshold in zip(requests, thresholds, strict=True)} == dict(
        enumerate(TRACE_STATES.values())
    )


def test_spans_of_the_sdks_consistent_sampler_carry_their_threshold(reader: EngineReader) -> None:
    """The SDK's consistent probability sampler writes `ot=th:8` at 50 %; both readers keep it on the rows of the
    traces kept."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "x"}), sampler=ConsistentSampler(0.5))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("app")
    attributes = convention_spans(CONVENTIONS[-1], 0)[0][1]
    for _ in range(40):
        with tracer.start_as_current_span("request"):
            tracer.start_span("chat", attributes=attributes).end()
    provider.shutdown()
    spans = memory.get_finished_spans()
    assert 0 < len(spans) < 80 and {str(s.context.trace_state.get("ot")) for s in spans} == {"th:8"}
    batch = compare(reader, [encode_spans(spans).SerializeToString()])
    assert batch.table.num_rows == len(spans) // 2
    assert set(batch.table.column("sampling_threshold").to_pylist()) == {2**55}


# --- the flattener: what it does not read exactly is left to the Python reader -------------------------------


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand: these requests are valid protobuf that the SDK's
    encoder never writes (a singular field twice, two members of a oneof)."""
    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


def _request_with_span(span: bytes) -> bytes:
    """A request of one GenAI scope holding `span` (its bytes as given), with the usual resource."""
    good = ExportTraceServiceRequest.FromString(convention_requests(CONVENTIONS[0])[0])
    resource_spans = good.resource_spans[0]
    scope = resource_spans.scope_spans[0]
    scope_bytes = _field(1, scope.scope.SerializeToString()) + _field(2, span)
    return _field(1, _field(1, resource_spans.resource.SerializeToString()) + _field(2, scope_bytes))


def _model_call() -> Span:
    good = ExportTraceServiceRequest.FromString(convention_requests(CONVENTIONS[0])[0])
    return next(span for span in good.resource_spans[0].scope_spans[0].spans if span.name != "parent")


def _two_members() -> bytes:
    value = AnyValue(string_value="model-a").SerializeToString() + AnyValue(int_value=3).SerializeToString()
    return _model_call().SerializeToString() + _field(9, _field(1, b"user.id") + _field(2, value))


UNUSUAL: dict[str, Any] = {
    # protobuf merges these (the last value wins); the flattener hands them back rather than choose
    "a field given twice": lambda: _model_call().SerializeToString() + Span(name="renamed").SerializeToString(),
    "a field of another wire type": lambda: _model_call().SerializeToString() + b"\x28\x07",  # name (5) as a varint
    "two members of a value's oneof": _two_members,
}


@NOT_BUILT
@pytest.mark.parametrize("case", sorted(UNUSUAL))
def test_what_the_flattener_does_not_read_exactly_falls_back(store: Client, tmp_path: Path, case: str) -> None:
    good = convention_requests(CONVENTIONS[0])[0]
    unusual = _request_with_span(UNUSUAL[case]())
    ExportTraceServiceRequest.FromString(unusual)  # valid protobuf: the receiver accepts it
    batch = compare(EngineReader(CONFIG, store, tmp_path, flatten=True), [good, unusual, good])
    assert batch.fallback == [1]
    assert set(batch.table.column("request").to_pylist()) == {0, 2}


def test_the_flattener_is_built_where_a_compiler_is(store: Client, tmp_path: Path) -> None:
    """An optional extension fails its build with only a warning: where the install had a C compiler (CI's
    machines do), a missing module is a broken build, not a choice."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler here: the collector reads requests with ClickHouse's Protobuf format")
    assert engine_reader._flatten is not None
    assert EngineReader(CONFIG, store, tmp_path)._flatten  # the default where it is built


@NOT_BUILT
def test_requests_without_spans_flatten_to_no_rows(store: Client, tmp_path: Path) -> None:
    empty = ExportTraceServiceRequest().SerializeToString()
    batch = EngineReader(CONFIG, store, tmp_path, flatten=True).read([empty, empty], [LATEST] * 2)
    assert (batch.table.num_rows, batch.fallback, batch.non_genai) == (0, [], 0)


@NOT_BUILT
def test_a_request_the_flattener_cannot_parse_falls_back_alone(store: Client, tmp_path: Path) -> None:
    good = convention_requests(CONVENTIONS[0])[0]
    cut = good[: len(good) // 2]  # the WAL holds what the receiver parsed; this is the flattener's guard
    batch = compare(EngineReader(CONFIG, store, tmp_path, flatten=True), [good, cut, good, b"\xff\xff"])
    assert batch.fallback == [1, 3]
    assert batch.table.num_rows > 0
    assert set(batch.table.column("request").to_pylist()) == {0, 2}


@NOT_BUILT
def test_the_flattener_reads_as_the_protobuf_format(store: Client, tmp_path: Path) -> None:
    """The same rows and counts either way, for every convention in one batch and a scope without spans, over
    more rows than one of the flattener's blocks holds."""
    bodies = [body for convention in CONVENTIONS for body in convention_requests(convention)] * 30
    empty = ExportTraceServiceRequest.FromString(bodies[0])
    del empty.resource_spans[0].scope_spans[0].spans[:]
    bodies.append(empty.SerializeToString())
    flat = EngineReader(CONFIG, store, tmp_path / "flat", flatten=True).read(bodies, [LATEST] * len(bodies))
    proto = EngineReader(CONFIG, store, tmp_path / "proto", flatten=False).read(bodies, [LATEST] * len(bodies))
    assert flat.table.num_rows > 4096
    assert flat.table.equals(proto.table)
    counts = [(batch.fallback, batch.non_genai, batch.not_model_calls) for batch in (flat, proto)]
    assert counts[0] == counts[1]


def test_staged_columns_expand_an_alias_at_most_once_a_select(store: Client) -> None:
    """Two dependency levels a SELECT: a column may read a column of its own SELECT (the analyzer expands it
    there), but never one that itself reads a column of that SELECT (chains expand many times over)."""
    columns = [("a", "x + 1"), ("b", "a * 2"), ("c", "b - a"), ("d", "c + 1"), ("e", "x")]
    query = engine_reader._staged("SELECT 1 AS x", columns)
    assert query == (
        "SELECT *, b - a AS c, c + 1 AS d FROM (SELECT *, x + 1 AS a, a * 2 AS b, x AS e FROM (SELECT 1 AS x))"
    )
    assert store.query(f"SELECT a, b, c, d, e FROM ({query})").result_rows == [(2, 4, 2, 3, 1)]


def test_ordinary_spans_with_a_conventions_attributes_do_not_make_its_request_fall_back(reader: EngineReader) -> None:
    """With one convention active its expressions are not tested against the span's convention: an ordinary span
    (no marker, no scope) carrying that convention's attributes with values a GenAI span would fall back for
    (a negative count, a count as words, a JSON list with escapes) is read as ordinary, as Python reads it."""
    odd = {
        "http.request.method": "GET",
        "gen_ai.request.model": "m",
        "gen_ai.usage.input_tokens": -5,
        "gen_ai.usage.cache_read.input_tokens": "many",
        "gen_ai.response.finish_reasons": '["st\\u006fp"]',
    }
    genai = convention_spans(CONVENTIONS[-1], 0)[:1]
    bodies = [
        sdk_request("app", [("GET /", odd), *genai, ("GET /b", odd)], {"service.name": "x"}),
        sdk_request("app", [("GET /", odd)], {"service.name": "y"}),
    ]
    assert conventions_present(bodies) == (len(CONVENTIONS),)
    batch = compare(reader, bodies)
    assert batch.fallback == []  # `compare` checked the rows and the ordinary spans' count against Python's
    assert batch.table.num_rows == 1


_KEY_PARTS = st.sampled_from(["gen_", "ai.u", "sage", "inpu", "t_to", "kens", "llm.", "éé"])
"""Parts of 4 bytes: keys of a few lengths alike in their words, whose slots in the flattener's table collide."""


@pytest.mark.skipif(engine_reader._flatten is None, reason="spanmeter.engine._flatten is not built")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    known=st.dictionaries(
        st.lists(_KEY_PARTS, min_size=1, max_size=5).map("".join), st.sampled_from([0, 3]), max_size=300
    ),
    prefixes=st.lists(st.lists(_KEY_PARTS, min_size=1, max_size=2).map("".join), max_size=4),
    others=st.lists(st.lists(_KEY_PARTS, min_size=1, max_size=6).map("".join), max_size=20),
)
def test_the_flattener_tells_each_keys_kind(
    store: Client, tmp_path: Path, known: dict[str, int], prefixes: list[str], others: list[str]
) -> None:
    """`attribute_kinds` of every attribute of a span: its kind where its key is known (among up to hundreds of
    keys alike in length and words), else 3 where it starts with a content prefix, else 2: as the SQL it replaces
    sorts keys."""
    assert kinds_read(store, tmp_path, known, prefixes, [*list(known)[:40], *others])


def test_known_keys_of_one_length_are_told_apart(store: Client, tmp_path: Path) -> None:
    """As many known keys as the flattener takes, all of one length and differing only in their middle, kinds
    alternating, and as many unknown ones alike: the table's chains are long, and each key finds its own. An
    empty key (a KeyValue without one) is another key; under an empty prefix, content."""
    known = {f"gen_ai.{index:06d}.input_tokens": index % 2 * 3 for index in range(512)}
    unknown = [f"gen_ai.{index:06d}.input_tokens" for index in range(512, 1024)]
    assert kinds_read(store, tmp_path, known, [], [*known, *unknown, ""])
    assert kinds_read(store, tmp_path, known, [""], ["", "gen_ai.000001.input_tokens", "x"])


def kinds_read(store: Client, tmp_path: Path, known: dict[str, int], prefixes: list[str], probes: list[str]) -> bool:
    """Whether the flattener gives each key of `probes` (a span's attributes) the kind expected."""
    keys = list(dict.fromkeys(probes))
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="span")  # the SDK keeps 128 attributes
    span.attributes.extend(KeyValue(key=key, value=AnyValue(int_value=1)) for key in keys)
    body = request.SerializeToString()
    path = tmp_path / "flat.bin"
    engine_reader._flatten.flatten(
        [body], 0, (), (), (), 128, 4096,
        tuple(key.encode() for key in known), bytes(known.values()), (0,) * len(known),
        tuple(p.encode() for p in prefixes),
        engine_reader._FLAT_HEADER, str(path),
    )  # fmt: skip
    rows = store.query(
        "SELECT tupleElement(tupleElement(span, 'attributes'), 'key'), attribute_kinds"
        " FROM file({path:String}, 'Native') WHERE tupleElement(span, 'name') = 'span'",
        parameters={"path": str(path)},
    ).result_rows
    ((names, kinds),) = rows
    expected = [known.get(key, 3 if any(key.startswith(p) for p in prefixes) else 2) for key in names]
    assert sorted(names) == sorted(keys)
    return list(kinds) == expected


@NOT_BUILT
def test_the_flattener_finds_markers_among_the_known_keys(store: Client, tmp_path: Path) -> None:
    """A known key with conventions (a marker) marks its span and names them in `found`, whatever its kind; a known
    key without any, or an unknown one, marks nothing. One lookup gives a key its kind and its conventions."""
    known = {"read.key": (0, 0b001), "other.marker": (2, 0b010), "content.marker": (3, 0b100), "read.plain": (0, 0)}
    spans = {
        "plain": ["read.plain", "x"],
        "read": ["read.key"],
        "other": ["x", "other.marker"],
        "content": ["content.marker"],
    }
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for name, keys in spans.items():
        scope.spans.add(name=name).attributes.extend(KeyValue(key=key, value=AnyValue(int_value=1)) for key in keys)
    body = request.SerializeToString()
    path = tmp_path / "flat.bin"

    def found(bodies: list[bytes]) -> int:
        return engine_reader._flatten.flatten(
            bodies, 0, (), (), (), 128, 4096, tuple(key.encode() for key in known),
            bytes(kind for kind, _ in known.values()), tuple(mask for _, mask in known.values()), (),
            engine_reader._FLAT_HEADER, str(path),
        )[1]  # fmt: skip

    assert found([body]) == 0b111
    rows = store.query(
        "SELECT tupleElement(span, 'name'), marked, attribute_kinds FROM file({path:String}, 'Native')",
        parameters={"path": str(path)},
    ).result_rows
    assert {name: (marked, list(kinds)) for name, marked, kinds in rows} == {
        "plain": (0, [0, 2]), "read": (1, [0]), "other": (1, [2, 2]), "content": (1, [3])
    }  # fmt: skip
    only_plain = ExportTraceServiceRequest()
    only_plain.resource_spans.add().scope_spans.add().spans.add(name="plain").attributes.add(key="read.plain")
    assert found([only_plain.SerializeToString()]) == 0


def test_every_marker_is_a_known_key_with_its_conventions(store: Client, tmp_path: Path) -> None:
    """The reader gives the flattener each convention's markers among the known keys (as keys their convention
    reads), with the conventions (bit i: the i-th) they mark, and no other key a convention."""
    extra = (dataclasses.replace(CONVENTIONS[0], name="acme", markers=("acme.llm.call", "openinference.span.kind")),)
    conventions = (*CONVENTIONS, *extra)
    keys, kinds, masks, _ = EngineReader(CONFIG, store, tmp_path, conventions=conventions)._known
    known = {key.decode(): (kind, mask) for key, kind, mask in zip(keys, kinds, masks, strict=True)}
    expected = {
        marker: sum(1 << index for index, c in enumerate(conventions) if marker in c.markers)
        for c in conventions
        for marker in c.markers
    }
    assert {key: mask for key, (_, mask) in known.items() if mask} == expected
    assert {known[marker][0] for marker in expected} == {0}
    assert known["acme.llm.call"] == (0, 1 << len(CONVENTIONS))
    assert bin(known["openinference.span.kind"][1]).count("1") == 2
