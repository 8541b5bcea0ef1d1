"""Cost tags: a contextvar of key/value pairs that the span processor stamps on spans.

Tags live in a plain ``ContextVar`` rather than W3C baggage, so that user and session
ids never leave the process in HTTP headers unless the caller asks for it.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.semconv._incubating.attributes.session_attributes import SESSION_ID
from opentelemetry.semconv._incubating.attributes.user_attributes import USER_ID

TAG_PREFIX = "spanmeter.tag."
"""Prefix of the span attribute that carries a tag other than ``user_id`` and ``session_id``."""

SPANMETER_TAGS_BAGGAGE = "SPANMETER_TAGS_BAGGAGE"
"""Env var: ``true`` makes every ``tags()`` scope propagate as W3C baggage, and reads it back."""

_SPECIAL_KEYS: Mapping[str, str] = {"user_id": USER_ID, "session_id": SESSION_ID}

F = TypeVar("F", bound=Callable[..., Any])


def attribute_name(key: str) -> str:
    """The span attribute that carries the tag ``key``."""
    return _SPECIAL_KEYS.get(key) or TAG_PREFIX + key


@dataclass(frozen=True)
class _TagState:
    values: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)


_EMPTY = _TagState(MappingProxyType({}), MappingProxyType({}))
_CURRENT: ContextVar[_TagState] = ContextVar("spanmeter_tags", default=_EMPTY)


def baggage_enabled() -> bool:
    return os.environ.get(SPANMETER_TAGS_BAGGAGE, "").strip().lower() in ("1", "true", "yes", "on")


def current_tags() -> Mapping[str, str]:
    """The tags in force here, as the caller gave them (keys not yet mapped to attributes)."""
    return _CURRENT.get().values


def current_tag_attributes() -> Mapping[str, str]:
    """The span attributes for the tags in force here."""
    return _CURRENT.get().attributes


def _normalize(values: Mapping[str, Any]) -> dict[str, str | None]:
    normalized: dict[str, str | None] = {}
    for key, value in values.items():
        if not key or not isinstance(key, str):
            raise ValueError(f"tag names must be non-empty strings, got {key!r}")
        if value is None:
            normalized[key] = None
        elif isinstance(value, (str, int, float, bool)):
            normalized[key] = str(value)
        else:
            raise TypeError(f"tag {key!r} must be a str, int, float, bool or None, got {type(value).__name__}")
    return normalized


class tags:
    """Tags for every span started inside: a context manager and a decorator.

    ``with tags(feature="chat", user_id="u1"):`` or ``@tags(feature="chat")`` on a function,
    coroutine function, generator or async generator. Nested scopes merge, the inner value
    wins; a value of ``None`` removes the tag in the inner scope. With ``propagate=True``
    (or ``SPANMETER_TAGS_BAGGAGE=true``) the tags also ride in W3C baggage to downstream services.
    """

    def __init__(self, *, propagate: bool | None = None, **values: Any) -> None:
        self._values = _normalize(values)
        self._propagate = propagate
        self._entered: list[Any] = []

    @contextmanager
    def _scope(self) -> Iterator[Mapping[str, str]]:
        merged = dict(_CURRENT.get().values)
        for key, value in self._values.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        attributes = {attribute_name(k): v for k, v in merged.items()}
        state = _TagState(MappingProxyType(merged), MappingProxyType(attributes))
        token = _CURRENT.set(state)
        propagate = baggage_enabled() if self._propagate is None else self._propagate
        otel_token = None
        if propagate:
            ctx = otel_context.get_current()
            for key, value in self._values.items():
                name = attribute_name(key)
                ctx = baggage.remove_baggage(name, ctx) if value is None else baggage.set_baggage(name, value, ctx)
            otel_token = otel_context.attach(ctx)
        try:
            yield state.values
        finally:
            if otel_token is not None:
                otel_context.detach(otel_token)
            _CURRENT.reset(token)

    def __enter__(self) -> Mapping[str, str]:
        scope = self._scope()
        values = scope.__enter__()
        self._entered.append(scope)
        return values

    def __exit__(self, *exc_info: Any) -> None:
        self._entered.pop().__exit__(*exc_info)

    def __call__(self, func: F) -> F:
        if inspect.isasyncgenfunction(func):
            wrapper: Callable[..., Any] = self._wrap_async_generator(func)
        elif inspect.iscoroutinefunction(func):
            wrapper = self._wrap_coroutine(func)
        elif inspect.isgeneratorfunction(func):
            wrapper = self._wrap_generator(func)
        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._scope():
                    return func(*args, **kwargs)

        return functools.wraps(func)(wrapper)  # type: ignore[return-value]

    def _wrap_coroutine(self, func: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._scope():
                return await func(*args, **kwargs)

        return wrapper

    def _wrap_generator(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Each resumption of the generator runs inside the tags, never the consumer between them."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._scope():
                gen = func(*args, **kwargs)
            step, arg = gen.send, None
            while True:
                try:
                    with self._scope():
                        value = step(arg)
                except StopIteration as stop:
                    return stop.value
                try:
                    arg = yield value
                    step = gen.send
                except GeneratorExit:
                    with self._scope():
                        gen.close()
                    raise
                except BaseException as exc:
                    step, arg = gen.throw, exc

        return wrapper

    def _wrap_async_generator(self, func: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._scope():
                agen = func(*args, **kwargs)
            step, arg = agen.asend, None
            while True:
                try:
                    with self._scope():
                        value = await step(arg)
                except StopAsyncIteration:
                    return
                try:
                    arg = yield value
                    step = agen.asend
                except GeneratorExit:
                    with self._scope():
                        await agen.aclose()
                    raise
                except BaseException as exc:
                    step, arg = agen.athrow, exc

        return wrapper


def baggage_tag_attributes(ctx: otel_context.Context | None) -> dict[str, str]:
    """Tags that an upstream service propagated as baggage (only our own names)."""
    found: dict[str, str] = {}
    for name, value in baggage.get_all(ctx).items():
        if (name.startswith(TAG_PREFIX) or name in _SPECIAL_KEYS.values()) and isinstance(value, str):
            found[name] = value
    return found
