"""ASGI middleware (FastAPI, Starlette, any ASGI app): each request's GenAI spans get its route template and user."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._request import RequestAttribution, header_key, request_scope

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ScopeReader = Callable[[Scope], "str | None"]


def starlette_route(scope: Scope) -> str | None:
    """The template of the route Starlette (and so FastAPI) matched, e.g. ``/users/{user_id}/chat``.

    Starlette's router puts the matched route in ``scope["route"]`` once it has matched it; under a
    ``Mount`` the scope's ``root_path`` holds the mounted prefix (as opentelemetry-instrumentation-asgi reads it).
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return None
    return f"{scope.get('root_path', '')}{template}"


class SpanmeterASGIMiddleware:
    """Tags each request's GenAI spans with ``route`` (the route template) and ``user_id``.

    Both are read when a GenAI span starts, so the route is the one the framework matched and the user
    the one it authenticated by then. ``route``: a function of the ASGI scope (default: Starlette's
    matched route). ``user``: a function of the scope giving the user (e.g. from ``scope["user"]`` or
    ``scope["state"]``); when it gives none, the header ``user_header`` (e.g. ``"X-User-Id"``; off by
    default, as clients can forge it unless a gateway sets it). Tags the app sets with ``tags()`` win.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_header: str | None = None,
        user: ScopeReader | None = None,
        route: ScopeReader | None = None,
    ) -> None:
        self.app = app
        self._user_header = header_key(user_header)
        self._user = user
        self._route = route or starlette_route

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        with request_scope(self._attribution(scope)):
            await self.app(scope, receive, send)

    def _attribution(self, scope: Scope) -> RequestAttribution:
        route, user, header = self._route, self._user, self._user_header
        return RequestAttribution(
            lambda: route(scope),
            None if user is None else lambda: user(scope),
            None if header is None else lambda: _header(scope, header),
        )


def _header(scope: Scope, name: str) -> str | None:
    """The value of the (lower-case) header ``name``; ASGI servers send header names in lower case."""
    wanted = name.encode("latin-1")
    for key, value in scope.get("headers") or ():
        if key.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None
