"""WSGI middleware (Flask, any WSGI app): each request's GenAI spans get its route template and user."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._request import RequestAttribution, header_key, request_scope, scoped_iterator

Environ = dict[str, Any]
WSGIApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]
EnvironReader = Callable[[Environ], "str | None"]


def flask_route(environ: Environ) -> str | None:
    """The rule Flask matched for the current request, e.g. ``/users/<int:user_id>/chat``.

    Flask matches the URL when it pushes the request context, before the view runs; its module is looked
    up, never imported, so an app without Flask pays nothing.
    """
    flask = sys.modules.get("flask")
    if flask is None or not flask.has_request_context():
        return None
    rule = flask.request.url_rule
    return getattr(rule, "rule", None)


class SpanmeterWSGIMiddleware:
    """Tags each request's GenAI spans with ``route`` (the route template) and ``user_id``.

    Wrap the app's WSGI callable: ``app.wsgi_app = SpanmeterWSGIMiddleware(app.wsgi_app)`` in Flask.
    Both values are read when a GenAI span starts. ``route``: a function of the WSGI environ (default:
    Flask's matched rule). ``user``: a function of the environ giving the user (it may read the framework's
    request, e.g. ``flask_login.current_user``); when it gives none, the header ``user_header`` (off by
    default, as clients can forge it unless a gateway sets it). Tags the app sets with ``tags()`` win.
    A streamed response's body is produced inside the request's attribution too.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        user_header: str | None = None,
        user: EnvironReader | None = None,
        route: EnvironReader | None = None,
    ) -> None:
        self.app = app
        key = header_key(user_header)
        self._user_header = None if key is None else "HTTP_" + key.upper().replace("-", "_")
        self._user = user
        self._route = route or flask_route

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        attribution = self._attribution(environ)
        with request_scope(attribution):
            body = self.app(environ, start_response)
        return _ScopedBody(body, attribution)

    def _attribution(self, environ: Environ) -> RequestAttribution:
        route, user, header = self._route, self._user, self._user_header
        return RequestAttribution(
            lambda: route(environ),
            None if user is None else lambda: user(environ),
            None if header is None else lambda: environ.get(header),
        )


class _ScopedBody:
    """The app's response body, each chunk produced inside the request's attribution (a generator
    body runs only when the server iterates it, after the app returned)."""

    def __init__(self, body: Iterable[bytes], attribution: RequestAttribution) -> None:
        self._body = body
        self._attribution = attribution

    def __iter__(self) -> Iterator[bytes]:
        return scoped_iterator(self._body, self._attribution)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            with request_scope(self._attribution):
                close()
