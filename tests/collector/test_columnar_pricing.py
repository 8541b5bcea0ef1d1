"""The columnar pricer against the reference `PricingProcessor`, row for row: the same rows priced both ways
give the same cost columns to the last digit, the same statuses and sources, and the same rejections."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

from spanmeter.config import PriceOverride, PricingProcessorConfig
from spanmeter.exporters.clickhouse import ARROW_SCHEMA, to_arrow
from spanmeter.processors.columnar_pricing import COST_COLUMNS, ColumnarPricer
from spanmeter.processors.pricing import PricingProcessor
from spanmeter.records import SpanRecord

from .columnar_helpers import blank_record

# (provider, response model, request model): known, cached, tiered, time-of-day, price history, routers,
# prices computed by genai-prices itself (per-request fees), prices with many decimals, overrides, unknowns.
MODELS = [
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5"),
    ("gcp.gemini", "gemini-2.5-pro", "gemini-2.5-pro"),
    ("deepseek", "deepseek-chat", "deepseek-chat"),
    ("openai", "gpt-3.5-turbo", ""),
    ("openrouter", "google/gemini-2.5-flash", ""),
    ("perplexity", "sonar-pro", "sonar-pro"),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", ""),
    ("openai", "my-finetune-xyz", "gpt-4o-mini"),  # answered under an unknown name: the request prices it
    ("openai", "", "openai/gpt-4o"),
    ("", "gpt-4.1", ""),
    ("ollama", "llama3", "llama3"),  # self-hosted: unpriced
    ("acme", "no-such-model", ""),  # unpriced
    ("vllm", "house-model", ""),  # an override for every provider
    ("azure.ai.openai", "Negotiated-GPT", ""),  # an override for one provider, many decimals
]
OVERRIDES = [
    PriceOverride(model="house-model", input_per_mtok=Decimal("0.2"), output_per_mtok=Decimal("0.6")),
    PriceOverride(
        model="negotiated-gpt",
        provider="azure.ai.openai",
        input_per_mtok=Decimal("1.23456789"),
        output_per_mtok=Decimal("4.0000001"),
        cache_read_per_mtok=Decimal("0.1"),
    ),
]


def records(count: int, seed: int) -> list[SpanRecord]:
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=UTC).timestamp()
    end = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    rows = []
    for index in range(count):
        record = blank_record()
        record.provider, record.response_model, record.request_model = rng.choice(MODELS)
        record.timestamp = int(rng.uniform(start, end) * 1e9) + rng.randrange(1000)
        record.input_tokens = rng.choice([0, 7, 1_000, 12_345, 199_999, 200_001, 350_000])
        record.cache_read_tokens = rng.randrange(record.input_tokens + 1) // 2
        record.cache_write_tokens = rng.randrange(record.input_tokens - record.cache_read_tokens + 1) // 3
        record.output_tokens = rng.choice([0, 1, 200, 3_210, 40_000])
        record.reasoning_tokens = rng.randrange(record.output_tokens + 1) // 2
        record.has_usage = index % 17 != 0
        if index % 101 == 0:  # beyond what the integers carry: priced by the reference card, or refused
            record.input_tokens = rng.choice([2**29, 2**40, 2**62])
        if index % 211 == 0:
            record.output_tokens = 2**64 - 1
        rows.append(record)
    return rows


def test_columnar_pricing_equals_the_reference_row_for_row() -> None:
    config = PricingProcessorConfig(overrides=OVERRIDES)
    reference = PricingProcessor(config)
    pricer = ColumnarPricer(PricingProcessor(config))
    rows = records(5_000, seed=12)
    table = to_arrow(rows)
    reference.process(rows)
    priced = pricer.price(table, [record.has_usage for record in rows])

    assert priced.rejections == {index: record.rejection for index, record in enumerate(rows) if record.rejection}
    assert len(priced.rejections) > 10
    columns = {name: priced.table.column(name).to_pylist() for name in (*COST_COLUMNS, "price_status", "price_source")}
    for index, record in enumerate(rows):
        if record.rejection:
            continue
        for name, values in columns.items():
            assert values[index] == getattr(record, name), (index, name, record.provider, record.model)
    statuses = set(columns["price_status"])
    assert statuses == {"priced", "override", "unpriced", "no_usage"}
    # The other columns are untouched, and the table is still the exporter's.
    assert priced.table.schema.equals(ARROW_SCHEMA)
    for name in ("timestamp", "provider", "response_model", "input_tokens", "tags"):
        assert priced.table.column(name).equals(table.column(name))


def test_an_empty_table_is_returned_as_is() -> None:
    table = to_arrow([])
    assert ColumnarPricer(PricingProcessor(PricingProcessorConfig())).price(table, []).table.equals(table)
