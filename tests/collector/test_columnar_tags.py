"""`TagsProcessor.process_table` against `process`: spans decoded by the genai processor from real OTLP requests,
tagged both ways; every row `process_table` does not hand back (its fallback mask) has the same `tags`, `feature`,
`user_id` and `session_id` as the reference gives from the raw attributes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from spanmeter.config import GenAIProcessorConfig, TagsProcessorConfig
from spanmeter.exporters.clickhouse import to_arrow
from spanmeter.processors.genai import GenAIProcessor
from spanmeter.processors.tags import TagsProcessor

from .columnar_helpers import batch_table

RULES = [
    {"tag": "customer", "from": "span.app.customer"},
    {"tag": "tenant", "from": "resource.app.tenant", "regex": r"^(?P<value>[a-z]*)-"},
    {"tag": "route", "from": "span.app.route", "regex": r"/v1/(\w*)/"},
    {"tag": "feature", "from": "span.app.feature"},
    {"tag": "user_id", "from": "resource.app.user", "regex": r"u(\d*)"},
    {"tag": "customer", "from": "span.app.other"},
    {"tag": "team", "from": "span.traceloop.association.properties.team"},
    {"tag": "session.id", "from": "span.app.session", "regex": r"(?:s-(\d+))?"},
]
VALUES = [
    "acme",
    "",
    "bcd-123",
    "/v1/users/7",
    "/v1//x",
    "/v1/ünï/x",
    "u42",
    "u",
    "s-12",
    "x" * 30,
    "a" * 19,
    "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
    "[REDACTED:email]",
    "contact jane@example.com",
    "red-" + "z" * 1100,
]
KEYS = ["app.customer", "app.route", "app.feature", "app.other", "app.session", "app.pad", "spanmeter.tag.customer"]
KEYS += ["spanmeter.tag.feature", "traceloop.association.properties.team", "spanmeter.tag.user_id"]
RESOURCE_KEYS = ["app.tenant", "app.user", "app.pad", "cloud.region"]


def value(text: str | int) -> AnyValue:
    return AnyValue(int_value=text) if isinstance(text, int) else AnyValue(string_value=text)


attributes = st.lists(st.tuples(st.sampled_from(KEYS), st.one_of(st.sampled_from(VALUES), st.integers(0, 99))))
resources = st.lists(st.tuples(st.sampled_from(RESOURCE_KEYS), st.sampled_from(VALUES)), max_size=4)


def request(resources_spans: list[tuple[list[tuple[str, str]], list[list[tuple[str, object]]]]]) -> bytes:
    message = ExportTraceServiceRequest()
    number = 0
    for resource, spans in resources_spans:
        resource_spans = message.resource_spans.add()
        resource_spans.resource.attributes.extend(KeyValue(key=k, value=value(v)) for k, v in resource)
        scope = resource_spans.scope_spans.add()
        for extra in spans:
            number += 1
            span = scope.spans.add()
            span.trace_id = number.to_bytes(16, "big")
            span.span_id = number.to_bytes(8, "big")
            span.name = "chat gpt-4o"
            span.start_time_unix_nano = 1_700_000_000_000_000_000
            span.end_time_unix_nano = 1_700_000_001_000_000_000
            genai = [("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai")]
            genai += [("gen_ai.request.model", "gpt-4o"), ("gen_ai.usage.input_tokens", 3)]
            span.attributes.extend(KeyValue(key=k, value=value(v)) for k, v in [*genai, *extra])  # type: ignore[arg-type]
    return message.SerializeToString()


@settings(max_examples=150, deadline=None)
@given(
    batch=st.lists(st.tuples(resources, st.lists(attributes, min_size=1, max_size=4)), min_size=1, max_size=4),
    max_attributes=st.sampled_from([3, 128]),
    max_length=st.sampled_from([25, 4096]),
    redact=st.booleans(),
    custom=st.booleans(),
)
def test_process_table_equals_process_outside_its_fallback(batch, max_attributes, max_length, redact, custom) -> None:
    rules = [{"name": "digits", "regex": r"\d{2}", "replacement": "<n>"}] if custom else []
    genai = GenAIProcessorConfig(
        max_attributes=max_attributes,
        max_attribute_value_length=max_length,
        redaction={"attributes": redact, "rules": rules},
    )
    decoded = GenAIProcessor(genai).decode(ExportTraceServiceRequest.FromString(request(batch)))
    records = decoded.records
    assert len(records) == sum(len(spans) for _, spans in batch)
    table = batch_table(records)
    config = TagsProcessorConfig(rules=RULES)
    columnar = TagsProcessor(config, genai)
    assert columnar.columnar_ok
    result, fallback = columnar.process_table(table)
    TagsProcessor(config).process(records)
    expected = to_arrow(records)
    assert result.schema == table.schema
    for name in ("tags", "feature", "user_id", "session_id"):
        got, want = result.column(name).to_pylist(), expected.column(name).to_pylist()
        for row in range(len(records)):
            if not fallback[row]:
                assert got[row] == want[row], (name, row)
    for name in ("span_attributes", "timestamp", "request"):
        assert result.column(name).equals(table.column(name))
    if max_attributes == 128 and max_length == 4096 and not redact:
        assert not fallback.any()


def test_rules_the_columns_cannot_answer() -> None:
    genai = GenAIProcessorConfig()
    for rule in (
        {"tag": "model", "from": "span.gen_ai.request.model"},  # read into a column
        {"tag": "prompt", "from": "span.gen_ai.prompt.0.content"},  # content
        {"tag": "long", "from": "resource." + "k" * 1024},  # cut keys
    ):
        processor = TagsProcessor(TagsProcessorConfig(rules=[rule]), genai)
        assert not processor.columnar_ok
        assert processor.process_table(batch_table([]))[1].all()
    redaction = {"rules": [{"name": "gone", "regex": "secret", "replacement": ""}]}
    hidden = TagsProcessor(TagsProcessorConfig(rules=RULES), GenAIProcessorConfig(redaction=redaction))
    assert not hidden.columnar_ok


def test_a_convention_whose_tag_prefix_takes_the_attribute_falls_back() -> None:
    rule = {"tag": "team", "from": "span.traceloop.association.properties.team"}
    processor = TagsProcessor(TagsProcessorConfig(rules=[rule]), GenAIProcessorConfig())
    records = (
        GenAIProcessor(GenAIProcessorConfig())
        .decode(ExportTraceServiceRequest.FromString(request([([], [[("app.x", "1")], [("app.x", "2")]])])))
        .records
    )
    records[1].convention = "openllmetry"
    _, fallback = processor.process_table(batch_table(records))
    assert fallback.tolist() == [False, True]
