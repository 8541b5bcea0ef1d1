"""Every convention in the wild, read right: the same calls made through OpenLLMetry, OpenInference,
OpenLIT, Logfire, LangSmith and the official contrib instrumentation are stored with the same tokens
and the same cost as spanmeter's own instrumentation reports for them, each call once."""

from __future__ import annotations

import time
from datetime import UTC
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from clickhouse_connect.driver.client import Client

from .conftest import Collected, by_call

# library -> (calls it instruments, the convention its rows must be read with)
LIBRARIES: dict[str, tuple[list[str], str]] = {
    "openllmetry": (["openai_chat", "openai_embeddings", "anthropic_messages"], "openllmetry"),
    "openinference": (["openai_chat", "openai_embeddings", "anthropic_messages"], "openinference"),
    "openlit": (["openai_chat", "openai_embeddings", "anthropic_messages"], "openlit"),
    "logfire": (["openai_chat", "openai_embeddings", "anthropic_messages"], "logfire"),
    "langsmith": (["openai_chat", "anthropic_messages"], "langsmith"),
    "otel_contrib": (["gemini_generate"], "otel_genai"),
}
COMPARED = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_cost", "price_status")


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_same_call_same_tokens_same_cost(
    library: str, reference: dict, collected: Collected, conventions_python: Path, fake_provider: str, store: Client
) -> None:
    calls, convention = LIBRARIES[library]
    # The Anthropic SDK's own tracing is off here, so each row is read from the library's own span.
    collected.run(conventions_python, library, calls, fake_provider, ANTHROPIC_OPEN_TELEMETRY="false")
    rows = by_call(collected.rows(store, len(calls)))
    assert len(rows) == len(calls)
    for key, row in rows.items():
        expected = reference[key]
        assert row["convention"] == convention, key
        for column in COMPARED:
            assert row[column] == expected[column], (library, key, column, row[column], expected[column])
        assert row["service_name"] == library


@pytest.mark.parametrize("library", ["openllmetry", "openinference", "openlit", "logfire", "langsmith"])
def test_anthropic_sdk_tracing_under_another_instrumentation_counts_each_call_once(
    library: str, reference: dict, collected: Collected, conventions_python: Path, fake_provider: str, store: Client
) -> None:
    collected.run(conventions_python, library, ["anthropic_messages"], fake_provider)
    [row] = collected.rows(store, 1)
    expected = reference[("anthropic", "chat")]
    for column in COMPARED:
        assert row[column] == expected[column], (library, column)
    # The duplicate may be read in a later segment than the row it repeats (a loaded host reads slowly).
    dropped = collected.collector.metrics.spans_dropped.labels("duplicate_call")._value
    deadline = time.monotonic() + 20
    while dropped.get() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dropped.get() == 1
    assert len(collected.rows(store, 1)) == 1


def test_openllmetry_before_its_move_to_the_current_names(
    reference: dict, collected: Collected, legacy_python: Path, fake_provider: str, store: Client
) -> None:
    """OpenLLMetry 0.33: `gen_ai.system` "OpenAI", `gen_ai.usage.prompt_tokens`, `llm.request.type` "embedding",
    `gen_ai.usage.cache_read_input_tokens`; Anthropic messages labelled "completion"."""
    calls = ["openai_chat", "openai_embeddings", "anthropic_messages"]
    collected.run(legacy_python, "openllmetry", calls, fake_provider)
    rows = collected.rows(store, len(calls))
    assert len(rows) == len(calls)
    operations = {(row["provider"], row["operation"]) for row in rows}
    assert operations == {("openai", "chat"), ("openai", "embeddings"), ("anthropic", "text_completion")}
    for row in rows:
        operation = "chat" if row["operation"] == "text_completion" else row["operation"]
        assert row["convention"] == "openllmetry"
        assert_same_call(row, reference[(row["provider"], operation)], reports_openai_cache=False)


def test_contrib_openai_v2_in_both_modes(
    reference: dict, collected: Collected, contrib_openai_python: Path, fake_provider: str, store: Client
) -> None:
    """opentelemetry-instrumentation-openai-v2 2.4b0 (with openai 1.x), default and gen_ai_latest_experimental."""
    calls = ["openai_chat", "openai_embeddings"]
    for mode in ("", "gen_ai_latest_experimental"):
        python = contrib_openai_python
        collected.run(python, "otel_contrib_openai", calls, fake_provider, OTEL_SEMCONV_STABILITY_OPT_IN=mode)
    rows = collected.rows(store, 2 * len(calls))
    assert len(rows) == 2 * len(calls)
    for row in rows:
        assert row["convention"] == "otel_genai"
        assert_same_call(row, reference[(row["provider"], row["operation"])], reports_openai_cache=False)


def assert_same_call(row: dict[str, Any], reference_row: dict[str, Any], reports_openai_cache: bool = True) -> None:
    """The row has the reference's tokens and cost; where the library does not report OpenAI's cached prompt
    tokens at all, they can only be priced as plain input, and that is what the row must say."""
    expected = dict(reference_row)
    if not reports_openai_cache and (row["provider"], row["operation"]) == ("openai", "chat"):
        expected["cache_read_tokens"] = 0
        expected["total_cost"] = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=expected["input_tokens"], output_tokens=expected["output_tokens"]),
            expected["response_model"] or expected["request_model"],
            provider_id="openai",
            genai_request_timestamp=row["timestamp"].replace(tzinfo=UTC),
        ).total_price
    for column in COMPARED:
        assert row[column] == expected[column], (row["operation"], column, row[column], expected[column])


def test_pydantic_ai_agent_run_is_a_row_but_its_call_is_counted_once(
    reference: dict, collected: Collected, conventions_python: Path, fake_provider: str, store: Client
) -> None:
    """Pydantic AI: a `chat` span per model request, inside an `invoke_agent` span that repeats their usage
    as `gen_ai.aggregated_usage.*`: the agent run is a row without usage of its own."""
    collected.run(conventions_python, "pydantic_ai", ["openai_chat"], fake_provider)
    rows = {row["operation"]: row for row in collected.rows(store, 2)}
    assert set(rows) == {"chat", "invoke_agent"}
    chat, agent = rows["chat"], rows["invoke_agent"]
    assert chat["convention"] == "logfire"
    for column in (*COMPARED, "reasoning_tokens"):
        assert chat[column] == reference[("openai", "chat")][column], column
    assert (agent["input_tokens"], agent["total_cost"], agent["price_status"]) == (0, 0, "no_usage")
    assert agent["conversation_id"] == chat["conversation_id"] != ""
    assert "operation.cost" in chat["span_attributes"]  # the client's own cost: kept, never used
