"""`spanmeter report`: grouped spend as table, JSON and CSV, from the store or, when a collector
holds the embedded store, from that collector's API."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from spanmeter.api import ADVERT_FILE
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


@pytest.fixture(scope="module")
def seeded(storing: Collector, chdb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Six calls in the last hours over two models, two features, two users, two teams; plus one
    call eight days ago. Returns the CLI arguments that point `report` at this store. Made once for the
    module's tests, which only read it."""
    collector = storing
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
    config = tmp_path_factory.mktemp("report") / "pipelines.yaml"
    config.write_text((REPO / "pipelines.yaml").read_text())
    return ["--config", str(config), "--store", f"chdb://{chdb_path}", "--database", collector.store_config.database]


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


# --- `--store` reads that store, or the collector holding it, never another one ------------------


def _report_cli(config: Path, *args: str, http_endpoint: str = "127.0.0.1:4318") -> subprocess.CompletedProcess[str]:
    """`spanmeter report` in a process of its own (an embedded store held by a collector can only be
    read through that collector), with the config's HTTP receiver at `http_endpoint`."""
    since = f"{(datetime.now(UTC) - datetime(2026, 1, 1, tzinfo=UTC)).days + 400}d"  # covers make_spans' time
    command = [spanmeter_command(), "report", "--config", str(config), "--format", "json", "--since", since, *args]
    env = {**os.environ, "SPANMETER_HTTP_ENDPOINT": http_endpoint}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def _stored_report(config: Path, store: Path, expected: int, http_endpoint: str) -> list[dict[str, object]]:
    """The report of `store` once `expected` rows are stored (the collector inserts asynchronously)."""
    deadline = time.monotonic() + 60
    while True:
        out = _report_cli(config, "--store", f"chdb://{store}", http_endpoint=http_endpoint)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        if sum(row["requests"] for row in report) >= expected or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


@dataclass
class TwoCollectors:
    """Two `spanmeter serve` processes on one config, each holding a store of its own."""

    config: Path
    store_a: Path
    store_b: Path
    serve_a: ServeProcess
    serve_b: ServeProcess


@pytest.fixture
def two_collectors(tmp_path: Path) -> Iterator[TwoCollectors]:
    config = tmp_path / "pipelines.yaml"
    config.write_text((REPO / "pipelines.yaml").read_text())
    store_a, store_b = tmp_path / "store-a", tmp_path / "store-b"
    serve_a = ServeProcess(config, store_a)
    try:
        serve_b = ServeProcess(config, store_b)
    except BaseException:
        serve_a.terminate()
        raise
    yield TwoCollectors(config, store_a, store_b, serve_a, serve_b)
    results = [serve.terminate() for serve in (serve_a, serve_b)]
    assert [code for code, _ in results] == [0, 0], results
    assert not (store_b / ADVERT_FILE).exists()  # withdrawn at stop: a stale address is never asked


def test_store_option_reads_the_collector_holding_that_store_not_the_default_port(
    two_collectors: TwoCollectors,
) -> None:
    both = two_collectors
    for serve, spans in ((both.serve_a, make_spans(3, "gpt-4o-mini")), (both.serve_b, make_spans(5, "o3-mini"))):
        exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{serve.http_port}/v1/traces")
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    # The config's collector is A (as :4318 would be); --store names B's directory.
    a_endpoint = f"127.0.0.1:{both.serve_a.http_port}"
    report_b = _stored_report(both.config, both.store_b, 5, http_endpoint=a_endpoint)
    assert [(row["group"], row["requests"]) for row in report_b] == [("o3-mini", 5)]
    report_a = _stored_report(both.config, both.store_a, 3, http_endpoint=a_endpoint)
    assert [(row["group"], row["requests"]) for row in report_a] == [("gpt-4o-mini", 3)]

    # A collector named with --collector that serves another store is refused, not read.
    wrong = _report_cli(both.config, "--store", f"chdb://{both.store_b}", "--collector", f"http://{a_endpoint}")
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert f"serves chdb://{os.path.realpath(both.store_a)}" in wrong.stderr
    assert f"store chdb://{os.path.realpath(both.store_b)} is held by another process" in wrong.stderr


def test_a_held_store_without_its_collector_api_fails_saying_why(two_collectors: TwoCollectors) -> None:
    both = two_collectors
    advert = both.store_b / ADVERT_FILE
    deadline = time.monotonic() + 10
    while not advert.exists() and time.monotonic() < deadline:  # written just after "listening"
        time.sleep(0.05)
    advert.unlink()  # as if B's API were unknown: only A (the config's) is left to ask
    out = _report_cli(
        both.config, "--store", f"chdb://{both.store_b}", http_endpoint=f"127.0.0.1:{both.serve_a.http_port}"
    )
    assert out.returncode == 1 and out.stdout == ""
    assert f"serves chdb://{os.path.realpath(both.store_a)}" in out.stderr
    assert "--collector" in out.stderr
