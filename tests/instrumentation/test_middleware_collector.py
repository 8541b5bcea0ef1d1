"""Request attribution end to end: the FastAPI, Flask and Django test apps call the fake provider inside
requests, their spans go through the real OTel SDK and OTLP/HTTP exporter to a ``spanmeter serve``
process, and each stored row has the route template in ``tags['route']`` and the user in ``user_id``.

The collector is a child process with its own embedded store (chDB opens one data directory per process,
and other tests of the same run may hold theirs); the store is read from another child once it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# This distribution's tests install without the collector; this one test needs it.
pytest.importorskip("spanmeter", reason="the collector is not installed (pip install -e . at the repository root)")

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from spanmeter_instrumentation.openai import OpenAIInstrumentor
from tests.collector.test_durability import ServeProcess, query_store

from .apps import web_apps
from .conftest import instrumented

REPO = Path(__file__).resolve().parents[2]
SERVICE = "middleware-e2e"


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[ServeProcess, Path]]:
    data = tmp_path / "store"
    serve = ServeProcess(REPO / "pipelines.yaml", data)
    try:
        yield serve, data
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
            serve.process.wait(timeout=30)


def test_each_row_carries_route_template_and_user(collector, fake, monkeypatch):
    from django.test import Client
    from fastapi.testclient import TestClient

    from .apps import django_site

    serve, data = collector
    monkeypatch.setenv("OPENAI_URL", fake.url("openai"))
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{serve.http_port}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    user_model = django_site.setup()

    with instrumented(OpenAIInstrumentor(), provider):
        with TestClient(web_apps.fastapi_app()) as fastapi_client:
            assert fastapi_client.post("/users/1/chat", headers={"Authorization": "Bearer ada"}).is_success
            assert fastapi_client.post("/v1/teams/core/ask", headers={"X-User-Id": "grace"}).is_success
        flask_client = web_apps.flask_app().test_client()
        assert flask_client.post("/users/2/chat", headers={"X-User-Id": "linus"}).status_code == 200
        streamed = flask_client.post("/v1/teams/core/ask", headers={"Authorization": "Bearer ken"})
        assert streamed.get_data(as_text=True).startswith("answer: ")  # the provider is called as it streams
        django_user = user_model.objects.create_user(username="barbara")
        django_client = Client()
        django_client.force_login(django_user)
        assert django_client.post("/users/3/chat").status_code == 200
    provider.shutdown()
    code, log = serve.terminate()
    assert code == 0, log

    rows = query_store(
        data, "SELECT service_name, tags['route'], user_id, price_status FROM spanmeter.genai_spans ORDER BY timestamp"
    )
    assert [tuple(row) for row in rows] == [
        (SERVICE, "/users/{user_id}/chat", "ada", "priced"),
        (SERVICE, "/v1/teams/{team}/ask", "grace", "priced"),
        (SERVICE, "/users/<int:user_id>/chat", "linus", "priced"),
        (SERVICE, "/v1/teams/<team>/ask", "ken", "priced"),
        (SERVICE, "users/<int:user_id>/chat", str(django_user.pk), "priced"),
    ]
