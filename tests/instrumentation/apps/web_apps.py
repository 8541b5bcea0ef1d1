"""FastAPI, Flask and Django test apps whose views call the fake provider through the openai SDK.

Each has a route with a parameter, so a row showing the template (not the path) proves where it came
from, and names its user the framework's way. ``OPENAI_URL`` is read per request.
"""

import os
from typing import Any

import openai

from spanmeter_instrumentation import SpanmeterASGIMiddleware, SpanmeterWSGIMiddleware, tags

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
MODEL = "gpt-4o-mini"
FASTAPI_CHAT = "/users/{user_id}/chat"
FASTAPI_ASK = "/v1/teams/{team}/ask"
FLASK_CHAT = "/users/<int:user_id>/chat"
FLASK_ASK = "/v1/teams/<team>/ask"
DJANGO_CHAT = "users/<int:user_id>/chat"
DJANGO_ASK = "v1/teams/<str:team>/ask"
DJANGO_STREAM = "v1/teams/<str:team>/stream"
DJANGO_ASTREAM = "v1/teams/<str:team>/astream"


def chat() -> str:
    client = openai.OpenAI(base_url=os.environ["OPENAI_URL"], api_key="k", max_retries=0)
    return client.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content or ""


async def achat() -> str:
    client = openai.AsyncOpenAI(base_url=os.environ["OPENAI_URL"], api_key="k", max_retries=0)
    response = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    return response.choices[0].message.content or ""


def fastapi_app(*, middleware: bool = True) -> Any:
    """``/users/{user_id}/chat`` (sync) authenticates with a bearer token in a dependency; ``/v1/teams/{team}/ask``
    (async, under a prefixed router) is anonymous, and names the user ``explicit`` with ``tags()`` when asked."""
    from fastapi import APIRouter, Depends, FastAPI, Header, Request

    app = FastAPI()

    def authenticate(request: Request, authorization: str | None = Header(default=None)) -> None:
        if authorization and authorization.startswith("Bearer "):
            request.state.user = authorization.removeprefix("Bearer ")

    @app.post(FASTAPI_CHAT, dependencies=[Depends(authenticate)])
    def user_chat(user_id: int) -> dict[str, str]:
        return {"answer": chat()}

    router = APIRouter(prefix="/v1")

    @router.post("/teams/{team}/ask")
    async def team_ask(team: str, explicit: bool = False) -> dict[str, str]:
        if explicit:
            with tags(user_id="explicit"):
                return {"answer": await achat()}
        return {"answer": await achat()}

    app.include_router(router)
    if middleware:
        app.add_middleware(
            SpanmeterASGIMiddleware,
            user_header="X-User-Id",
            user=lambda scope: getattr(scope.get("state", {}), "get", lambda _: None)("user"),
        )
    return app


def flask_app() -> Any:
    """``/users/<int:user_id>/chat`` names its user in ``flask.g`` (a ``before_request`` reading a bearer token);
    ``/v1/teams/<team>/ask`` is in a blueprint and streams its answer, calling the provider while streaming."""
    from flask import Blueprint, Flask, Response, g, request, stream_with_context

    app = Flask(__name__)

    @app.before_request
    def authenticate() -> None:
        header = request.headers.get("Authorization", "")
        g.user = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None

    @app.post(FLASK_CHAT)
    def user_chat(user_id: int) -> dict[str, str]:
        return {"answer": chat()}

    teams = Blueprint("teams", __name__, url_prefix="/v1")

    @teams.post("/teams/<team>/ask")
    def team_ask(team: str) -> Response:
        def body() -> Any:
            yield "answer: "
            yield chat()

        return Response(stream_with_context(body()))

    app.register_blueprint(teams)
    app.wsgi_app = SpanmeterWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, user_header="X-User-Id", user=lambda environ: g.get("user")
    )
    return app
