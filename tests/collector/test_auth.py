"""Project keys: who may send and read, and for which project. Real collectors, real OTel SDK exporters
over gRPC and HTTP, keys stored hashed in the real ClickHouse engine."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter.config import ConfigError
from spanmeter.keys import KEY_PATTERN, create_key, hash_key, read_keys
from spanmeter.service import Collector
from spanmeter_instrumentation import BudgetExceededError
from spanmeter_instrumentation._budget import BudgetGate

from .budget_helpers import budget_overrides, spend
from .conftest import REPO, deep_merge, emit, http_request, metric_value, refused, wait_for_rows
from .test_durability import ServeProcess, make_spans, spanmeter_command
from .test_pricing_e2e import genai_attributes

BOOTSTRAP = "bootstrap-admin-key-for-tests-0123456789"
GUARDED = {"auth": {"authenticator": "spanmeter_keys"}}
AUTH: dict[str, Any] = {
    "extensions": {"spanmeter_keys": {"bootstrap_key": BOOTSTRAP, "refresh_interval": "200ms"}},
    "receivers": {"otlp": {"protocols": {"grpc": GUARDED, "http": GUARDED}}},
    "service": {"extensions": ["spanmeter_keys"]},
    "exporters": {"clickhouse": {"batch": {"max_age": "50ms"}}},
}
USAGE = {"input": 100, "output": 20}


def exporter(collector: Collector, transport: str, key: str | None) -> SpanExporter:
    if transport == "grpc":
        headers = {"authorization": f"Bearer {key}"} if key else None
        return GrpcSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, headers=headers, timeout=5)
    return HttpSpanExporter(
        endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces",
        headers={"Authorization": f"Bearer {key}"} if key else None,
        timeout=5,
    )


def send(collector: Collector, transport: str, key: str | None, project: str | None = None) -> SpanExportResult:
    """One GenAI span through a real SDK exporter, from an app naming `project` in its resource (or none)."""
    memory = InMemorySpanExporter()
    resource = {"service.name": "keyed-app", **({"spanmeter.project": project} if project else {})}
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    emit(provider, "chat", genai_attributes("openai", "gpt-4o-mini", USAGE))
    return exporter(collector, transport, key).export(memory.get_finished_spans())


def projects(store: Client, database: str) -> list[tuple[str, int]]:
    return [
        (str(p), int(n))
        for p, n in store.query(
            "SELECT project, count() FROM {db:Identifier}.genai_spans GROUP BY project ORDER BY project",
            parameters={"db": database},
        ).result_rows
    ]


def get(collector: Collector, path: str, key: str | None) -> tuple[int, Any]:
    status, _, body = http_request(collector, path, headers={"Authorization": f"Bearer {key}"} if key else {})
    return status, json.loads(body) if body else None


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_no_wrong_or_revoked_key_is_refused_and_revocation_reaches_every_collector(
    start_collector: Callable[..., Collector], store: Client, database: str, tmp_path: Any, transport: str
) -> None:
    first = start_collector(
        deep_merge(AUTH, {"exporters": {"clickhouse": {"queue": {"directory": str(tmp_path / "a")}}}})
    )
    second = start_collector(
        deep_merge(AUTH, {"exporters": {"clickhouse": {"queue": {"directory": str(tmp_path / "b")}}}})
    )
    key, record = create_key(store, database, "team-a", "checkout", "ingest")
    assert KEY_PATTERN.fullmatch(key)
    assert key not in json.dumps([r.to_json() for r in read_keys(store, database)])
    assert {r.secret_sha256 for r in read_keys(store, database)} == {hash_key(key)}  # only its hash is kept

    assert send(first, transport, None) is SpanExportResult.FAILURE
    assert send(first, transport, key[:-1] + ("A" if key[-1] != "A" else "B")) is SpanExportResult.FAILURE
    assert send(first, transport, "not-a-key") is SpanExportResult.FAILURE
    assert send(first, transport, key) is SpanExportResult.SUCCESS  # a key created a moment ago works at once
    assert send(second, transport, key) is SpanExportResult.SUCCESS
    wait_for_rows(first, 1)
    wait_for_rows(second, 1)
    assert projects(store, database) == [("team-a", 2)]
    assert metric_value(first, "spanmeter_auth_failures_total", reason="missing") == 1
    assert metric_value(first, "spanmeter_auth_failures_total", reason="unknown") == 1
    assert metric_value(first, "spanmeter_auth_failures_total", reason="malformed") == 1

    status, revoked = _post(first, f"/v1/keys/{record.key_id}/revoke", BOOTSTRAP)
    assert status == 200 and revoked["revoked_at"]
    status, missing = _post(first, "/v1/keys/000000000000/revoke", BOOTSTRAP)
    assert status == 404 and "no key with id" in missing["error"]
    assert send(first, transport, key) is SpanExportResult.FAILURE
    deadline = time.monotonic() + 5  # the other collector: within its refresh interval (200 ms here)
    accepted = 1
    while send(second, transport, key) is SpanExportResult.SUCCESS:
        accepted += 1
        assert time.monotonic() < deadline, "the second collector still takes a revoked key"
        time.sleep(0.1)
    wait_for_rows(second, accepted)  # what it answered before the revocation reached it is stored
    stored = projects(store, database)
    assert send(second, transport, key) is SpanExportResult.FAILURE
    time.sleep(0.3)
    assert projects(store, database) == stored


def test_a_key_created_right_after_another_is_known_at_its_first_use(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    """Unknown keys cause at most one read of the keys a second; a key created just after such a read is not
    refused for the rest of that second: its request waits for the next read."""
    collector = start_collector(deep_merge(AUTH, {"extensions": {"spanmeter_keys": {"refresh_interval": "1h"}}}))
    first, _ = create_key(store, database, "team-a", "one", "ingest")
    assert send(collector, "grpc", first) is SpanExportResult.SUCCESS  # unknown at first: read, then known
    second, _ = create_key(store, database, "team-a", "two", "ingest")
    started = time.monotonic()
    assert send(collector, "grpc", second) is SpanExportResult.SUCCESS
    assert time.monotonic() - started < 5
    wait_for_rows(collector, 2)


def test_grpc_and_http_answer_unauthenticated_not_retryable(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector(AUTH)
    body = encode_spans([]).SerializeToString()
    channel = grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}")
    export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    with pytest.raises(grpc.RpcError) as refused:
        export(body, timeout=5, metadata=(("authorization", "Bearer smk_000000000000_" + "x" * 43),))
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "unknown project key" in (refused.value.details() or "")
    read_key, _ = create_key(store, database, "team-a", "dashboards", "read")
    # Unknown keys read the store at most once a second: the periodic read (200 ms here) finds this one.
    deadline = time.monotonic() + 5
    while True:
        with pytest.raises(grpc.RpcError) as forbidden:
            export(body, timeout=5, metadata=(("authorization", f"Bearer {read_key}"),))
        if forbidden.value.code() is not grpc.StatusCode.UNAUTHENTICATED or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert forbidden.value.code() is grpc.StatusCode.PERMISSION_DENIED
    channel.close()
    assert http_request(collector, "/v1/traces", body, {"Content-Type": "application/x-protobuf"})[0] == 401
    assert http_request(collector, "/healthz")[0] == 200  # health and metrics stay open
    assert http_request(collector, "/metrics")[0] == 200
    assert get(collector, "/v1/report?since=1h", None)[0] == 401


def test_a_key_writes_its_own_project_only_span_by_span(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector(AUTH)
    key, _ = create_key(store, database, "team-a", "checkout", "ingest")
    memory = InMemorySpanExporter()
    providers = {
        claim: TracerProvider(
            resource=Resource.create({"service.name": "s", **({"spanmeter.project": claim} if claim else {})})
        )
        for claim in ("", "team-a", "team-b")
    }
    for provider in providers.values():
        provider.add_span_processor(SimpleSpanProcessor(memory))
        emit(provider, "chat", genai_attributes("openai", "gpt-4o-mini", USAGE))
    spans = memory.get_finished_spans()
    forged = format(spans[2].context.span_id, "016x")
    status, _, body = http_request(
        collector,
        "/v1/traces",
        encode_spans(spans).SerializeToString(),
        {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"},
    )
    assert status == 200, body
    refusal = refused(store, database, 1)
    assert forged in refusal and "spanmeter.project" in refusal
    wait_for_rows(collector, 2)
    assert projects(store, database) == [("team-a", 2)]
    # An admin key writes the project a span names.
    assert send(collector, "http", BOOTSTRAP, project="team-b") is SpanExportResult.SUCCESS
    wait_for_rows(collector, 3)
    assert projects(store, database) == [("team-a", 2), ("team-b", 1)]


def test_reports_and_budgets_are_per_project(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    budget = {"name": "daily-cap", "limit_usd": 10, "action": "block"}
    collector = start_collector(deep_merge(budget_overrides([budget]), AUTH))
    keys = {p: create_key(store, database, p, "app", "ingest")[0] for p in ("team-a", "team-b")}
    reader_a, _ = create_key(store, database, "team-a", "dashboards", "read")
    for project, usd in (("team-a", 3), ("team-b", 12)):  # team-b blows its budget; team-a is at 30 %
        provider = TracerProvider(resource=Resource.create({"service.name": "s"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter(collector, "grpc", keys[project])))
        spend(provider, usd)
    wait_for_rows(collector, 2)

    status, report = get(collector, "/v1/report?since=24h&by=project", reader_a)
    assert status == 200 and [row["group"] for row in report] == ["team-a"], report
    assert get(collector, "/v1/report?since=24h&project=team-b", reader_a)[0] == 403
    assert get(collector, "/v1/report?since=24h&projcet=team-b", reader_a)[0] == 400  # a typo is named, not ignored
    assert get(collector, f"/v1/report?since=24h&database={database}x", reader_a)[0] == 403
    assert get(collector, "/v1/report?since=24h", keys["team-a"])[0] == 403  # an ingest key reads no reports
    status, admin_report = get(collector, "/v1/report?since=24h&by=project", BOOTSTRAP)
    assert sorted(row["group"] for row in admin_report) == ["team-a", "team-b"]

    deadline = time.monotonic() + 10
    while True:
        status, seen = get(collector, "/v1/budgets", reader_a)
        if [b["values"] for b in seen["budgets"]] == [{"project": "team-a"}] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(b["values"], b["state"]) for b in seen["budgets"]] == [({"project": "team-a"}, "ok")], seen
    assert seen["project"] == "team-a"
    all_budgets = get(collector, "/v1/budgets", BOOTSTRAP)[1]["budgets"]
    assert sorted((b["values"]["project"], b["state"]) for b in all_budgets) == [
        ("team-a", "ok"),
        ("team-b", "exceeded"),
    ]

    # The gate, with each app's own key: team-b's overspend blocks team-b's calls, never team-a's.
    base = f"http://127.0.0.1:{collector.http_port}"
    gate_a = BudgetGate(base, key=keys["team-a"])
    gate_b = BudgetGate(base, key=keys["team-b"])
    assert gate_a.refresh() and gate_b.refresh()
    gate_a.check("openai", "gpt-4o-mini", {"service.name": "s"})
    with pytest.raises(BudgetExceededError):
        gate_b.check("openai", "gpt-4o-mini", {"service.name": "s"})
    assert not BudgetGate(base, key="").refresh()  # without a key the collector answers 401


def test_keys_cli_beside_a_running_collector_goes_through_its_api(tmp_path: Path) -> None:
    """The user's flow: a collector holds the embedded store and requires keys; `spanmeter keys` (another
    process) creates, lists and revokes through that collector's API with the bootstrap admin key."""
    raw = deep_merge(yaml.safe_load((REPO / "pipelines.yaml").read_text()), AUTH)
    raw["extensions"]["spanmeter_keys"]["bootstrap_key"] = "${env:SPANMETER_ADMIN_KEY:-}"
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(raw))
    os.environ["SPANMETER_ADMIN_KEY"] = BOOTSTRAP
    try:
        serve = ServeProcess(config, tmp_path / "store")
    finally:
        del os.environ["SPANMETER_ADMIN_KEY"]
    try:
        env = {
            **os.environ,
            "SPANMETER_DATA": str(tmp_path / "store"),
            "SPANMETER_HTTP_ENDPOINT": f"127.0.0.1:{serve.http_port}",
        }

        def keys(*args: str, key: str = BOOTSTRAP) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [spanmeter_command(), "keys", *args, "--config", str(config)],
                env={**env, "SPANMETER_API_KEY": key},
                capture_output=True,
                text=True,
                timeout=60,
            )

        made = keys("create", "--project", "team-c", "--name", "ci")
        assert made.returncode == 0, made.stderr
        [key] = KEY_PATTERN.findall(made.stdout)
        url = f"http://127.0.0.1:{serve.http_port}/v1/traces"
        sender = HttpSpanExporter(endpoint=url, headers={"Authorization": f"Bearer {key}"}, timeout=5)
        assert sender.export(make_spans(1)) is SpanExportResult.SUCCESS
        listed = keys("list", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        [entry] = json.loads(listed.stdout)
        assert entry["project"] == "team-c" and key not in listed.stdout
        refused = keys("list", key=key)  # an ingest key manages no keys
        assert refused.returncode != 0 and "403" in refused.stderr and key not in refused.stderr
        assert keys("revoke", entry["key_id"]).returncode == 0
        assert sender.export(make_spans(1)) is SpanExportResult.FAILURE  # this collector re-read its keys at once
    finally:
        _, log = serve.terminate()
    assert BOOTSTRAP not in log and key not in log


def _shipped_with(collector: Collector) -> dict[str, Any]:
    store = collector.store_config
    return {
        "receivers": {"otlp": {}},
        "processors": {"genai": {}, "pricing": {}},
        "exporters": {"clickhouse": {"endpoint": store.endpoint, "database": store.database}},
        "service": {
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["genai", "pricing"], "exporters": ["clickhouse"]}
            }
        },
    }


def _post(collector: Collector, path: str, key: str) -> tuple[int, Any]:
    status, _, body = http_request(
        collector, path, b"{}", {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    )
    return status, json.loads(body)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_listener_beyond_loopback_without_keys_refuses_to_start(
    make_config: Callable[..., Any], protocol: str
) -> None:
    exposed = {"receivers": {"otlp": {"protocols": {protocol: {"endpoint": "0.0.0.0:0"}}}}}
    with pytest.raises(ConfigError) as refused:
        make_config(exposed)
    assert f"receivers.otlp.protocols.{protocol}.endpoint" in str(refused.value)
    assert "without auth" in str(refused.value)
    make_config(deep_merge(exposed, {"receivers": {"otlp": {"protocols": {protocol: {"insecure": True}}}}}))
    make_config(deep_merge(AUTH, exposed))
    with pytest.raises(ConfigError, match="spanmeter_keys"):
        make_config(deep_merge(exposed, {"receivers": {"otlp": {"protocols": {protocol: GUARDED}}}}))
