"""End to end through the real pipeline: an app run under ``opentelemetry-instrument`` calls the
OpenAI, Anthropic, Google GenAI and Ollama SDKs against the fake provider server, and exports
OTLP to a ``spanmeter serve`` process; every call must be one priced, tagged row in genai_spans.

The app runs twice, differing in what reaches the collector:

- over OTLP/HTTP with the Anthropic SDK tracing itself (its native ``anthropic.messages.create``
  spans, which this distribution stands aside for);
- over OTLP/gRPC with ``ANTHROPIC_OPEN_TELEMETRY=false``, so this distribution's Anthropic spans.

The collector is a child process because chDB opens one data directory per process, and the
collector tests of the same pytest run hold theirs; its store is read from another child.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

# This distribution's tests install without the collector; this one test needs it.
pytest.importorskip("spanmeter", reason="the collector is not installed (pip install -e . at the repository root)")

import genai_prices
import yaml

from spanmeter.records import COLUMNS
from tests.collector.test_durability import ServeProcess, query_store
from tests.collector.test_pricing_e2e import reference_price
from tests.fakes.provider_server import (
    ANTHROPIC_USAGE,
    GEMINI_USAGE,
    OLLAMA_USAGE,
    OPENAI_CHAT_USAGE,
    OPENAI_EMBEDDINGS_USAGE,
    OPENAI_RESPONSES_USAGE,
)

from .test_opentelemetry_instrument import INSTRUMENT

APP = Path(__file__).parent / "apps" / "collector_app.py"
REPO = Path(__file__).resolve().parents[2]
DATABASE = "e2e"

# Ollama models run on the user's hardware: genai-prices has no price, pipelines.yaml gives one.
OLLAMA_RATES = {"input_per_mtok": "0.05", "output_per_mtok": "0.10"}

# The fake server's usage, in OTel's meaning: input includes cache reads and cache writes
# (Anthropic's own input_tokens excludes both), output includes reasoning (Gemini's candidates
# count excludes thoughts).
OPENAI_CHAT = {
    "input": OPENAI_CHAT_USAGE["prompt_tokens"],
    "output": OPENAI_CHAT_USAGE["completion_tokens"],
    "cache_read": OPENAI_CHAT_USAGE["prompt_tokens_details"]["cached_tokens"],
    "reasoning": OPENAI_CHAT_USAGE["completion_tokens_details"]["reasoning_tokens"],
}
OPENAI_RESPONSES = {
    "input": OPENAI_RESPONSES_USAGE["input_tokens"],
    "output": OPENAI_RESPONSES_USAGE["output_tokens"],
    "cache_read": OPENAI_RESPONSES_USAGE["input_tokens_details"]["cached_tokens"],
    "reasoning": OPENAI_RESPONSES_USAGE["output_tokens_details"]["reasoning_tokens"],
}
ANTHROPIC = {
    "input": ANTHROPIC_USAGE["input_tokens"]
    + ANTHROPIC_USAGE["cache_read_input_tokens"]
    + ANTHROPIC_USAGE["cache_creation_input_tokens"],
    "output": ANTHROPIC_USAGE["output_tokens"],
    "cache_read": ANTHROPIC_USAGE["cache_read_input_tokens"],
    "cache_write": ANTHROPIC_USAGE["cache_creation_input_tokens"],
}
GEMINI = {
    "input": GEMINI_USAGE["promptTokenCount"],
    "output": GEMINI_USAGE["candidatesTokenCount"] + GEMINI_USAGE["thoughtsTokenCount"],
    "cache_read": GEMINI_USAGE["cachedContentTokenCount"],
    "reasoning": GEMINI_USAGE["thoughtsTokenCount"],
}
OLLAMA = {"input": OLLAMA_USAGE["prompt_eval_count"], "output": OLLAMA_USAGE["eval_count"]}
EMBEDDINGS = {"input": OPENAI_EMBEDDINGS_USAGE["prompt_tokens"], "output": 0}

# feature tag -> (gen_ai.provider.name, genai-prices provider id, operation, response model, usage)
CALLS: dict[str, tuple[str, str, str, str, dict[str, int]]] = {
    "openai-chat": ("openai", "openai", "chat", "gpt-4o-mini-2024-07-18", OPENAI_CHAT),
    "openai-chat-stream": ("openai", "openai", "chat", "gpt-4o-mini-2024-07-18", OPENAI_CHAT),
    "openai-responses": ("openai", "openai", "chat", "gpt-4o-mini-2024-07-18", OPENAI_RESPONSES),
    "openai-embeddings-async": ("openai", "openai", "embeddings", "text-embedding-3-small", EMBEDDINGS),
    "anthropic": ("anthropic", "anthropic", "chat", "claude-sonnet-4-6", ANTHROPIC),
    "anthropic-stream": ("anthropic", "anthropic", "chat", "claude-sonnet-4-6", ANTHROPIC),
    "gemini": ("gcp.gemini", "google", "generate_content", "gemini-2.5-flash", GEMINI),
    "gemini-stream": ("gcp.gemini", "google", "generate_content", "gemini-2.5-flash", GEMINI),
    "ollama-chat": ("ollama", "", "chat", "llama3.2", OLLAMA),
    "ollama-generate-stream": ("ollama", "", "text_completion", "llama3.2", OLLAMA),
    "ollama-chat-async": ("ollama", "", "chat", "llama3.2", OLLAMA),
}

# transport -> (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTLP port log line, env beyond the common one)
RUNS: dict[str, tuple[str, str, dict[str, str]]] = {
    "http": ("http/protobuf", "OTLP/HTTP", {}),
    "grpc": ("grpc", "OTLP/gRPC", {"ANTHROPIC_OPEN_TELEMETRY": "false"}),
}

DECIMALS = ("input_cost", "cache_read_cost", "cache_write_cost", "output_cost", "total_cost")
# What neither the transport nor whose span an Anthropic call made may change. Not compared: ids,
# times, the run's own service and user, the attributes kept as they came, the convention read, and
# the status, which anthropic's native spans set to OK and ours leave UNSET (the OTel spec's advice).
ROW_INVARIANT = tuple(
    name
    for name in COLUMNS
    if name
    not in {
        "timestamp",
        "trace_id",
        "span_id",
        "parent_span_id",
        "duration_ns",
        "service_name",
        "user_id",
        "status_code",
        "convention",
        "span_attributes",
        "resource_attributes",
    }
)


def collector_config(tmp_path: Path) -> Path:
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    raw["processors"]["pricing"]["overrides"] = [{"model": "llama3.2", "provider": "ollama", **OLLAMA_RATES}]
    raw["exporters"]["clickhouse"]["database"] = DATABASE
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(raw))
    return config


def otlp_port(serve: ServeProcess, receiver: str) -> int:
    for line in serve.log:
        if found := re.search(rf"{receiver} receiver listening on [\d.]+:(\d+)", line):
            return int(found.group(1))
    raise AssertionError(f"no {receiver} port in the collector's log:\n" + "".join(serve.log))


def run_app(serve: ServeProcess, transport: str, fake_url: str) -> subprocess.Popen[str]:
    protocol, receiver, extra = RUNS[transport]
    port = otlp_port(serve, receiver)
    endpoint = f"http://127.0.0.1:{port}" + ("/v1/traces" if protocol.startswith("http") else "")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))},
        "FAKE_PROVIDER_URL": fake_url,
        "APP_USER": f"u-{transport}",
        "OTEL_SERVICE_NAME": f"e2e-{transport}",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        **extra,
    }
    return subprocess.Popen(
        [str(INSTRUMENT), sys.executable, str(APP)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stored_rows(data: Path) -> list[dict[str, Any]]:
    """Every genai_spans column by name (the timestamp in ns), read from another process."""
    selected = ", ".join("toUnixTimestamp64Nano(timestamp)" if name == "timestamp" else name for name in COLUMNS)
    found = [
        dict(zip(COLUMNS, values, strict=True))
        for values in query_store(data, f"SELECT {selected} FROM {DATABASE}.genai_spans")
    ]
    for row in found:
        row.update({name: Decimal(row[name]) for name in DECIMALS})
        row["at"] = datetime.fromtimestamp(int(row["timestamp"]) / 1e9, UTC)
    return found


def expected_price(row: dict[str, Any], provider_id: str, usage: dict[str, int]) -> tuple[str, str, Decimal]:
    """(price_status, price_source, total_cost) the row must have."""
    if not provider_id:  # priced by the pipelines.yaml override
        million = Decimal(1_000_000)
        total = (
            usage["input"] * Decimal(OLLAMA_RATES["input_per_mtok"])
            + usage["output"] * Decimal(OLLAMA_RATES["output_per_mtok"])
        ) / million
        return "override", "pipelines.yaml", total
    reference = reference_price(row["response_model"], provider_id, usage, row["at"])
    return "priced", f"genai-prices {genai_prices.__version__}", reference.total_price


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument is not installed next to this Python")
def test_apps_calls_arrive_in_genai_spans_priced_and_tagged(fake, tmp_path: Path) -> None:
    data = tmp_path / "store"
    serve = ServeProcess(collector_config(tmp_path), data)
    try:
        # One run after the other: the fake server answers every call with the same response id, and the
        # collector takes two overlapping calls with one provider and response id for one call reported twice.
        apps, outputs = {}, {}
        for transport in RUNS:
            apps[transport] = run_app(serve, transport, fake.base_url)
            outputs[transport] = apps[transport].communicate(timeout=90)[0]
    finally:
        code, log = serve.terminate()  # SIGTERM flushes every queued row before exit
    for transport, app in apps.items():
        assert app.returncode == 0, outputs[transport]
    assert code == 0, log

    found = stored_rows(data)
    by_call = {(row["service_name"], row["feature"]): row for row in found}
    assert len(by_call) == len(found), "a call was stored more than once"
    assert set(by_call) == {(f"e2e-{transport}", feature) for transport in RUNS for feature in CALLS}

    for (service, feature), row in by_call.items():
        transport = service.removeprefix("e2e-")
        provider, provider_id, operation, model, usage = CALLS[feature]
        where = f"{service} {feature}"
        assert (row["provider"], row["operation"], row["response_model"]) == (provider, operation, model), where
        assert row["request_model"] == model.removesuffix("-2024-07-18"), where
        tokens = (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"])
        expected_tokens = (usage["input"], usage["output"], usage.get("cache_read", 0), usage.get("cache_write", 0))
        assert tokens == expected_tokens, where
        assert row["reasoning_tokens"] == usage.get("reasoning", 0), where
        status, source, total = expected_price(row, provider_id, usage)
        assert (row["price_status"], row["price_source"], row["total_cost"]) == (status, source, total), where
        assert row["total_cost"] > 0, where
        parts = ("input_cost", "cache_read_cost", "cache_write_cost", "output_cost")
        assert sum(row[name] for name in parts) == row["total_cost"], where
        assert (row["user_id"], row["session_id"]) == (f"u-{transport}", "s-e2e"), where
        assert row["tags"] == {"feature": feature, "team": "e2e"}, where
        # anthropic 2.x's own spans (over HTTP here) are read by the collector's table for them.
        native = transport == "http" and provider == "anthropic"
        assert row["convention"] == ("anthropic_sdk" if native else "otel_genai"), where
        assert row["status_code"] in ("UNSET", "OK"), where
        if operation != "embeddings":
            assert row["finish_reasons"] in (["stop"], ["end_turn"], ["STOP"]), where

    # Whose span an Anthropic call made (the SDK's own over HTTP, ours over gRPC), and the transport,
    # change nothing in the row but the attributes kept as they came.
    for feature in CALLS:
        http, grpc = by_call["e2e-http", feature], by_call["e2e-grpc", feature]
        assert {k: http[k] for k in ROW_INVARIANT} == {k: grpc[k] for k in ROW_INVARIANT}, feature
    assert "anthropic.request.id" in by_call["e2e-http", "anthropic"]["span_attributes"]  # the SDK's native span
    assert "anthropic.request.id" not in by_call["e2e-grpc", "anthropic"]["span_attributes"]
