"""Attribution from the request: the route template and user of the request a GenAI call runs in.

The web middlewares put a ``RequestAttribution`` in a ``ContextVar`` when a request begins, and the
tag processor reads it when a GenAI span starts. The route and user are read then, not when the request
begins: by that time the framework has matched the route and authenticated the user.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

_logger = logging.getLogger(__name__)

ROUTE_TAG = "route"
"""The tag that carries the route template (span attribute ``spanmeter.tag.route``)."""

USER_TAG = "user_id"
"""The tag that carries the user (span attribute ``user.id``)."""

Resolver = Callable[[], "str | None"]
T = TypeVar("T")


class RequestAttribution:
    """One request's route and user, each read by its resolver when asked."""

    __slots__ = ("_route", "_users")

    def __init__(self, route: Resolver, *users: Resolver | None) -> None:
        """``users``: tried in order (``None`` skipped), the first non-empty answer wins."""
        self._route = route
        self._users = tuple(user for user in users if user is not None)

    def tags(self) -> dict[str, str]:
        """``route`` and ``user_id`` as far as they are known now; a failing resolver counts as unknown."""
        found: dict[str, str] = {}
        route = _resolve(self._route)
        if route:
            found[ROUTE_TAG] = route
        for resolver in self._users:
            user = _resolve(resolver)
            if user:
                found[USER_TAG] = user
                break
        return found


def _resolve(resolver: Resolver) -> str | None:
    try:
        value = resolver()
    except Exception:  # a telemetry bug, or a user not loadable here, must never break the call
        _logger.debug("spanmeter: could not read the request's route or user", exc_info=True)
        return None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


_CURRENT: ContextVar[RequestAttribution | None] = ContextVar("spanmeter_request", default=None)


@contextmanager
def request_scope(attribution: RequestAttribution) -> Iterator[None]:
    """Makes ``attribution`` the current request's for the code inside."""
    token = _CURRENT.set(attribution)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def scoped_iterator(iterable: Iterable[T], attribution: RequestAttribution) -> Iterator[T]:
    """``iterable``'s items, each produced inside ``attribution``: a response body that a generator produces
    only as the server sends it, after the view (and the middleware's scope) returned."""
    with request_scope(attribution):
        iterator = iter(iterable)
    while True:
        with request_scope(attribution):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


async def scoped_async_iterator(iterable: AsyncIterable[T], attribution: RequestAttribution) -> AsyncIterator[T]:
    """``scoped_iterator`` for an async body."""
    with request_scope(attribution):
        iterator = aiter(iterable)
    while True:
        with request_scope(attribution):
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
        yield item


def request_tags() -> dict[str, str]:
    """The current request's ``route`` and ``user_id`` tags (empty outside a middleware's request)."""
    attribution = _CURRENT.get()
    return attribution.tags() if attribution is not None else {}


def header_key(name: str | None) -> str | None:
    """``user_header`` as the lower-case name to look up, or None when not set."""
    if name is None:
        return None
    key = name.strip().lower()
    if not key:
        raise ValueError("user_header must be a header name such as 'X-User-Id', got an empty string")
    return key
