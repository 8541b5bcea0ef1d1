"""A setup that exports nothing says so, once: the instrumentation warns at the first call when no exporter will
send its spans (no SDK at all, or an SDK provider without a span processor), and stays quiet when one will."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter_instrumentation.openai import OpenAIInstrumentor

from .conftest import instrumented
from .test_opentelemetry_instrument import APP, INSTRUMENT

WARNING = "no exporter will send this process's GenAI spans"
REPO = Path(__file__).resolve().parents[2]


def _chat(fake) -> None:
    client = openai.OpenAI(base_url=fake.url("openai"), api_key="k", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and WARNING in r.getMessage()]


def test_sdk_provider_without_span_processor_warns_once(fake, caplog, monkeypatch):
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    caplog.set_level(logging.WARNING, logger="spanmeter_instrumentation")
    provider = TracerProvider()  # the tag processor is all it will get: spans recorded, then dropped
    with instrumented(OpenAIInstrumentor(), provider):
        _chat(fake)
        _chat(fake)
    assert len(_warnings(caplog)) == 1, caplog.text
    assert "has no span processor" in _warnings(caplog)[0]


def test_provider_with_an_exporter_or_exporter_none_does_not_warn(fake, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="spanmeter_instrumentation")
    exporting = TracerProvider()
    exporting.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    with instrumented(OpenAIInstrumentor(), exporting):
        _chat(fake)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")  # the user asked for no export
    with instrumented(OpenAIInstrumentor(), TracerProvider()):
        _chat(fake)
    assert _warnings(caplog) == []


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument is not installed next to this Python")
@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry.distro") is not None,
    reason="opentelemetry-distro is installed: it configures an OTLP exporter by default",
)
def test_opentelemetry_instrument_without_exporter_or_distro_warns_once(fake):
    """The silent case of mixed recipes: opentelemetry-instrument, no distro, no OTEL_TRACES_EXPORTER."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))},
        "FAKE_PROVIDER_URL": fake.base_url,
        "ANTHROPIC_OPEN_TELEMETRY": "false",  # every call through this package's instrumentors
    }
    done = subprocess.run(
        [str(INSTRUMENT), sys.executable, str(APP)], env=env, capture_output=True, text=True, timeout=90, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert len(re.findall(re.escape(WARNING), done.stderr)) == 1, done.stderr
    assert "the API's no-op one" in done.stderr
