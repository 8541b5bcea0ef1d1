"""Fixtures for the convention tests: apps instrumented by other libraries, run in their own
interpreter, send OTLP to a real collector; their rows are compared with spanmeter's own.

The other libraries pin SDK versions that clash with the project's (OpenLIT wants openai < 3, the
contrib google-genai instrumentation google-genai < 3), so they live in a separate virtualenv that
`make test` builds from tests/conventions/requirements.txt: `.venv-conventions`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client

from spanmeter.config import load_config
from spanmeter.service import CollectorThread
from tests.collector.conftest import REPO, SHIPPED_CONFIG
from tests.fakes.provider_server import provider_server

PRODUCER = Path(__file__).parent / "producers" / "python_app.py"


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[str]:
    with provider_server() as server:
        yield server.base_url


def virtualenv_python(name: str) -> Path:
    """The interpreter of `.venv-conventions-NAME` (built by `make test` from requirements-NAME.txt), or of
    $SPANMETER_CONVENTIONS_<NAME>_PYTHON; the test skips, saying so, when there is none."""
    variable = f"SPANMETER_CONVENTIONS_{name.upper().replace('-', '_')}_PYTHON"
    python = Path(os.environ.get(variable, REPO / f".venv-conventions-{name}" / "bin" / "python"))
    if not python.exists():
        pytest.skip(f"no virtualenv at {python}: `make test` builds it (or set {variable})")
    return python


@pytest.fixture(scope="session")
def conventions_python() -> Path:
    """OpenLLMetry, OpenInference, OpenLIT, Logfire, LangSmith, Pydantic AI, contrib google-genai: current releases."""
    return virtualenv_python("current")


@pytest.fixture(scope="session")
def legacy_python() -> Path:
    """OpenLLMetry 0.33 (before its move to the current names), with the SDK versions it supports."""
    return virtualenv_python("legacy")


@pytest.fixture(scope="session")
def contrib_openai_python() -> Path:
    """The official contrib opentelemetry-instrumentation-openai-v2, with openai 1.x."""
    return virtualenv_python("contrib-openai")


class Collected:
    """A collector on a database of its own, for one app run."""

    def __init__(self, chdb_path: Path, tmp: Path) -> None:
        self.database = f"conv_{uuid.uuid4().hex[:10]}"
        raw = yaml.safe_load(SHIPPED_CONFIG.read_text())
        raw["exporters"]["clickhouse"]["batch"] = {"max_rows": 5000, "max_age": "50ms"}
        path = tmp / f"{self.database}.yaml"
        path.write_text(yaml.safe_dump(raw))
        env = {
            "SPANMETER_DATA": str(chdb_path),
            "SPANMETER_DATABASE": self.database,
            "SPANMETER_GRPC_ENDPOINT": "127.0.0.1:0",
            "SPANMETER_HTTP_ENDPOINT": "127.0.0.1:0",
            "SPANMETER_WAL": str(tmp / "wal"),
            "SPANMETER_ENGINE_MIN_SPANS": os.environ["SPANMETER_ENGINE_MIN_SPANS"],  # the engine reads them all
        }
        self.thread = CollectorThread(load_config(path, env=env))
        self.collector = self.thread.start()

    def run(self, python: Path | str, library: str, calls: list[str], fake: str, **env: str) -> None:
        child_env = {
            **os.environ,
            "FAKE_PROVIDER_URL": fake,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{self.collector.http_port}/v1/traces",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.collector.http_port}",
            "OTEL_SERVICE_NAME": library,
            "PYTHONPATH": str(REPO),
            **env,
        }
        out = subprocess.run(
            [str(python), str(PRODUCER), library, *calls], env=child_env, capture_output=True, text=True, timeout=180
        )
        assert out.returncode == 0, f"{library} app failed:\n{out.stderr[-3000:]}"

    def rows(self, store: Client, expected: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while self.collector.exporter.stored_rows < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # anything counted twice would have arrived by now
        return list(
            store.query(
                "SELECT * FROM {db:Identifier}.genai_spans ORDER BY timestamp", parameters={"db": self.database}
            ).named_results()
        )

    def stop(self) -> None:
        self.thread.stop()


@pytest.fixture
def collected(chdb_path: Path, tmp_path: Path) -> Iterator[Collected]:
    run = Collected(chdb_path, tmp_path)
    yield run
    run.stop()


def project_python() -> str:
    return sys.executable


ALL_CALLS = ["openai_chat", "openai_embeddings", "anthropic_messages", "gemini_generate"]


def by_call(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    keyed = {(row["provider"], row["operation"]): row for row in rows}
    assert len(keyed) == len(rows), [(r["provider"], r["operation"], r["convention"]) for r in rows]
    return keyed


@pytest.fixture(scope="session")
def reference(fake_provider: str, chdb_path: Path, store: Client, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """spanmeter's own instrumentation, in the current conventions: the rows every other library must match
    (test_conventions' and test_vercel_ai's; made once, as tests/conftest.py keeps tests/conventions/ on one xdist
    worker)."""
    run = Collected(chdb_path, tmp_path_factory.mktemp("reference"))
    try:
        run.run(project_python(), "spanmeter", ALL_CALLS, fake_provider, ANTHROPIC_OPEN_TELEMETRY="false")
        rows = run.rows(store, len(ALL_CALLS))
    finally:
        run.stop()
    assert len(rows) == len(ALL_CALLS)
    assert {row["price_status"] for row in rows} == {"priced"}
    return by_call(rows)
