"""End to end: an app run under ``opentelemetry-instrument`` exports our spans over OTLP/HTTP.

The app has no OpenTelemetry code; the entry points of this distribution do everything. The
spans land in a tiny OTLP/HTTP receiver built from opentelemetry-proto in this test.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

APP = Path(__file__).parent / "apps" / "e2e_app.py"
INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            received.append(ExportTraceServiceRequest.FromString(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    finally:
        server.shutdown()
        server.server_close()


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value"))


def flatten(requests: list[ExportTraceServiceRequest]) -> list[dict[str, Any]]:
    spans = []
    for request in requests:
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {kv.key: _value(kv.value) for kv in span.attributes}
                    spans.append(
                        {"name": span.name, "scope": scope_spans.scope.name, "resource": resource, **attributes}
                    )
    return spans


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument is not installed next to this Python")
def test_app_under_opentelemetry_instrument_exports_tagged_genai_spans(fake):
    with otlp_receiver() as (endpoint, received):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))},
            "FAKE_PROVIDER_URL": fake.base_url,
            "OTEL_SERVICE_NAME": "e2e-app",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        done = subprocess.run(
            [str(INSTRUMENT), sys.executable, str(APP)],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, done.stderr
    assert "chunks 5 usage_chunks 0" in done.stderr
    spans = {span["name"]: span for span in flatten(received)}
    assert set(spans) == {
        "chat gpt-4o-mini",
        "anthropic.messages.create",
        "generate_content gemini-2.5-flash",
        "chat llama3.2",
        "embeddings text-embedding-3-small",
    }
    for name in ("chat gpt-4o-mini", "anthropic.messages.create", "generate_content gemini-2.5-flash", "chat llama3.2"):
        span = spans[name]
        assert span["resource"]["service.name"] == "e2e-app"
        assert (span["spanmeter.tag.feature"], span["user.id"], span["session.id"]) == ("e2e", "u-e2e", "s-e2e")
    openai_span = spans["chat gpt-4o-mini"]
    assert openai_span["scope"] == "spanmeter_instrumentation.openai"
    assert openai_span[ga.GEN_AI_USAGE_INPUT_TOKENS] == 25  # usage asked for on the caller's behalf
    assert spans["anthropic.messages.create"]["scope"] == "com.anthropic.sdk.python"  # native span, not ours
    assert spans["anthropic.messages.create"][ga.GEN_AI_USAGE_INPUT_TOKENS] == 170
    assert spans["generate_content gemini-2.5-flash"][ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 6
    assert spans["chat llama3.2"][ga.GEN_AI_USAGE_OUTPUT_TOKENS] == 11
    embeddings = spans["embeddings text-embedding-3-small"]
    assert embeddings["spanmeter.tag.feature"] == "e2e-async" and "user.id" not in embeddings


def _install_recipe(readme: Path) -> str:
    """The README's shell block that installs this package."""
    blocks = re.findall(r"```sh\n(.*?)```", readme.read_text(), re.S)
    [recipe] = [block for block in blocks if "pip install ./instrumentation" in block]
    return recipe


def test_both_readmes_give_the_one_recipe_this_file_runs():
    """Mixed recipes (distro from one README, sdk without OTEL_TRACES_EXPORTER from the other) export nothing."""
    repo = Path(__file__).resolve().parents[2]
    recipe = _install_recipe(repo / "README.md")
    assert _install_recipe(repo / "instrumentation" / "README.md") == recipe
    # What the test above runs: the SDK without a distro, configured by our hook from OTEL_TRACES_EXPORTER.
    assert "pip install ./instrumentation opentelemetry-sdk opentelemetry-exporter-otlp\n" in recipe
    assert "OTEL_TRACES_EXPORTER=otlp" in recipe and "opentelemetry-instrument python app.py" in recipe
