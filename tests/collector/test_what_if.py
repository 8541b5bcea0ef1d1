"""What-if pricing: `model_prices` written at collector start from genai-prices, and `spanmeter report --what-if`
(store and API) pricing the stored calls on models that never ran, checked against genai-prices' `calc_price`."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from spanmeter.cli import main
from spanmeter.prices import PRICES_VERSION, price_rows, refresh
from spanmeter.service import Collector
from spanmeter.store import apply_schema, connect

from .conftest import REPO, emit, tracer_provider, wait_for_rows
from .test_durability import ServeProcess, spanmeter_command
from .test_pricing_e2e import genai_attributes

# (provider, model, feature, usage, hours ago): cache reads and writes, reasoning, and one call past 200k input
# tokens (gemini-2.5-pro's upper tier); spread over the day so deepseek-chat's off-peak prices apply to some.
CALLS = [
    ("openai", "gpt-4o-2024-08-06", "chat", {"input": 12_000, "output": 800, "cache_read": 4_096}, 1),
    (
        "anthropic",
        "claude-sonnet-4-5",
        "chat",
        {"input": 9_000, "output": 600, "cache_read": 3_000, "cache_write": 2_000},
        5,
    ),
    ("openai", "o3-mini", "agent", {"input": 2_000, "output": 3_000, "reasoning": 2_500}, 9),
    ("openai", "gpt-4o-2024-08-06", "agent", {"input": 250_000, "output": 1_000}, 13),
    ("acme", "acme-1", "agent", {"input": 100, "output": 10}, 17),  # unpriced itself, still priced on the what-if
]
WHAT_IF = ("claude-haiku-4-5", "gemini-2.5-pro", "deepseek:deepseek-chat")


def expected(model: str, calls: list[tuple[dict[str, int], datetime]]) -> Decimal:
    """genai-prices' own price of each call on `model` at the call's time, summed."""
    provider, _, name = model.rpartition(":")
    total = Decimal(0)
    for usage, at in calls:
        total += genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage["input"],
                output_tokens=usage["output"],
                cache_read_tokens=usage.get("cache_read", 0),
                cache_write_tokens=usage.get("cache_write", 0),
                output_reasoning_tokens=usage.get("reasoning", 0),
            ),
            name,
            provider_id=provider or None,
            genai_request_timestamp=at,
        ).total_price
    return total


@pytest.fixture
def seeded(collector: Collector, chdb_path: Path, database: str, tmp_path: Path) -> tuple[list[str], dict[str, Any]]:
    provider = tracer_provider(collector)
    now = datetime.now(UTC).replace(microsecond=0)
    by_feature: dict[str, list[tuple[dict[str, int], datetime]]] = {}
    for otel_provider, model, feature, usage, hours in CALLS:
        at = now - timedelta(hours=hours, minutes=7)
        emit(
            provider,
            "chat",
            genai_attributes(otel_provider, model, usage, **{"spanmeter.tag.feature": feature}),
            int(at.timestamp()) * 1_000_000_000,
        )
        by_feature.setdefault(feature, []).append((usage, at))
    wait_for_rows(collector, len(CALLS))
    config = tmp_path / "pipelines.yaml"
    config.write_text((REPO / "pipelines.yaml").read_text())
    return ["--config", str(config), "--store", f"chdb://{chdb_path}", "--database", database], by_feature


def test_prices_table_holds_every_genai_prices_model_once(
    collector: Collector, store: Client, database: str, chdb_path: Path
) -> None:
    rows = price_rows()
    count = "SELECT count() FROM {db:Identifier}.model_prices WHERE version = {v:String}"
    stored = store.query(count, parameters={"db": database, "v": PRICES_VERSION}).result_rows[0][0]
    assert stored == len(rows) > 2000
    assert refresh(store, database) == 0  # a store that has them is not written again

    # Collectors starting together on a store without them: one insert kept, no row stored twice (not even before
    # the table merges). Then deleted: written again, not dropped as a duplicate of the rows that were there.
    fresh = f"{database}_fresh"
    apply_schema(store, fresh)
    clients = [connect(f"chdb://{chdb_path}") for _ in range(3)]
    threads = [threading.Thread(target=refresh, args=(client, fresh)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    plain = "SELECT count() FROM {db:Identifier}.model_prices"
    assert store.query(plain, parameters={"db": fresh}).result_rows[0][0] == len(rows)
    # Deleted rows leave their insert's token behind: the same insert again would be dropped as a duplicate.
    store.command(
        "ALTER TABLE {db:Identifier}.model_prices DELETE WHERE 1",
        parameters={"db": fresh},
        settings={"mutations_sync": 1},
    )
    assert store.query(plain, parameters={"db": fresh}).result_rows[0][0] == 0
    assert refresh(store, fresh) == len(rows)
    assert store.query(plain, parameters={"db": fresh}).result_rows[0][0] == len(rows)
    tiered = store.query(
        "SELECT tier_starts, input_mtok, input_tier_mtok FROM {db:Identifier}.model_prices FINAL "
        "WHERE model = 'gemini-2.5-pro' AND provider = 'google'",
        parameters={"db": database},
    ).result_rows
    assert [list(row[0]) for row in tiered] == [[200_000]]
    assert tiered[0][1] == Decimal("1.25") and list(tiered[0][2]) == [Decimal("2.5")]
    off_peak = store.query(
        "SELECT count() FROM {db:Identifier}.model_prices FINAL WHERE model = 'deepseek-chat' AND day_to_ms < 86400000",
        parameters={"db": database},
    ).result_rows[0][0]
    assert off_peak >= 1  # time-of-day prices are rows of their own


def test_what_if_equals_calc_price_for_models_that_never_ran_and_unknown_ones_fail(
    seeded: tuple[list[str], dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    args, by_feature = seeded
    assert (
        main(
            [
                "report",
                *args,
                "--by",
                "feature",
                "--format",
                "json",
                "--what-if",
                "claude-haiku-4-5",
                "--what-if",
                "gemini-2.5-pro,deepseek:deepseek-chat",
            ]
        )
        == 0
    )
    report = {row["group"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(report) == {"chat", "agent"}
    for feature, calls in by_feature.items():
        for model in WHAT_IF:
            assert Decimal(report[feature]["what_if"][model]) == expected(model, calls), (feature, model)
    # The tier and off-peak prices do matter here: a flat base price would give other figures.
    assert expected("gemini-2.5-pro", by_feature["agent"]) != sum(
        (Decimal("1.25") * u["input"] + Decimal(10) * u["output"]) / 10**6 for u, _ in by_feature["agent"]
    )

    assert main(["report", *args, "--by", "feature", "--what-if", "claude-haiku-4-5"]) == 0
    table = capsys.readouterr().out
    assert "on claude-haiku-4-5" in table
    total = expected("claude-haiku-4-5", by_feature["chat"] + by_feature["agent"])
    assert f"{total:,.6f}" in next(line for line in table.splitlines() if line.startswith("total"))

    # A model genai-prices does not know: an error naming it, with close names, not a column of zeros.
    assert main(["report", *args, "--what-if", "gpt-4o-minni"]) == 2
    err = capsys.readouterr().err
    assert "gpt-4o-minni" in err and "close names: gpt-4o-mini" in err


def test_what_if_through_the_api(seeded: tuple[list[str], dict[str, Any]], collector: Collector) -> None:
    _, by_feature = seeded
    base = f"http://127.0.0.1:{collector.http_port}/v1/report?by=feature&since=24h"
    with urllib.request.urlopen(f"{base}&what_if=claude-haiku-4-5&what_if=gemini-2.5-pro", timeout=30) as response:
        report = {row["group"]: row for row in json.load(response)}
    for model in ("claude-haiku-4-5", "gemini-2.5-pro"):
        assert Decimal(report["chat"]["what_if"][model]) == expected(model, by_feature["chat"])
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(f"{base}&what_if=no-such-model-9", timeout=30)
    assert failure.value.code == 400 and "no-such-model-9" in failure.value.read().decode()


def test_what_if_and_forecast_commands_ask_the_collector_holding_the_store(tmp_path: Path) -> None:
    """`spanmeter report --what-if` and `spanmeter forecast` in processes of their own, while a `spanmeter serve`
    holds the embedded store: both answered through its API (GET /v1/report?what_if=, GET /v1/forecast)."""
    config = tmp_path / "pipelines.yaml"
    config.write_text((REPO / "pipelines.yaml").read_text())
    data = tmp_path / "store"
    serve = ServeProcess(config, data)
    try:
        provider = TracerProvider()
        provider.add_span_processor(
            SimpleSpanProcessor(HttpSpanExporter(endpoint=f"http://127.0.0.1:{serve.http_port}/v1/traces"))
        )
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        usage = {"input": 3_000, "output": 200, "cache_read": 1_024}
        for _ in range(3):
            emit(provider, "chat", genai_attributes("openai", "gpt-4o-mini", usage), int(at.timestamp()) * 10**9)
        where = [
            "--config",
            str(config),
            "--store",
            f"chdb://{data}",
            "--collector",
            f"http://127.0.0.1:{serve.http_port}",
        ]
        deadline = time.monotonic() + 60
        while True:  # stored (asynchronously), as the collector's own API says
            with urllib.request.urlopen(
                f"http://127.0.0.1:{serve.http_port}/v1/report?since=24h", timeout=30
            ) as answer:
                if sum(row["requests"] for row in json.load(answer)) == 3:
                    break
            assert time.monotonic() < deadline, "the 3 calls were not stored"
            time.sleep(0.1)
        out = subprocess.run(
            [spanmeter_command(), "report", *where, "--format", "json", "--what-if", "claude-haiku-4-5"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert Decimal(report[0]["what_if"]["claude-haiku-4-5"]) == expected("claude-haiku-4-5", [(usage, at)] * 3)

        out = subprocess.run(
            [spanmeter_command(), "report", *where, "--what-if", "claude-haikoo-4-5"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode != 0 and "claude-haikoo-4-5" in out.stderr and "close names" in out.stderr

        out = subprocess.run(
            [spanmeter_command(), "forecast", *where, "--format", "json"], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        total = json.loads(out.stdout)["month"][0]
        assert total["scope"] == "total" and Decimal(total["forecast_usd"]) >= Decimal(total["spent_usd"])
    finally:
        code, log = serve.terminate()
    assert code == 0, log
