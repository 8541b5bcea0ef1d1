"""End to end: spans from the real OTel SDK, over OTLP gRPC, HTTP/protobuf and HTTP/JSON, into a
collector on loopback, priced into genai_spans in chDB. Each row is checked against genai-prices
itself for the same model, usage and timestamp."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from clickhouse_connect.driver.client import Client

from spanmeter.service import Collector

from .conftest import TRANSPORTS, Since, emit, rows, tracer_provider, wait_for_rows

AT = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
AT_NS = int(AT.timestamp() * 1e9)

# (span attributes beyond the model, genai-prices provider id, usage as genai-prices counts it)
PRICED_CALLS: list[tuple[str, str, str, dict[str, int]]] = [
    ("openai", "gpt-4o-2024-08-06", "openai", {"input": 1200, "output": 300, "cache_read": 512}),
    (
        "anthropic",
        "claude-sonnet-4-5",
        "anthropic",
        {"input": 5000, "output": 400, "cache_read": 3000, "cache_write": 1000},
    ),
    ("openai", "o3-mini", "openai", {"input": 800, "output": 2500, "reasoning": 2000}),
    ("gcp.gemini", "gemini-2.5-flash", "google", {"input": 1000, "output": 700, "reasoning": 300, "cache_read": 200}),
]


def genai_attributes(provider: str, model: str, usage: dict[str, int], **extra: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": usage["input"],
        "gen_ai.usage.output_tokens": usage["output"],
    }
    for key, name in (
        ("cache_read", "gen_ai.usage.cache_read.input_tokens"),
        ("cache_write", "gen_ai.usage.cache_creation.input_tokens"),
        ("reasoning", "gen_ai.usage.reasoning.output_tokens"),
    ):
        if key in usage:
            attributes[name] = usage[key]
    attributes.update(extra)
    return attributes


def reference_price(model: str, provider_id: str, usage: dict[str, int], at: datetime) -> Any:
    return genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage["input"],
            output_tokens=usage["output"],
            cache_read_tokens=usage.get("cache_read", 0),
            cache_write_tokens=usage.get("cache_write", 0),
        ),
        model,
        provider_id=provider_id,
        genai_request_timestamp=at,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rows_are_priced_exactly_as_genai_prices(transport: str, since: Since) -> None:
    provider = tracer_provider(since.collector, transport)
    span_ids = {}
    for otel_provider, model, _, usage in PRICED_CALLS:
        span_ids[model] = emit(provider, f"chat {model}", genai_attributes(otel_provider, model, usage), AT_NS)
    since.stored_span_ids(len(PRICED_CALLS))

    stored = {row["span_id"]: row for row in since.rows()}
    assert len(stored) == len(PRICED_CALLS)
    for _, model, provider_id, usage in PRICED_CALLS:
        row = stored[span_ids[model]]
        expected = reference_price(model, provider_id, usage, AT)
        assert (row["input_tokens"], row["output_tokens"]) == (usage["input"], usage["output"])
        assert row["cache_read_tokens"] == usage.get("cache_read", 0)
        assert row["cache_write_tokens"] == usage.get("cache_write", 0)
        assert row["reasoning_tokens"] == usage.get("reasoning", 0)
        assert row["input_cost"] + row["cache_read_cost"] + row["cache_write_cost"] == expected.input_price, model
        assert row["output_cost"] == expected.output_price, model
        assert row["total_cost"] == expected.total_price, model
        assert row["total_cost"] > 0
        assert row["price_status"] == "priced"
        assert row["price_source"] == f"genai-prices {genai_prices.__version__}"
        assert row["timestamp"].replace(tzinfo=UTC) == AT
        assert row["duration_ns"] == 1_500_000_000
        assert row["service_name"] == "test-service"
        assert row["convention"] == "otel_genai"


def test_cache_tokens_are_priced_at_cache_rates_not_twice(since: Since) -> None:
    """Anthropic-style usage: the cache parts are priced at their own rates, and only the rest at
    the input rate (the double-count peers get wrong)."""
    usage = {"input": 10_000, "output": 100, "cache_read": 6_000, "cache_write": 3_000}
    emit(tracer_provider(since.collector), "chat", genai_attributes("anthropic", "claude-sonnet-4-5", usage), AT_NS)
    since.stored_span_ids(1)
    [row] = since.rows()
    million = Decimal(1_000_000)
    assert row["input_cost"] == Decimal(1_000) * Decimal(3) / million
    assert row["cache_read_cost"] == Decimal(6_000) * Decimal("0.3") / million
    assert row["cache_write_cost"] == Decimal(3_000) * Decimal("3.75") / million
    assert row["output_cost"] == Decimal(100) * Decimal(15) / million


def test_unknown_model_is_unpriced_not_free_and_still_counted(since: Since) -> None:
    provider = tracer_provider(since.collector)
    emit(provider, "chat acme-llm-7b", genai_attributes("acme", "acme-llm-7b", {"input": 100, "output": 50}), AT_NS)
    emit(provider, "chat", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}, AT_NS)
    since.stored_span_ids(2)
    unknown, no_usage = sorted(since.rows(), key=lambda r: r["request_model"], reverse=True)
    assert unknown["price_status"] == "unpriced"
    assert unknown["total_cost"] == 0
    assert unknown["input_tokens"] == 100
    assert no_usage["price_status"] == "no_usage"


def test_price_override_from_pipelines_yaml_wins(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector(
        {
            "processors": {
                "pricing": {
                    "overrides": [
                        {
                            "model": "llama3.1:8b",
                            "provider": "ollama",
                            "input_per_mtok": "0.05",
                            "output_per_mtok": "0.1",
                        },
                        {
                            "model": "gpt-4o-mini",
                            "input_per_mtok": "0.1",
                            "output_per_mtok": "0.2",
                            "cache_read_per_mtok": "0.01",
                        },
                    ]
                }
            },
            "exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}},
        }
    )
    provider = tracer_provider(collector)
    emit(provider, "chat", genai_attributes("ollama", "llama3.1:8b", {"input": 2_000_000, "output": 1_000_000}), AT_NS)
    emit(
        provider,
        "chat",
        genai_attributes("openai", "gpt-4o-mini", {"input": 1_000_000, "output": 0, "cache_read": 500_000}),
        AT_NS,
    )
    emit(provider, "chat", genai_attributes("ollama", "qwen3:4b", {"input": 10, "output": 10}), AT_NS)
    wait_for_rows(collector, 3)
    by_model = {row["request_model"]: row for row in rows(store, database)}

    llama = by_model["llama3.1:8b"]
    assert (llama["price_status"], llama["price_source"]) == ("override", "pipelines.yaml")
    assert llama["total_cost"] == Decimal("0.2")
    mini = by_model["gpt-4o-mini"]
    assert mini["price_status"] == "override"
    assert (mini["input_cost"], mini["cache_read_cost"]) == (Decimal("0.05"), Decimal("0.005"))
    # A self-hosted model without an override is not given some cloud price.
    assert by_model["qwen3:4b"]["price_status"] == "unpriced"


def test_deprecated_attribute_names_price_the_same(since: Since) -> None:
    provider = tracer_provider(since.collector)
    current = emit(
        provider, "chat", genai_attributes("openai", "gpt-4o-2024-08-06", {"input": 900, "output": 90}), AT_NS
    )
    old = emit(
        provider,
        "chat gpt-4o-2024-08-06",
        {
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.prompt_tokens": 900,
            "gen_ai.usage.completion_tokens": 90,
        },
        AT_NS,
    )
    since.stored_span_ids(2)
    stored = {row["span_id"]: row for row in since.rows()}
    assert stored[old]["provider"] == "openai"
    assert stored[old]["operation"] == "chat"  # from the span name, as the attribute is absent
    for column in ("input_tokens", "output_tokens", "total_cost", "price_status"):
        assert stored[old][column] == stored[current][column], column


def test_time_of_day_prices_follow_each_span_start(since: Since) -> None:
    """deepseek-chat has off-peak rates: two calls in the same hour, either side of 00:30 UTC."""
    provider = tracer_provider(since.collector)
    usage = {"input": 1_000_000, "output": 0}
    times = [datetime(2026, 6, 15, 0, 10, tzinfo=UTC), datetime(2026, 6, 15, 0, 40, tzinfo=UTC)]
    for at in times:
        emit(provider, "chat", genai_attributes("deepseek", "deepseek-chat", usage), int(at.timestamp() * 1e9))
    since.stored_span_ids(2)
    costs = [row["total_cost"] for row in since.rows()]
    assert costs == [reference_price("deepseek-chat", "deepseek", usage, at).total_price for at in times]
    assert costs[0] != costs[1]


# (provider as sent, model as sent, genai-prices provider, canonical model the price must equal)
MODEL_VARIANTS = [
    ("openai", "openai/gpt-4o", "openai", "gpt-4o"),  # LiteLLM / gateway style vendor prefix
    ("", "openai/gpt-4o-mini", "openai", "gpt-4o-mini"),  # no provider at all
    ("gcp.gemini", "models/gemini-2.5-flash", "google", "gemini-2.5-flash"),  # Gemini API resource name
    ("gcp.vertex_ai", "claude-sonnet-4-5@20250929", "google", "claude-sonnet-4-5"),  # Vertex snapshot suffix
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "aws", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("openrouter", "anthropic/claude-3.5-sonnet", "openrouter", "anthropic/claude-3.5-sonnet"),
    ("xai", "grok-3", "x-ai", "grok-3"),  # deprecated gen_ai.system value
    ("anthropic", "claude-sonnet-4-5-20250929", "anthropic", "claude-sonnet-4-5"),  # dated snapshot
]


def test_model_name_variants_resolve_to_the_right_price(since: Since) -> None:
    provider = tracer_provider(since.collector)
    usage = {"input": 10_000, "output": 1_000}
    ids = {}
    for sent_provider, model, _, _ in MODEL_VARIANTS:
        attributes = genai_attributes(sent_provider, model, usage)
        if not sent_provider:
            del attributes["gen_ai.provider.name"]
            attributes["gen_ai.operation.name"] = "chat"
        ids[model] = emit(provider, "chat", attributes, AT_NS)
    since.stored_span_ids(len(MODEL_VARIANTS))
    stored = {row["span_id"]: row for row in since.rows()}
    for _, model, provider_id, canonical in MODEL_VARIANTS:
        row = stored[ids[model]]
        assert row["price_status"] == "priced", model
        assert row["total_cost"] == reference_price(canonical, provider_id, usage, AT).total_price, model
