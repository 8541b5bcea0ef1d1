"""Planners for ``messages.create``/``parse``/``stream``; they stand aside where the SDK traces itself."""

from __future__ import annotations

from typing import Any

import wrapt
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

from .._content import capture_enabled, request_content
from .._genai import Call, field, given, given_kwargs, server_attributes
from .._instrumentor import Plan, respond
from .._stream import stream_proxy
from ._response import MessageStreamObserver, blocks_to_parts, input_messages, message_attributes

_CHAT = ga.GenAiOperationNameValues.CHAT.value
_PROVIDER = ga.GenAiProviderNameValues.ANTHROPIC.value


def traces_natively(instance: Any) -> bool:
    """anthropic 2.x makes its own ``anthropic.messages.create`` span unless ``ANTHROPIC_OPEN_TELEMETRY=false``."""
    client = getattr(instance, "_client", None)
    return client is not None and getattr(client, "_tracer", None) is not None


def _request(instance: Any, kwargs: dict[str, Any], stream: bool) -> dict[str, Any]:
    request = given_kwargs(kwargs)
    attributes: dict[str, Any] = {
        **server_attributes(getattr(getattr(instance, "_client", None), "base_url", "")),
        ga.GEN_AI_REQUEST_MAX_TOKENS: request.get("max_tokens"),
        ga.GEN_AI_REQUEST_TEMPERATURE: request.get("temperature"),
        ga.GEN_AI_REQUEST_TOP_P: request.get("top_p"),
        ga.GEN_AI_REQUEST_TOP_K: request.get("top_k"),
        ga.GEN_AI_REQUEST_STOP_SEQUENCES: request.get("stop_sequences"),
        ga.GEN_AI_REQUEST_STREAM: True if stream else None,
    }
    attributes.update(
        request_content(
            capture_enabled(),
            lambda: input_messages(request.get("messages")),
            lambda: blocks_to_parts(request.get("system")) or None,
        )
    )
    return attributes


def plan_create(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan | None:
    if traces_natively(instance):
        return None
    stream = bool(given(kwargs.get("stream")))
    capture = capture_enabled()
    on_result = respond(
        stream, lambda: MessageStreamObserver(capture), lambda result: message_attributes(result, capture)
    )
    attributes = _request(instance, kwargs, stream)
    return Plan(_CHAT, _PROVIDER, given(kwargs.get("model")), attributes, kwargs, on_result)


def plan_stream(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan | None:
    """``messages.stream()`` returns a manager; the request and the events come at ``__enter__``."""
    if traces_natively(instance):
        return None
    capture = capture_enabled()

    def on_result(manager: Any, call: Call) -> Any:
        return _StreamManagerProxy(manager, call, capture)

    attributes = _request(instance, kwargs, True)
    return Plan(_CHAT, _PROVIDER, given(kwargs.get("model")), attributes, kwargs, on_result)


class _StreamManagerProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Puts our stream proxy under the SDK's ``MessageStream`` so its helpers keep working."""

    def __init__(self, manager: Any, call: Call, capture: bool) -> None:
        super().__init__(manager)
        self._self_call = call
        self._self_capture = capture

    def _self_attach(self, message_stream: Any) -> Any:
        raw = field(message_stream, "_raw_stream")
        if raw is None:
            self._self_call.finish()
        else:
            message_stream._raw_stream = stream_proxy(raw, self._self_call, MessageStreamObserver(self._self_capture))
        return message_stream

    def __enter__(self) -> Any:
        token = self._self_call.activate()
        try:
            stream = self.__wrapped__.__enter__()
        except Exception as error:
            self._self_call.fail(error)
            raise
        finally:
            self._self_call.deactivate(token)
        return self._self_attach(stream)

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_call.finish()

    async def __aenter__(self) -> Any:
        token = self._self_call.activate()
        try:
            stream = await self.__wrapped__.__aenter__()
        except Exception as error:
            self._self_call.fail(error)
            raise
        finally:
            self._self_call.deactivate(token)
        return self._self_attach(stream)

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_call.finish()
