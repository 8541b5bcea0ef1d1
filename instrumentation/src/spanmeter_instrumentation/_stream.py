"""Stream proxies shared by all providers.

The caller keeps the SDK's own stream object (``isinstance`` still holds); the proxy watches
each item go by, ends the span when the stream ends, fails or is closed, and can hide items
that only the instrumentation asked for (OpenAI's usage-only chunk).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import wrapt

from ._genai import Call


class StreamObserver(Protocol):
    """Accumulates what a provider's stream says about the call."""

    def on_item(self, item: Any) -> None: ...

    def attributes(self) -> dict[str, Any]: ...


Hide = Callable[[Any], bool]


class _StreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """What the sync and async proxies share: the call's span, observing and hiding chunks."""

    def __init__(self, wrapped: Any, call: Call, observer: StreamObserver, hide: Hide | None = None) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_observer = observer
        self._self_hide = hide
        self._self_iterator: Any = None

    def _self_fail(self, error: Exception) -> None:
        self._self_call.fail(error, self._self_observer.attributes())

    def _self_keep(self, item: Any) -> bool:
        """Observe a chunk; whether the caller gets it (an extra usage-only chunk is hidden)."""
        self._self_call.first_chunk()
        self._self_observer.on_item(item)
        return self._self_hide is None or not self._self_hide(item)

    def _self_end(self) -> None:
        self._self_call.finish(self._self_observer.attributes())


class SyncStreamProxy(_StreamProxy):
    """Wraps a sync iterator/stream; the span ends with the stream."""

    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        if self._self_iterator is None:
            self._self_iterator = iter(self.__wrapped__)
        while True:
            try:
                item = next(self._self_iterator)
            except StopIteration:
                self._self_end()
                raise
            except Exception as error:
                self._self_fail(error)
                raise
            if self._self_keep(item):
                return item

    def __enter__(self) -> SyncStreamProxy:
        if hasattr(self.__wrapped__, "__enter__"):
            self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__exit__", None)
            return exit_(*exc_info) if exit_ else None
        finally:
            self._self_end()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_end()


class AsyncStreamProxy(_StreamProxy):
    """Wraps an async iterator/stream; the span ends with the stream."""

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        if self._self_iterator is None:
            self._self_iterator = self.__wrapped__.__aiter__()
        while True:
            try:
                item = await self._self_iterator.__anext__()
            except StopAsyncIteration:
                self._self_end()
                raise
            except Exception as error:
                self._self_fail(error)
                raise
            if self._self_keep(item):
                return item

    async def __aenter__(self) -> AsyncStreamProxy:
        if hasattr(self.__wrapped__, "__aenter__"):
            await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__aexit__", None)
            return await exit_(*exc_info) if exit_ else None
        finally:
            self._self_end()

    async def close(self) -> None:
        try:
            closer = getattr(self.__wrapped__, "close", None) or self.__wrapped__.aclose
            await closer()
        finally:
            self._self_end()

    async def aclose(self) -> None:
        await self.close()


def stream_proxy(result: Any, call: Call, observer: StreamObserver, hide: Hide | None = None) -> Any:
    """The right proxy for what the SDK returned; anything not iterable just ends the span."""
    if hasattr(result, "__aiter__"):
        return AsyncStreamProxy(result, call, observer, hide)
    if hasattr(result, "__iter__"):
        return SyncStreamProxy(result, call, observer, hide)
    call.finish(observer.attributes())
    return result
