"""Planners for ``ollama.Client``/``AsyncClient``: chat, generate, embed (and their streams)."""

from __future__ import annotations

from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

from .._content import capture_enabled, message, output_attributes, request_content, text_part, tool_call_part
from .._genai import Usage, as_int, field, server_attributes
from .._instrumentor import Plan, respond

PROVIDER = "ollama"
"""Not in the semantic conventions' provider list; the lowercase product name, as they advise."""

_CHAT = ga.GenAiOperationNameValues.CHAT.value
_COMPLETION = ga.GenAiOperationNameValues.TEXT_COMPLETION.value
_EMBEDDINGS = ga.GenAiOperationNameValues.EMBEDDINGS.value


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    """Ollama takes ``model`` and the prompt/messages positionally too."""
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else None)


def usage(response: Any) -> Usage:
    """``prompt_eval_count`` is all input (Ollama reports no cache); ``eval_count`` all output."""
    return Usage(
        input_tokens=as_int(field(response, "prompt_eval_count")),
        output_tokens=as_int(field(response, "eval_count")),
    )


def _message_parts(msg: Any) -> list[dict[str, Any]]:
    parts = [text_part(field(msg, "content"))] if field(msg, "content") else []
    for call in field(msg, "tool_calls") or []:
        function = field(call, "function")
        parts.append(tool_call_part(None, field(function, "name"), field(function, "arguments")))
    return parts


def _response_attributes(response: Any, operation: str, capture: bool, text: str | None = None) -> dict[str, Any]:
    reason = field(response, "done_reason")
    attributes = {
        ga.GEN_AI_RESPONSE_MODEL: field(response, "model"),
        ga.GEN_AI_RESPONSE_FINISH_REASONS: [str(reason)] if reason else None,
        **usage(response).attributes(),
    }
    if capture and operation != _EMBEDDINGS:
        if text is not None:
            parts = [text_part(text)]
        elif operation == _CHAT:
            parts = _message_parts(field(response, "message"))
        else:
            parts = [text_part(field(response, "response"))]
        attributes.update(output_attributes([message("assistant", parts, reason)]))
    return attributes


class _StreamObserver:
    """The final chunk (``done: true``) carries the counts and the done reason."""

    def __init__(self, operation: str, capture: bool) -> None:
        self._operation = operation
        self._capture = capture
        self._last: Any = None
        self._text: list[str] = []

    def on_item(self, chunk: Any) -> None:
        self._last = chunk
        if self._capture:
            piece = field(field(chunk, "message"), "content") if self._operation == _CHAT else field(chunk, "response")
            self._text.append(piece or "")

    def attributes(self) -> dict[str, Any]:
        if self._last is None:
            return {}
        text = "".join(self._text) if self._capture else None
        return _response_attributes(self._last, self._operation, self._capture, text)


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    options = kwargs.get("options")
    stop = field(options, "stop")
    return {
        ga.GEN_AI_REQUEST_TEMPERATURE: field(options, "temperature"),
        ga.GEN_AI_REQUEST_TOP_P: field(options, "top_p"),
        ga.GEN_AI_REQUEST_TOP_K: field(options, "top_k"),
        ga.GEN_AI_REQUEST_MAX_TOKENS: field(options, "num_predict"),
        ga.GEN_AI_REQUEST_SEED: field(options, "seed"),
        ga.GEN_AI_REQUEST_FREQUENCY_PENALTY: field(options, "frequency_penalty"),
        ga.GEN_AI_REQUEST_PRESENCE_PENALTY: field(options, "presence_penalty"),
        ga.GEN_AI_REQUEST_STOP_SEQUENCES: list(stop) if stop else None,
    }


def _plan(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], operation: str) -> Plan:
    stream = bool(kwargs.get("stream")) and operation != _EMBEDDINGS
    attributes: dict[str, Any] = {
        **server_attributes(getattr(getattr(instance, "_client", None), "base_url", "")),
        **_options(kwargs),
        ga.GEN_AI_REQUEST_STREAM: True if stream else None,
    }
    capture = capture_enabled()
    if operation == _CHAT:
        messages = _arg(args, kwargs, 1, "messages") or []
        attributes.update(
            request_content(capture, lambda: [message(str(field(m, "role")), _message_parts(m)) for m in messages])
        )
    elif operation == _COMPLETION:
        prompt, system = _arg(args, kwargs, 1, "prompt"), kwargs.get("system")
        attributes.update(
            request_content(
                capture,
                lambda: [message("user", [text_part(prompt)])],
                lambda: [text_part(system)] if system else None,
            )
        )

    on_result = respond(
        stream,
        lambda: _StreamObserver(operation, capture),
        lambda result: _response_attributes(result, operation, capture),
    )
    return Plan(operation, PROVIDER, _arg(args, kwargs, 0, "model"), attributes, kwargs, on_result)


def plan_chat(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan:
    return _plan(instance, args, kwargs, _CHAT)


def plan_generate(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan:
    return _plan(instance, args, kwargs, _COMPLETION)


def plan_embed(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan:
    return _plan(instance, args, kwargs, _EMBEDDINGS)
