"""The Vercel AI SDK (JavaScript, run under Node): the same calls made through its telemetry, in its
v6, v5 and v4 lines, are stored once each, with the tokens and cost spanmeter's own instrumentation
reports for them. The producer is tests/conventions/vercel/app.mjs; `make test` installs its
node_modules from the committed package-lock.json."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from . import test_conventions
from .conftest import Collected

VERCEL = Path(__file__).parent / "vercel"
NODE = shutil.which("node")

# feature (telemetry metadata) of each call app.mjs makes -> the reference call it repeats
CALLS: dict[str, tuple[str, str]] = {
    "vercel-generate": ("openai", "chat"),  # generateText, openai.chat("gpt-4o-mini")
    "vercel-stream": ("openai", "chat"),  # streamText, the same model
    "vercel-anthropic": ("anthropic", "chat"),  # generateText, anthropic("claude-sonnet-4-5")
    "vercel-embed": ("openai", "embeddings"),  # embed, openai.embedding("text-embedding-3-small")
}
COMPARED = (*test_conventions.COMPARED, "reasoning_tokens")
CONTENT = ("ai.prompt", "ai.prompt.messages", "ai.response.text", "ai.values", "ai.embeddings")


@pytest.fixture(scope="module")
def node() -> str:
    if NODE is None:
        pytest.skip("no `node` on PATH: the Vercel AI SDK is JavaScript and runs under Node.js")
    if not (VERCEL / "node_modules" / "ai").is_dir():
        pytest.skip(f"no {VERCEL / 'node_modules'}: `make test` installs it (npm ci --prefix {VERCEL})")
    return NODE


def run_app(collected: Collected, node: str, version: str, fake: str) -> None:
    env = {
        **os.environ,
        "FAKE_PROVIDER_URL": fake,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{collected.collector.http_port}/v1/traces",
    }
    env.pop("OTEL_SERVICE_NAME", None)
    out = subprocess.run(
        [node, str(VERCEL / "app.mjs"), version], cwd=VERCEL, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"AI SDK v{version} app failed:\n{out.stderr[-3000:]}"


def dropped(collected: Collected, reason: str) -> float:
    return collected.collector.metrics.spans_dropped.labels(reason)._value.get()


def dropped_once_settled(collected: Collected, reason: str, expected: int, timeout: float = 10.0) -> float:
    """The wrapper spans (ai.generateText, ...) end after the calls inside them and can reach the
    collector in a later request, so a later segment: they are counted once that segment is read."""
    deadline = time.monotonic() + timeout
    while dropped(collected, reason) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return dropped(collected, reason)


@pytest.mark.parametrize("version", ["6", "5", "4"])
def test_each_model_call_once_with_the_tokens_and_cost_of_our_own_row(
    version: str, reference: dict, collected: Collected, node: str, fake_provider: str, store: Client
) -> None:
    run_app(collected, node, version, fake_provider)
    rows = collected.rows(store, len(CALLS))
    by_feature: dict[str, dict[str, Any]] = {row["feature"]: row for row in rows}
    # One row per provider call (doGenerate / doStream / doEmbed); the four ai.generateText,
    # ai.streamText, ai.embed spans around them repeat their usage and are not rows.
    assert len(rows) == len(CALLS) and set(by_feature) == set(CALLS), [r["feature"] for r in rows]
    assert dropped_once_settled(collected, "not_a_model_call", len(CALLS)) == len(CALLS)
    assert dropped(collected, "duplicate_call") == 0

    for feature, key in CALLS.items():
        row, expected = by_feature[feature], reference[key]
        assert (row["provider"], row["operation"]) == key, feature
        assert row["convention"] == "vercel_ai"
        assert row["service_name"] == f"vercel-ai-v{version}"
        assert row["request_model"] == expected["request_model"], feature
        # Metadata are tags; userId and sessionId also fill their columns.
        assert row["tags"] == {"feature": feature, "team": "growth", "userId": "user-7", "sessionId": "session-3"}
        assert (row["user_id"], row["session_id"]) == ("user-7", "session-3")
        assert not set(CONTENT) & set(row["span_attributes"]), "prompt/completion text kept with capture off"
        if version == "5" and feature == "vercel-generate":
            # AI SDK 5's generateText spans carry only ai.usage.promptTokens/completionTokens, and its OpenAI
            # provider leaves providerMetadata empty: the 10 cached prompt tokens and 4 reasoning tokens the
            # server reported are nowhere in the span (its streamText spans have them, as do v4's and v6's).
            # Input and output agree; the cached tokens are priced as plain input, so the cost is higher.
            assert (row["input_tokens"], row["output_tokens"]) == (expected["input_tokens"], expected["output_tokens"])
            assert (row["cache_read_tokens"], row["reasoning_tokens"]) == (0, 0)
            assert expected["cache_read_tokens"] > 0
            assert row["total_cost"] > expected["total_cost"]
            assert row["price_status"] == "priced"
            continue
        for column in COMPARED:
            assert row[column] == expected[column], (version, feature, column, row[column], expected[column])
        assert row["total_cost"] > Decimal(0)
