"""No secret in a forwarded request's content, a config error or a log line: the otlp exporter strips prompt and
completion content unless `forward_content` is set; `spanmeter serve` with bad configs holding realistic secrets
names the key, never the value (its stderr is grepped); a collector whose notification channels fail logs no URL
token, header or signing secret."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from spanmeter.service import Collector

from .budget_helpers import budget_overrides, spend, wait_until, webhook_server
from .conftest import SHIPPED_CONFIG, rows, tracer_provider, wait_for_rows
from .test_telemetry_signals import GENAI, OtlpSink, decoded, sink  # noqa: F401  (sink: a fixture)

OPENAI_KEY = "sk-proj-Xq3vB8kLm2Np5Rs7Tu9Wx1Yz4Ab6Cd0EfT3BlbkFJGh2Ij4Kl6Mn8Op0Qr2St4Uv6Wx8Yz0Ab2Cd"
SLACK_TOKEN_PATH = "T024BE7LD/B08UKJ4NTQ9/Xq7YbLk2mN9pR4sT6uV8wZ1c"
SLACK_URL = f"https://hooks.slack.com/services/{SLACK_TOKEN_PATH}"
PASSWORD = "Tr0ub4dor-3x-horse-battery"
WEBHOOK_SECRET = "whsec_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
BEARER = "Bearer smk_live_4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
PROMPT = f'[{{"role": "user", "parts": [{{"type": "text", "content": "my key is {OPENAI_KEY}"}}]}}]'


# --- forwarding ---------------------------------------------------------------------------------------------


def _forwarding(start_collector: Callable[..., Collector], sink: OtlpSink, **otlp: Any) -> Collector:  # noqa: F811
    return start_collector(
        {
            "processors": {"genai": {"capture_content": True}},
            "exporters": {
                "clickhouse": {"batch": {"max_age": "100ms"}},
                "otlp": {"endpoint": sink.endpoint, **otlp},
            },
            "service": {
                "pipelines": {
                    "traces": {"exporters": ["clickhouse", "otlp"]},
                    "logs": {"receivers": ["otlp"], "exporters": ["otlp"]},
                }
            },
        }
    )


def _send(collector: Collector) -> str:
    """A GenAI span with content (its own convention's and OpenInference's), a wrapper span with content and a
    content event, and a GenAI event log record whose body is the prompt."""
    provider = tracer_provider(collector, "http-protobuf")
    tracer = provider.get_tracer("spanmeter.tests")
    with tracer.start_as_current_span("workflow", attributes={"input.value": PROMPT, "app.step": "plan"}) as wrapper:
        wrapper.add_event("gen_ai.content.prompt", {"gen_ai.prompt": PROMPT, "note": "kept"})
        with tracer.start_as_current_span(
            "chat gpt-4o-mini", attributes={**GENAI, "gen_ai.input.messages": PROMPT, "llm.input_messages.0": PROMPT}
        ) as call:
            span_id = format(call.get_span_context().span_id, "016x")
    provider.shutdown()
    memory = InMemoryLogRecordExporter()
    logs = LoggerProvider(resource=Resource.create({"service.name": "events"}))
    logs.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logs.get_logger("spanmeter.tests").emit(body=PROMPT, attributes={"event.name": "gen_ai.user.message"})
    logs.get_logger("spanmeter.tests").emit(body="an ordinary log line")
    exporter = OTLPLogExporter(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/logs", timeout=10)
    exporter.export(memory.get_finished_logs())
    return span_id


def _spans(requests: list[tuple[str, bytes]]) -> dict[str, Any]:
    traces = decoded(requests, ExportTraceServiceRequest)
    return {span.name: span for t in traces for r in t.resource_spans for s in r.scope_spans for span in s.spans}


def test_forwarded_requests_carry_no_content_by_default(
    start_collector: Callable[..., Collector],
    sink: OtlpSink,  # noqa: F811
    store: Client,
    database: str,
) -> None:
    collector = _forwarding(start_collector, sink)
    span_id = _send(collector)
    forwarded = sink.wait_for({"/v1/traces": 2, "/v1/logs": 1})
    for _, body in forwarded["/v1/traces"] + forwarded["/v1/logs"]:
        assert OPENAI_KEY.encode() not in body and b"my key is" not in body
    spans = _spans(forwarded["/v1/traces"])
    assert {a.key for a in spans["workflow"].attributes} == {"app.step"}
    assert [{a.key for a in e.attributes} for e in spans["workflow"].events] == [{"note"}]
    assert {a.key for a in spans["chat gpt-4o-mini"].attributes} == set(GENAI)
    (logs,) = decoded(forwarded["/v1/logs"], ExportLogsServiceRequest)
    records = [rec for r in logs.resource_logs for s in r.scope_logs for rec in s.log_records]
    assert [rec.HasField("body") for rec in records] == [False, True]
    assert records[1].body.string_value == "an ordinary log line"
    # stored (capture is on), redacted
    wait_for_rows(collector, 1)
    (row,) = rows(store, database, "span_id = {id:String}", id=span_id)
    assert set(row["content"]) == {"gen_ai.input.messages", "llm.input_messages.0"}
    assert "[REDACTED:openai_api_key]" in row["content"]["gen_ai.input.messages"]


def test_forward_content_forwards_it_as_received(
    start_collector: Callable[..., Collector],
    sink: OtlpSink,  # noqa: F811
) -> None:
    collector = _forwarding(start_collector, sink, forward_content=True)
    _send(collector)
    forwarded = sink.wait_for({"/v1/traces": 2, "/v1/logs": 1})
    spans = _spans(forwarded["/v1/traces"])
    assert {a.key for a in spans["workflow"].attributes} == {"input.value", "app.step"}
    assert {a.key for a in spans["chat gpt-4o-mini"].attributes} >= {"gen_ai.input.messages"}
    assert any(PROMPT.encode() in body for _, body in forwarded["/v1/logs"])


# --- config errors --------------------------------------------------------------------------------------------


def _budget_channels(channels: dict[str, Any]) -> dict[str, Any]:
    return {"processors": {"budget": {"channels": channels}}}


BAD_CONFIGS: dict[str, tuple[Any, str, str]] = {
    # name: (override or raw text, the secret that must not appear, the key path that must)
    "slack url without a scheme": (
        _budget_channels({"team": {"type": "slack", "url": f"hooks.slack.com/services/{SLACK_TOKEN_PATH}"}}),
        SLACK_TOKEN_PATH,
        "processors.budget.channels.team.slack.url",
    ),
    "webhook on a private address with a token": (
        _budget_channels({"ops": {"type": "webhook", "url": f"http://10.1.2.3/hook?token={PASSWORD}", "secret": "s"}}),
        PASSWORD,
        "processors.budget.channels.ops.url",
    ),
    "webhook header not a string": (
        _budget_channels(
            {"ops": {"type": "webhook", "url": "https://example.com/h", "secret": "s", "headers": {"X-Key": [BEARER]}}}
        ),
        BEARER.split()[1],
        "headers",
    ),
    "numeric password": (
        {"exporters": {"clickhouse": {"password": 982451653128000042}}},
        "982451653128000042",
        "exporters.clickhouse.password",
    ),
    "store endpoint with credentials": (
        {"exporters": {"clickhouse": {"endpoint": f"tcp://default:{PASSWORD}@clickhouse:9000"}}},
        PASSWORD,
        "exporters.clickhouse.endpoint",
    ),
    "forwarding endpoint with a key in its query": (
        {"exporters": {"otlp": {"endpoint": f"otlp.example.com/v1?api_key={OPENAI_KEY}"}}},
        OPENAI_KEY,
        "exporters.otlp.endpoint",
    ),
    "email password not a string": (
        _budget_channels(
            {
                "mail": {
                    "type": "email",
                    "host": "smtp.example.com",
                    "from": "a@b.c",
                    "to": ["x@y.z"],
                    "password": {"v": PASSWORD},
                }
            }
        ),
        PASSWORD,
        "password",
    ),
    "unterminated substitution in a password": (
        {"exporters": {"clickhouse": {"password": f"{PASSWORD}${{env:X"}}},
        PASSWORD,
        "exporters.clickhouse.password",
    ),
    "invalid substitution holding a key": (
        {"exporters": {"clickhouse": {"password": f"${{{OPENAI_KEY}}}"}}},
        OPENAI_KEY,
        "exporters.clickhouse.password",
    ),
    "YAML broken on a line with a secret": (
        f'receivers: {{}}\nexporters:\n  clickhouse:\n    password: "{PASSWORD}\n  bad: [\n',
        PASSWORD,
        "not valid YAML: line",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_config_errors_name_the_key_never_the_secret(tmp_path: Path, case: str) -> None:
    override, secret, where = BAD_CONFIGS[case]
    if isinstance(override, str):
        text = override
    else:
        raw = yaml.safe_load(SHIPPED_CONFIG.read_text())
        for section, body in override.items():
            for component, settings in body.items():
                raw.setdefault(section, {}).setdefault(component, {})
                raw[section][component] = {**(raw[section][component] or {}), **settings}
        text = yaml.safe_dump(raw)
    path = tmp_path / "pipelines.yaml"
    path.write_text(text)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("spanmeter")), "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "SPANMETER_DATA": str(tmp_path / "data"), "HOME": str(tmp_path)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert where in output, output
    assert secret not in output, output
    assert secret[:12] not in output, output  # nor a recognisable part of it


# --- logs of failing channels ---------------------------------------------------------------------------------


def test_failing_channels_log_no_secret(
    start_collector: Callable[..., Collector], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with webhook_server() as down:
        down.statuses = [500] * 10
        channels = {
            "ops": {
                "type": "webhook",
                "url": f"{down.url}/{SLACK_TOKEN_PATH}?token={PASSWORD}",
                "secret": WEBHOOK_SECRET,
                "headers": {"Authorization": BEARER},
                "retries": 1,
                "backoff": "50ms",
            },
            # nothing listens on port 9: refused
            "team": {"type": "slack", "url": f"http://127.0.0.1:9/services/{SLACK_TOKEN_PATH}", "retries": 0},
        }
        budget = {"name": "b", "limit_usd": 10, "thresholds": [80], "channels": ["ops", "team"]}
        collector = start_collector(budget_overrides([budget], channels))
        spend(tracer_provider(collector), 9)
        wait_until(lambda: len(down.requests) == 2, what="two attempts")
        wait_until(
            lambda: sum("notification of" in r.getMessage() for r in caplog.records) == 2, what="two outcome lines"
        )
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "failed notification" in logged
    for secret in (SLACK_TOKEN_PATH, PASSWORD, WEBHOOK_SECRET, BEARER.split()[1]):
        assert secret not in logged
