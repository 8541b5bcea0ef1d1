"""The budget gate without a collector: an unreachable collector fails open, or closed when so configured.
With a real collector: test_budget_gate_collector.py."""

from __future__ import annotations

import openai
import pytest

from spanmeter_instrumentation import BudgetUnavailableError, disable_budget_gate, enable_budget_gate
from spanmeter_instrumentation.openai import OpenAIInstrumentor
from tests.fakes.provider_server import refused_url

from .conftest import instrumented

MESSAGES = [{"role": "user", "content": "hi"}]


def chat(fake):
    client = openai.OpenAI(base_url=fake.url("openai"), api_key="k", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_collector_down_fails_open_by_default_and_closed_when_configured(fake, tracer_provider, gate_off, monkeypatch):
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        monkeypatch.setenv("SPANMETER_BUDGET_URL", refused_url())
        gate = enable_budget_gate(refresh_interval=0.2)  # the URL from the environment
        assert not gate.fresh and not gate.fail_closed
        before = len(fake.requests)
        assert chat(fake).choices
        assert len(fake.requests) == before + 1

        monkeypatch.setenv("SPANMETER_BUDGET_FAIL_CLOSED", "true")
        assert enable_budget_gate(refresh_interval=0.2).fail_closed
        with pytest.raises(BudgetUnavailableError, match="fails closed"):
            chat(fake)
        assert len(fake.requests) == before + 1

        disable_budget_gate()
        assert chat(fake).choices
        assert len(fake.requests) == before + 2


def test_enable_needs_a_url(gate_off, monkeypatch):
    monkeypatch.delenv("SPANMETER_BUDGET_URL", raising=False)
    with pytest.raises(ValueError, match="SPANMETER_BUDGET_URL"):
        enable_budget_gate()


def test_the_gate_sends_the_apps_project_key(monkeypatch):
    """The key the app's exporter sends (OTEL_EXPORTER_OTLP_HEADERS, URL-encoded per the spec) is the gate's,
    unless SPANMETER_API_KEY names one; the traces-specific variable wins over the general one."""
    from spanmeter_instrumentation._budget import BudgetGate

    for name in ("SPANMETER_API_KEY", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    assert BudgetGate("http://127.0.0.1:1")._key is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=a,Authorization=Bearer%20smk_general")
    assert BudgetGate("http://127.0.0.1:1")._key == "smk_general"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer smk_traces")
    assert BudgetGate("http://127.0.0.1:1")._key == "smk_traces"
    monkeypatch.setenv("SPANMETER_API_KEY", "smk_explicit")
    assert BudgetGate("http://127.0.0.1:1")._key == "smk_explicit"
