"""The engine decoder (not wired yet) against the Python reader, row for row, on spans the real OTel SDK made:
ClickHouse (chDB) reads length-delimited OTLP requests with `otlp_traces.proto` and the SQL generated from the
otel_genai convention table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter.config import GenAIProcessorConfig
from spanmeter.conventions import CONVENTIONS
from spanmeter.engine import SCHEMA_FILE, decode_sql, length_delimited
from spanmeter.processors import GenAIProcessor

from .test_pricing_e2e import genai_attributes

COMPARED = (
    "trace_id", "span_id", "parent_span_id", "timestamp", "duration_ns", "provider", "request_model",
    "response_model", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "finish_reasons", "error_type", "user_id", "session_id", "conversation_id", "response_id",
)  # fmt: skip


def requests() -> list[bytes]:
    """Two requests: current and deprecated names, cache and reasoning, lists, ids; ordinary spans among them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "engine"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("engine-test")
    usage = {"input": 1200, "output": 300, "cache_read": 512, "cache_write": 64, "reasoning": 100}
    with tracer.start_as_current_span("invoke_agent"):
        for n in range(6):
            attributes = genai_attributes(
                "openai",
                ("gpt-4o", "o3-mini", "gpt-4o-mini")[n % 3],
                usage,
                **{
                    "gen_ai.response.finish_reasons": ["stop", "length"][: 1 + n % 2],
                    "gen_ai.response.id": f"resp-{n}",
                    "gen_ai.conversation.id": f"conv-{n % 2}",
                    "user.id": f"u-{n}",
                    "session.id": "s-1",
                },
            )
            tracer.start_span(f"chat {n}", attributes=attributes).end()
    deprecated = {
        "gen_ai.system": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.prompt_tokens": 40,
        "gen_ai.usage.completion_tokens": "7",  # a count sent as text
        "error.type": "timeout",
    }
    tracer.start_span("chat old", attributes=deprecated).end()
    tracer.start_span("GET /health", attributes={"http.request.method": "GET", "url.full": "http://x/health"}).end()
    spans = list(memory.get_finished_spans())
    return [encode_spans(spans[:4]).SerializeToString(), encode_spans(spans[4:]).SerializeToString()]


def python_rows(bodies: list[bytes]) -> dict[str, dict[str, Any]]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    reader = GenAIProcessor(GenAIProcessorConfig())
    rows = {}
    for body in bodies:
        for record in reader.decode(ExportTraceServiceRequest.FromString(body)).records:
            rows[record.span_id] = {name: getattr(record, name) for name in COMPARED}
    return rows


def test_the_engine_reads_otel_genai_spans_as_the_python_reader_does(store: Client, tmp_path: Path) -> None:
    bodies = requests()
    path = tmp_path / "requests.bin"
    path.write_bytes(length_delimited(bodies))
    otel = next(c for c in CONVENTIONS if c.name == "otel_genai")
    result = store.query(
        decode_sql(otel),
        parameters={"path": str(path)},
        settings={"format_schema": f"{SCHEMA_FILE}:ExportTraceServiceRequest"},
    )
    engine = {}
    for row in result.named_results():
        engine[row["span_id"]] = {name: row[name] for name in COMPARED}
        engine[row["span_id"]]["finish_reasons"] = list(row["finish_reasons"])
    reference = python_rows(bodies)
    assert engine.keys() == reference.keys()
    assert len(engine) == 7  # 6 chats and the deprecated one; not the parent span without GenAI attributes, nor HTTP
    for span_id, expected in reference.items():
        assert engine[span_id] == expected, span_id
