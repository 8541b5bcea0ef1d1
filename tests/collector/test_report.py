"""`spanmeter report`: grouped spend as table, JSON and CSV, from the store or, when a collector
holds the embedded store, from that collector's API."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from spanmeter.cli import main
from spanmeter.service import Collector

from .conftest import REPO, emit, tracer_provider, wait_for_rows
from .test_durability import ServeProcess, make_spans, spanmeter_command
from .test_pricing_e2e import genai_attributes, reference_price

REQUIRED = {
    "group",
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_cost",
}


@pytest.fixture
def seeded(collector: Collector, chdb_path: Path, database: str, tmp_path: Path) -> list[str]:
    """Six calls in the last hours over two models, two features, two users, two teams; plus one
    call eight days ago. Returns the CLI arguments that point `report` at this store."""
    provider = tracer_provider(collector)
    now = datetime.now(UTC)
    calls = [
        ("gpt-4o-2024-08-06", "chat", "u-1", "growth", {"input": 1000, "output": 100, "cache_read": 256}),
        ("gpt-4o-2024-08-06", "chat", "u-2", "growth", {"input": 2000, "output": 200}),
        ("o3-mini", "agent", "u-1", "platform", {"input": 500, "output": 900, "reasoning": 700}),
        ("o3-mini", "agent", "u-1", "platform", {"input": 500, "output": 900, "reasoning": 700}),
        ("o3-mini", "agent", "u-2", "platform", {"input": 10, "output": 10}),
        ("acme-1", "agent", "u-2", "platform", {"input": 10, "output": 10}),
    ]
    for index, (model, feature, user, team, usage) in enumerate(calls):
        attributes = genai_attributes(
            "acme" if model == "acme-1" else "openai",
            model,
            usage,
            **{"spanmeter.tag.feature": feature, "spanmeter.tag.team": team, "user.id": user},
        )
        emit(provider, "chat", attributes, int((now - timedelta(hours=index + 1)).timestamp() * 1e9))
    old = genai_attributes("openai", "gpt-4o-2024-08-06", {"input": 1, "output": 1})
    emit(provider, "chat", old, int((now - timedelta(days=8)).timestamp() * 1e9))
    wait_for_rows(collector, len(calls) + 1)
    config = tmp_path / "pipelines.yaml"
    config.write_text((REPO / "pipelines.yaml").read_text())
    return ["--config", str(config), "--store", f"chdb://{chdb_path}", "--database", database]


def run_report(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["report", *args]) == 0
    return capsys.readouterr().out


def test_json_report_by_model(seeded: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads(run_report(capsys, *seeded, "--by", "model", "--since", "24h", "--format", "json"))
    by_group = {row["group"]: row for row in report}
    assert set(by_group) == {"gpt-4o-2024-08-06", "o3-mini", "acme-1"}
    assert all(set(row) >= REQUIRED for row in report)
    gpt = by_group["gpt-4o-2024-08-06"]
    assert (gpt["requests"], gpt["input_tokens"], gpt["cache_read_tokens"]) == (2, 3000, 256)
    at = datetime.now(UTC)
    expected = (
        reference_price(
            "gpt-4o-2024-08-06", "openai", {"input": 1000, "output": 100, "cache_read": 256}, at
        ).total_price
        + reference_price("gpt-4o-2024-08-06", "openai", {"input": 2000, "output": 200}, at).total_price
    )
    assert isinstance(gpt["total_cost"], str)
    assert Decimal(gpt["total_cost"]) == expected
    assert by_group["o3-mini"]["reasoning_tokens"] == 1400
    assert (by_group["acme-1"]["total_cost"], by_group["acme-1"]["unpriced_requests"]) == ("0.000000000000", 1)
    assert report[0]["group"] == "gpt-4o-2024-08-06"  # costliest first


def test_groupings_windows_and_formats(seeded: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    def groups(*args: str) -> dict[str, int]:
        rows = json.loads(run_report(capsys, *seeded, "--format", "json", *args))
        return {row["group"]: row["requests"] for row in rows}

    assert groups("--by", "feature") == {"chat": 2, "agent": 4}
    assert groups("--by", "user") == {"u-1": 3, "u-2": 3}
    assert groups("--by", "tag:team") == {"growth": 2, "platform": 4}
    assert groups("--by", "provider") == {"openai": 5, "acme": 1}
    assert groups("--by", "model", "--since", "30d")["gpt-4o-2024-08-06"] == 3
    start = (datetime.now(UTC) - timedelta(hours=2, minutes=30)).isoformat()
    assert sum(groups("--from", start).values()) == 2

    table = run_report(capsys, *seeded, "--by", "feature")
    assert "agent" in table and "total" in table and "cost (USD)" in table
    assert "1 calls used models with no known price" in table
    rows = list(csv.DictReader(io.StringIO(run_report(capsys, *seeded, "--by", "feature", "--format", "csv"))))
    assert {row["group"] for row in rows} == {"chat", "agent"}


def test_bad_arguments_exit_2_with_a_message(seeded: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", *seeded, "--by", "colour"]) == 2
    assert "--by must be one of" in capsys.readouterr().err
    assert main(["report", *seeded, "--since", "yesterday"]) == 2
    assert "--since expects" in capsys.readouterr().err


def test_report_asks_the_collector_when_it_holds_the_store(tmp_path: Path) -> None:
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(yaml.safe_load((REPO / "pipelines.yaml").read_text())))
    data = tmp_path / "store"
    serve = ServeProcess(config, data)
    try:
        exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{serve.http_port}/v1/traces")
        spans = make_spans(7)
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        since = f"{int((datetime.now(UTC) - datetime(2026, 6, 1, tzinfo=UTC)).days) + 30}d"
        command = [spanmeter_command(), "report", "--config", str(config), "--format", "json", "--since", since]
        command += ["--store", f"chdb://{data}", "--collector", f"http://127.0.0.1:{serve.http_port}"]
        for _ in range(50):
            out = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            report = json.loads(out.stdout)
            if report and report[0]["requests"] == 7:
                break
        assert report == [json.loads(json.dumps(report[0]))]
        assert (report[0]["group"], report[0]["requests"]) == ("gpt-4o-mini", 7)
    finally:
        code, log = serve.terminate()
    assert code == 0, log
    assert sys.executable  # the child used this interpreter's environment
