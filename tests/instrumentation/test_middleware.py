"""Attribution from the request: FastAPI, Flask and Django apps (real frameworks, in-process test clients)
call the fake provider through the openai SDK; each GenAI span carries the route template and the user.
Then the path with no middleware: opentelemetry-instrumentation-fastapi's server span gives them."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from opentelemetry.trace import SpanKind

from spanmeter_instrumentation import SpanmeterASGIMiddleware, SpanmeterWSGIMiddleware, TagSpanProcessor, tags
from spanmeter_instrumentation.openai import OpenAIInstrumentor
from tests.fakes.provider_server import TEXT

from .apps import web_apps
from .conftest import Spans, instrumented

ROUTE = "spanmeter.tag.route"
USER = "user.id"


@pytest.fixture
def openai_url(fake: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    url: str = fake.url("openai")
    monkeypatch.setenv("OPENAI_URL", url)
    return url


@pytest.fixture
def openai_traced(tracer_provider: TracerProvider, openai_url: str) -> Iterator[None]:
    with instrumented(OpenAIInstrumentor(), tracer_provider):
        yield


def genai(spans: Spans) -> list[ReadableSpan]:
    return [span for span in spans.all() if span.attributes and "gen_ai.operation.name" in span.attributes]


def attribution(spans: Spans) -> list[tuple[Any, Any]]:
    """Each GenAI span's (route, user)."""
    return [(span.attributes.get(ROUTE), span.attributes.get(USER)) for span in genai(spans) if span.attributes]


def test_fastapi_route_template_and_user(spans, openai_traced):
    from fastapi.testclient import TestClient

    with TestClient(web_apps.fastapi_app()) as client:
        # The dependency's user (read by the hook after routing) wins over the header.
        assert client.post("/users/42/chat", headers={"Authorization": "Bearer ada", "X-User-Id": "h"}).is_success
        assert client.post("/users/43/chat", headers={"X-User-Id": "grace"}).is_success
        assert client.post("/v1/teams/core/ask", headers={"X-User-Id": "linus"}).is_success
        assert client.post("/v1/teams/core/ask?explicit=true", headers={"X-User-Id": "linus"}).is_success
        assert client.post("/v1/teams/core/ask").is_success
    assert attribution(spans) == [
        ("/users/{user_id}/chat", "ada"),
        ("/users/{user_id}/chat", "grace"),
        ("/v1/teams/{team}/ask", "linus"),
        ("/v1/teams/{team}/ask", "explicit"),  # tags() set by the app win
        ("/v1/teams/{team}/ask", None),
    ]
    # Only GenAI spans: FastAPI makes none of its own here, and the openai SDK's HTTP call has no span.
    assert all(ROUTE not in (span.attributes or {}) for span in spans.all() if span not in genai(spans))


def test_flask_route_rule_and_user(spans, openai_traced):
    client = web_apps.flask_app().test_client()
    assert client.post("/users/7/chat", headers={"Authorization": "Bearer ada"}).status_code == 200
    assert client.post("/users/8/chat", headers={"X-User-Id": "grace"}).status_code == 200
    # The blueprint's view streams; the provider is called while the body is being sent.
    answer = client.post("/v1/teams/core/ask", headers={"X-User-Id": "linus"})
    assert answer.status_code == 200 and answer.get_data(as_text=True).startswith("answer: ")
    assert attribution(spans) == [
        ("/users/<int:user_id>/chat", "ada"),
        ("/users/<int:user_id>/chat", "grace"),
        ("/v1/teams/<team>/ask", "linus"),
    ]


@pytest.fixture(scope="module")
def django_user_model() -> Any:
    from .apps import django_site

    return django_site.setup()


def test_django_resolver_route_and_authenticated_user(spans, openai_traced, django_user_model):
    from django.test import Client

    user = django_user_model.objects.create_user(username="ada")
    client = Client()
    client.force_login(user)
    assert client.post("/users/5/chat", headers={"X-User-Id": "ignored"}).status_code == 200
    anonymous = Client()
    assert anonymous.post("/users/6/chat", headers={"X-User-Id": "grace"}).status_code == 200
    assert anonymous.post("/users/6/chat").status_code == 200
    streamed = client.post("/v1/teams/core/stream")
    assert b"".join(streamed.streaming_content).startswith(b"answer: ")  # type: ignore[attr-defined]
    assert attribution(spans) == [
        ("users/<int:user_id>/chat", str(user.pk)),
        ("users/<int:user_id>/chat", "grace"),
        ("users/<int:user_id>/chat", None),
        ("v1/teams/<str:team>/stream", str(user.pk)),
    ]


def test_django_async_view(spans, openai_traced, django_user_model):
    from django.test import AsyncClient

    async def ask() -> bytes:
        client, user = AsyncClient(), {"X-User-Id": "linus"}
        assert (await client.post("/v1/teams/core/ask", headers=user)).status_code == 200
        streamed = await client.post("/v1/teams/core/astream", headers=user)
        return b"".join([chunk async for chunk in streamed.streaming_content])  # type: ignore[attr-defined]

    assert asyncio.run(ask()).startswith(b"answer: ")
    assert attribution(spans) == [("v1/teams/<str:team>/ask", "linus"), ("v1/teams/<str:team>/astream", "linus")]


def test_starlette_mount_prefix_and_plain_asgi_wrapping(spans, openai_traced):
    """A plain Starlette app wrapped from outside; under a Mount the template starts with the mount's prefix."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route
    from starlette.testclient import TestClient

    async def item(request: Request) -> PlainTextResponse:
        return PlainTextResponse(await web_apps.achat())

    inner = Starlette(routes=[Mount("/api", routes=[Route("/items/{item_id:int}", item, methods=["POST"])])])
    with TestClient(SpanmeterASGIMiddleware(inner, user_header="X-User-Id")) as client:
        assert client.post("/api/items/9", headers={"X-User-Id": "ada"}).text == TEXT
    assert attribution(spans) == [("/api/items/{item_id}", "ada")]


def test_a_failing_user_hook_costs_the_user_not_the_request(spans, openai_traced):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.post("/chat/{room}")(lambda room: {"answer": web_apps.chat()})

    def broken(scope: Any) -> str:
        raise RuntimeError("user store down")

    app.add_middleware(SpanmeterASGIMiddleware, user=broken, user_header="X-User-Id")
    with TestClient(app) as client:
        assert client.post("/chat/r1").is_success
        assert client.post("/chat/r1", headers={"X-User-Id": "grace"}).is_success
    assert attribution(spans) == [("/chat/{room}", None), ("/chat/{room}", "grace")]


def test_the_budget_gate_matches_the_requests_user_and_route():
    """A per-user or ``tag:route`` block budget sees the middleware's values (``tags()`` still win)."""
    from spanmeter_instrumentation import call_scope

    seen: list[dict[str, str]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(call_scope("openai", "gpt-4o-mini", {}))
        with tags(user_id="explicit"):
            seen.append(call_scope("openai", "gpt-4o-mini", {}))
        start_response("200 OK", [])
        return [b""]

    middleware = SpanmeterWSGIMiddleware(app, user_header="X-User-Id", route=lambda environ: "/r/{id}")
    list(middleware({"HTTP_X_USER_ID": "ada"}, lambda status, headers: None))
    assert [(scope["user"], scope["tag:route"]) for scope in seen] == [("ada", "/r/{id}"), ("explicit", "/r/{id}")]


def test_middleware_arguments_are_checked():
    with pytest.raises(ValueError, match="user_header"):
        SpanmeterWSGIMiddleware(lambda environ, start: [], user_header=" ")


def test_server_span_gives_route_and_user_without_middleware(spans, openai_traced, tracer_provider):
    """opentelemetry-instrumentation-fastapi makes the server span (``http.route`` at its start); the app's
    request hook sets ``user.id`` on it. The GenAI span, under an INTERNAL span of the app, takes both."""
    from fastapi.testclient import TestClient
    from opentelemetry.instrumentation import fastapi as instrumentation

    app = web_apps.fastapi_app(middleware=False)

    def user_from_header(span: Any, scope: dict[str, Any]) -> None:
        for key, value in scope.get("headers", ()):
            if key == b"x-user-id":
                span.set_attribute(USER, value.decode())

    instrumentation.FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, server_request_hook=user_from_header
    )
    try:
        with TestClient(app) as client:
            assert client.post("/users/42/chat", headers={"X-User-Id": "ada"}).is_success
            assert client.post("/v1/teams/core/ask?explicit=true", headers={"X-User-Id": "ada"}).is_success
    finally:
        instrumentation.FastAPIInstrumentor.uninstrument_app(app)
    server = [span for span in spans.all() if span.kind is SpanKind.SERVER]
    assert [span.attributes.get(HTTP_ROUTE) for span in server] == ["/users/{user_id}/chat", "/v1/teams/{team}/ask"]
    assert attribution(spans) == [("/users/{user_id}/chat", "ada"), ("/v1/teams/{team}/ask", "explicit")]
    # Only GenAI spans take them: the server span's own receive/send spans do not.
    others = [span for span in spans.all() if span.kind is not SpanKind.SERVER and span not in genai(spans)]
    assert others and all(ROUTE not in (span.attributes or {}) for span in others)


def test_nearest_server_span_under_internal_spans(spans, tracer_provider):
    """The chain is followed through INTERNAL spans; a span outside any request gets nothing; the option is off-able."""
    tracer = tracer_provider.get_tracer("test")
    genai_attributes = {"gen_ai.operation.name": "chat"}
    with tracer.start_as_current_span("GET /a", kind=SpanKind.SERVER, attributes={HTTP_ROUTE: "/a/{id}"}) as server:
        server.set_attribute(USER, "ada")
        with tracer.start_as_current_span("work"), tracer.start_as_current_span("deeper"):
            tracer.start_span("chat m", kind=SpanKind.CLIENT, attributes=genai_attributes).end()
            with tags(user_id="explicit"):
                tracer.start_span("chat m", kind=SpanKind.CLIENT, attributes=genai_attributes).end()
            tracer.start_span("not genai").end()
    tracer.start_span("chat m", kind=SpanKind.CLIENT, attributes=genai_attributes).end()
    # No SERVER span: the local root (here a queue consumer's span naming its user) stands for the request.
    job = tracer.start_as_current_span("process job", kind=SpanKind.CONSUMER, attributes={USER: "worker-7"})
    with job, tracer.start_as_current_span("step"):
        tracer.start_span("chat m", kind=SpanKind.CLIENT, attributes=genai_attributes).end()
    assert attribution(spans) == [("/a/{id}", "ada"), ("/a/{id}", "explicit"), (None, None), (None, "worker-7")]
    assert dict(next(s for s in spans.all() if s.name == "not genai").attributes or {}) == {}

    spans.clear()
    plain = TracerProvider()
    plain.add_span_processor(TagSpanProcessor(read_server_span=False))
    seen: list[ReadableSpan] = []
    with plain.get_tracer("t").start_as_current_span("s", kind=SpanKind.SERVER, attributes={HTTP_ROUTE: "/a"}):
        span = plain.get_tracer("t").start_span("chat m", attributes=genai_attributes)
        seen.append(span)  # type: ignore[arg-type]
        span.end()
    assert ROUTE not in (seen[0].attributes or {})
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_the_server_span_map_lets_spans_go(tracer_provider):
    """The processor remembers spans weakly: a request's spans, ended and dropped, are collected."""
    tracer = tracer_provider.get_tracer("test")
    server = tracer.start_span("GET /a", kind=SpanKind.SERVER)
    child = tracer.start_span("work", context=trace.set_span_in_context(server))
    refs = [weakref.ref(server), weakref.ref(child)]
    child.end()
    server.end()
    del server, child
    gc.collect()
    assert [ref() for ref in refs] == [None, None]
