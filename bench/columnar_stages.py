"""The per-row stages against their columnar twins, same rows, same run: duplicates (`filter` + `remember` vs
`filter_table`), budgets (`queued` vs `queued_table`), tags (`process` vs `process_table`) and attribute
redaction (`Redactor.redact` value by value vs `redact_map_column`).

    python bench/columnar_stages.py [--rows 50000] [--rounds 5]

Rows are spans the genai processor decodes from one OTLP request: 20 traces' worth of calls, a tenth of them
resent, usage from a few shapes, a tag, user and customer attributes, a resource per 500 spans. The table is the
batch table (`to_arrow` plus has_usage, response_id, request), not timed. Prints the median milliseconds per
stage over the rounds, per-row then columnar, and the ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from spanmeter.budgets.processor import BudgetProcessor
from spanmeter.config import BudgetProcessorConfig, GenAIProcessorConfig, TagsProcessorConfig
from spanmeter.exporters.clickhouse import to_arrow
from spanmeter.privacy import Redactor
from spanmeter.processors.columnar_redaction import redact_map_column
from spanmeter.processors.dedupe import CallDeduplicator
from spanmeter.processors.genai import ATTRIBUTE_REDACTION_LENGTH, GenAIProcessor
from spanmeter.processors.tags import TagsProcessor
from spanmeter.records import SpanRecord
from spanmeter.telemetry import CollectorMetrics

NOW = datetime(2026, 3, 14, 12, tzinfo=UTC)
TAGS = TagsProcessorConfig(
    rules=[
        {"tag": "customer", "from": "span.app.customer"},
        {"tag": "route", "from": "span.http.route", "regex": r"^/v1/(?P<value>\w+)"},
        {"tag": "tenant", "from": "resource.app.tenant"},
    ]
)
BUDGETS = BudgetProcessorConfig(
    budgets=[
        {"name": "all", "window": "day", "limit_usd": 1000},
        {"name": "users", "scope": {"user": "each"}, "window": "month", "limit_usd": 5},
        {"name": "gpt", "scope": {"model": "gpt-*", "tag:customer": "each"}, "window": "rolling 6h", "limit_usd": 50},
    ]
)


def value(text: str | int) -> AnyValue:
    return AnyValue(int_value=text) if isinstance(text, int) else AnyValue(string_value=text)


def spans(count: int, seed: int) -> list[SpanRecord]:
    rng = random.Random(seed)
    message = ExportTraceServiceRequest()
    start = int(NOW.timestamp() * 1e9) - 3_600_000_000_000
    scope = None
    for index in range(count):
        if index % 500 == 0:
            resource = message.resource_spans.add()
            tenant = f"tenant-{rng.randrange(20)}"
            resource.resource.attributes.extend(
                [KeyValue(key="service.name", value=value("svc")), KeyValue(key="app.tenant", value=value(tenant))]
            )
            scope = resource.scope_spans.add()
        assert scope is not None
        span = scope.spans.add()
        number = rng.randrange(count) if rng.random() < 0.1 else index  # a tenth resent
        span.trace_id = (number // 20).to_bytes(16, "big")
        span.span_id = (number + 1).to_bytes(8, "big")
        span.start_time_unix_nano = start + number * 50_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + 900_000_000
        usage = rng.choice([(1200, 300), (80, 20), (15_000, 900), (400, 400)])
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": rng.choice(["gpt-4o", "gpt-4o-mini", "o3"]),
            "gen_ai.usage.input_tokens": usage[0],
            "gen_ai.usage.output_tokens": usage[1],
            "gen_ai.response.id": f"chatcmpl-{number}",
            "user.id": f"user-{rng.randrange(500)}",
            "app.customer": f"customer-{rng.randrange(50)}",
            "http.route": rng.choice(["/v1/chat/completions", "/v1/embeddings", "/health"]),
            "http.url": f"https://api.example.com/v1/chat?request={number}&user=u{rng.randrange(500)}",
            "spanmeter.tag.feature": rng.choice(["search", "chat", "summary"]),
        }
        span.attributes.extend(KeyValue(key=k, value=value(v)) for k, v in attributes.items())
    return GenAIProcessor(GenAIProcessorConfig()).decode(message).records


def batch_table(records: list[SpanRecord]) -> pa.Table:
    table = to_arrow(records)
    table = table.append_column("has_usage", pa.array([r.has_usage for r in records], pa.bool_()))
    table = table.append_column("response_id", pa.array([r.response_id for r in records], pa.string()))
    return table.append_column("request", pa.array([0] * len(records), pa.int32()))


def median_ms(rounds: int, run: Callable[[], object], setup: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(rounds):
        setup()
        began = time.perf_counter()
        run()
        times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records = spans(args.rows, seed=7)
    table = batch_table(records)
    tags = [dict(record.tags) for record in records]
    columns = [(r.feature, r.user_id, r.session_id) for r in records]
    rounds = args.rounds

    def reset_tags() -> None:
        for record, original, (feature, user, session) in zip(records, tags, columns, strict=True):
            record.tags = dict(original)
            record.feature, record.user_id, record.session_id = feature, user, session

    def dedupe_records() -> None:
        deduplicator = CallDeduplicator()
        deduplicator.remember(deduplicator.filter(records))

    def budgets() -> BudgetProcessor:
        return BudgetProcessor(BUDGETS, None, None, CollectorMetrics(), lambda: NOW)  # type: ignore[arg-type]

    redactor = Redactor()

    def redact_records() -> None:
        for record in records:
            for text in record.span_attributes.values():
                if len(text) >= ATTRIBUTE_REDACTION_LENGTH:
                    redactor.redact(text)

    tagger = TagsProcessor(TAGS, GenAIProcessorConfig())
    stages = {
        "duplicates": (dedupe_records, lambda: CallDeduplicator().filter_table(table), lambda: None),
        "budgets": (lambda: budgets().queued(records), lambda: budgets().queued_table(table), lambda: None),
        "tags": (lambda: TagsProcessor(TAGS).process(records), lambda: tagger.process_table(table), reset_tags),
        "redaction": (
            redact_records,
            lambda: redact_map_column(table.column("span_attributes"), redactor, ATTRIBUTE_REDACTION_LENGTH),
            lambda: None,
        ),
    }
    print(f"{len(records)} rows, median of {rounds} rounds (ms)")
    print(f"{'stage':<12}{'per row':>10}{'columnar':>10}{'ratio':>8}")
    for name, (per_row, columnar, setup) in stages.items():
        row_ms = median_ms(rounds, per_row, setup)
        column_ms = median_ms(rounds, columnar)
        print(f"{name:<12}{row_ms:>10.1f}{column_ms:>10.1f}{row_ms / column_ms:>7.1f}x")
    fallback = tagger.process_table(table)[1]
    print(f"tags: {int(fallback.sum())} rows handed back to the reference")


if __name__ == "__main__":
    main()
