"""Findings end to end: an app's OpenAI calls, instrumented by spanmeter's instrumentation with the prompt prefix
hash enabled, reach a real collector over OTLP; the hash is stored in its column (never the prompt), and the
repeated calls come back as a finding from `GET /v1/findings`, `spanmeter findings`, and the findings table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from clickhouse_connect.driver.client import Client

from spanmeter.cli import main
from spanmeter.cli.findings import fetch_findings
from spanmeter.findings import FindingsConfig
from spanmeter.findings.store import read_latest, write_run
from spanmeter.keys import create_key
from spanmeter.service import Collector
from spanmeter_instrumentation.openai import OpenAIInstrumentor
from tests.fakes.provider_server import OPENAI_CHAT_USAGE, FakeProviderServer, provider_server

from .conftest import REPO, http_request, rows, tracer_provider, wait_for_rows
from .findings_seed import Calls
from .test_auth import AUTH, BOOTSTRAP
from .test_pricing_e2e import reference_price

FINDINGS = {
    "repeated_calls": {"min_repeats": 2, "min_savings_usd": 0},
    **{rule: {"min_savings_usd": 0} for rule in ("right_size", "cache_unused", "paid_failures", "prompt_growth")},
}
SYSTEM = {"role": "system", "content": "Answer yes or no."}
USAGE = {
    "input": OPENAI_CHAT_USAGE["prompt_tokens"],
    "output": OPENAI_CHAT_USAGE["completion_tokens"],
    "cache_read": OPENAI_CHAT_USAGE["prompt_tokens_details"]["cached_tokens"],
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with provider_server() as server:
        yield server


@pytest.fixture
def calls(
    start_collector: Any, fake: FakeProviderServer, monkeypatch: pytest.MonkeyPatch, store: Client, database: str
) -> Collector:
    """Five identical questions and one other, through the instrumented OpenAI SDK, capture off, hash on."""
    monkeypatch.setenv("SPANMETER_PROMPT_PREFIX_HASH", "true")
    monkeypatch.setenv("SPANMETER_PROMPT_PREFIX_SALT", "test-deployment-salt")
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    collector = start_collector({"findings": {**FINDINGS, "interval": "2s"}})
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider(collector))
    try:
        client = openai.OpenAI(base_url=fake.url("openai"), api_key="k", max_retries=0)
        for _ in range(5):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[SYSTEM, {"role": "user", "content": "Is the sky blue?"}]
            )
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Other?"}])
    finally:
        instrumentor.uninstrument()
    wait_for_rows(collector, 6)
    return collector


def expected_savings(store: Client, database: str, days: int) -> Decimal:
    """Four repeats, each priced by genai-prices, scaled from the period to 30 days."""
    model = rows(store, database)[0]["response_model"]
    each = reference_price(model, "openai", USAGE, datetime.now(UTC)).total_price
    return (4 * each * 30 / Decimal(days)).quantize(Decimal("0.000001"))


def check_the_prefix_hash_is_stored_in_its_column_and_the_prompt_is_not(store: Client, database: str) -> None:
    stored = rows(store, database)
    hashes = [row["prompt_prefix_hash"] for row in stored]
    assert len(set(hashes[:5])) == 1 and len(hashes[0]) == 32
    assert hashes[5] not in ("", hashes[0])
    assert all(row["span_attributes"]["spanmeter.prompt.prefix_hash"] == row["prompt_prefix_hash"] for row in stored)
    assert "sky" not in json.dumps([{**row, "timestamp": 0, "ingested_at": 0} for row in stored], default=str)


def test_repeated_calls_from_the_api_the_cli_and_the_findings_table(
    calls: Collector, store: Client, database: str, chdb_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One collector and its calls for all three surfaces: each start and send costs seconds on a busy machine."""
    check_the_prefix_hash_is_stored_in_its_column_and_the_prompt_is_not(store, database)
    status, _, body = http_request(calls, "/v1/findings?since=1d")
    assert status == 200, body
    found = json.loads(body)["findings"]
    assert [f["kind"] for f in found] == ["repeated_calls"]
    assert found[0]["evidence"]["repeats"] == 4
    assert Decimal(found[0]["savings_usd_per_month"]) == expected_savings(store, database, 1)
    status, _, body = http_request(calls, "/v1/findings?since=soon")
    assert status == 400 and b"since" in body
    status, _, body = http_request(calls, "/v1/findings?projcet=p")  # a typo must not widen the answer
    assert status == 400 and "unknown parameter projcet" in json.loads(body)["error"]

    # The collector stores a run every findings.interval (here 2 s) for the Findings dashboard.
    deadline = time.monotonic() + 20
    while not (stored := read_latest(store, database)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [row["kind"] for row in stored] == ["repeated_calls"]

    # A run covers the period ending at the start of its interval (an hour on, after the calls, here).
    config = FindingsConfig.model_validate({**FINDINGS, "since": "1d", "interval": "1h"})
    later = datetime.now(UTC) + timedelta(hours=1)
    first = write_run(store, database, config, None, later)
    write_run(store, database, config, None, later + timedelta(seconds=1))  # another collector, the same run
    stored = read_latest(store, database)
    assert len(first) == len(stored) == 1
    assert stored[0]["kind"] == "repeated_calls"
    assert stored[0]["savings_usd_per_month"] == first[0].savings_usd_per_month
    check_spanmeter_findings_reads_the_store(calls, store, database, chdb_path, tmp_path, capsys)


def check_spanmeter_findings_reads_the_store(
    calls: Collector, store: Client, database: str, chdb_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    config["findings"] = FINDINGS
    path = tmp_path / "findings.yaml"
    path.write_text(yaml.safe_dump(config))
    store_args = ["--config", str(path), "--store", f"chdb://{chdb_path}", "--database", database, "--since", "2d"]
    assert main(["findings", *store_args, "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [f["kind"] for f in found] == ["repeated_calls"]
    assert Decimal(found[0]["savings_usd_per_month"]) == expected_savings(store, database, 2)
    # What it asks when another process holds the store: the collector's API, the same findings.
    remote = fetch_findings(f"http://127.0.0.1:{calls.http_port}", "2d", "", database)
    untimed = [{k: v for k, v in f.items() if k not in ("start", "end")} for f in found]
    assert [{k: v for k, v in f.to_json().items() if k not in ("start", "end")} for f in remote] == untimed
    assert main(["findings", *store_args]) == 0
    table = capsys.readouterr().out
    assert "1. repeated_calls" in table and "feature" not in table.split("\n")[2].split("$")[0]


def test_a_project_key_sees_its_own_projects_findings(start_collector: Any, store: Client, database: str) -> None:
    collector = start_collector({**AUTH, "findings": FINDINGS})
    calls = Calls()
    for project in ("team-a", "team-b"):
        for n in range(5):
            calls.add(datetime.now(UTC) - timedelta(hours=n + 1), "agent", "plan", "openai", "gpt-4o", 2000, 500,
                      status="ERROR", error_type="timeout", project=project)  # fmt: skip
    calls.insert(store, database)
    reader_a, _ = create_key(store, database, "team-a", "dashboards", "read")
    ingest_a, _ = create_key(store, database, "team-a", "app", "ingest")

    def get(path: str, key: str) -> tuple[int, Any]:
        status, _, body = http_request(collector, path, headers={"Authorization": f"Bearer {key}"})
        return status, json.loads(body)

    status, answer = get("/v1/findings?since=1d", reader_a)
    assert status == 200 and [f["scope"]["project"] for f in answer["findings"]] == ["team-a"], answer
    assert get("/v1/findings?since=1d&project=team-b", reader_a)[0] == 403
    assert get("/v1/findings?since=1d", ingest_a)[0] == 403  # an ingest key reads nothing
    status, answer = get("/v1/findings?since=1d&database=other", reader_a)
    assert status == 403 and "database='other'" in answer["error"], answer  # another database: admin keys only
    status, answer = get("/v1/findings?since=1d", BOOTSTRAP)
    assert status == 200, answer
    assert sorted(f["scope"]["project"] for f in answer["findings"]) == ["team-a", "team-b"]
    status, answer = get(f"/v1/findings?since=1d&database={database}_none", BOOTSTRAP)
    assert status == 400 and f"{database}_none" in answer["error"], answer  # the database asked for is read
