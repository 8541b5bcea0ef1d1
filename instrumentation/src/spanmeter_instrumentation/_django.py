"""Django middleware: each request's GenAI spans get its route and user. It imports nothing of Django
until Django instantiates it, so this package does not depend on Django."""

from __future__ import annotations

from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any

from ._request import RequestAttribution, header_key, request_scope, scoped_async_iterator, scoped_iterator

SETTING_USER_HEADER = "SPANMETER_USER_HEADER"
"""Django setting: the header that names the user when Django's user is anonymous (e.g. ``"X-User-Id"``)."""


class SpanmeterDjangoMiddleware:
    """Tags each request's GenAI spans with ``route`` and ``user_id``; add
    ``"spanmeter_instrumentation.SpanmeterDjangoMiddleware"`` to ``MIDDLEWARE``.

    Both are read when a GenAI span starts, so its place in ``MIDDLEWARE`` does not matter: ``route`` is
    ``request.resolver_match.route`` (e.g. ``users/<int:user_id>/chat``, as Django writes it and as
    opentelemetry-instrumentation-django puts it in ``http.route``); ``user_id`` is ``request.user.pk``
    when authenticated (override ``user()`` for another field), else the header of the
    ``SPANMETER_USER_HEADER`` setting. Tags the app sets with ``tags()`` win. Sync and async.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from django.conf import settings

        self.get_response = get_response
        self._user_header = header_key(getattr(settings, SETTING_USER_HEADER, None))
        self._async = iscoroutinefunction(get_response)
        if self._async:
            from asgiref.sync import markcoroutinefunction

            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self._acall(request)
        attribution = self._attribution(request)
        with request_scope(attribution):
            return _scoped_stream(self.get_response(request), attribution)

    async def _acall(self, request: Any) -> Any:
        attribution = self._attribution(request)
        with request_scope(attribution):
            return _scoped_stream(await self.get_response(request), attribution)

    def route(self, request: Any) -> str | None:
        """The pattern of the URL Django resolved (``None`` until it has resolved one)."""
        match = getattr(request, "resolver_match", None)
        return getattr(match, "route", None) or None

    def user(self, request: Any) -> str | None:
        """The authenticated user's primary key. In an async view an unloaded ``request.user`` cannot be read
        (Django refuses database access there): the header, or ``tags(user_id=...)``, names the user then."""
        user = getattr(request, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return str(user.pk)

    def _attribution(self, request: Any) -> RequestAttribution:
        header = self._user_header
        return RequestAttribution(
            lambda: self.route(request),
            lambda: self.user(request),
            None if header is None else lambda: request.headers.get(header),
        )


def _scoped_stream(response: Any, attribution: RequestAttribution) -> Any:
    """A streaming response whose body is produced inside the request's attribution (it is produced as the
    server sends it, after this middleware returned)."""
    if getattr(response, "streaming", False):
        if getattr(response, "is_async", False):
            response.streaming_content = scoped_async_iterator(response.streaming_content, attribution)
        else:
            response.streaming_content = scoped_iterator(response.streaming_content, attribution)
    return response
