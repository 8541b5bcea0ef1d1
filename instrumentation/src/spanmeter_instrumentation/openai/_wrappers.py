"""Planners for the OpenAI methods: request attributes, usage injection, result handling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

from .._content import capture_enabled, input_attributes, message, request_content, text_part
from .._genai import Call, field, given, given_kwargs, server_attributes
from .._instrumentor import Plan, respond
from .._stream import stream_proxy
from ._content import chat_input, responses_input
from ._response import (
    ChatStreamObserver,
    ResponsesStreamObserver,
    chat_attributes,
    embeddings_attributes,
    is_usage_only_chunk,
    responses_attributes,
)

_CHAT = ga.GenAiOperationNameValues.CHAT.value
_EMBEDDINGS = ga.GenAiOperationNameValues.EMBEDDINGS.value
_RAW_RESPONSE_HEADER = "x-stainless-raw-response"


def _provider(instance: Any) -> str:
    client = getattr(instance, "_client", None)
    if type(client).__name__.startswith("AsyncAzure") or type(client).__name__.startswith("Azure"):
        return ga.GenAiProviderNameValues.AZURE_AI_OPENAI.value
    return ga.GenAiProviderNameValues.OPENAI.value


def _server(instance: Any) -> dict[str, Any]:
    return server_attributes(getattr(getattr(instance, "_client", None), "base_url", ""))


def _raw_response(kwargs: Mapping[str, Any]) -> bool:
    """``with_raw_response``/``with_streaming_response`` return an HTTP wrapper, not the parsed result."""
    headers = given(kwargs.get("extra_headers")) or {}
    return any(str(key).lower() == _RAW_RESPONSE_HEADER for key in headers)


def _stop(stop: Any) -> list[str] | None:
    stop = given(stop)
    if isinstance(stop, str):
        return [stop]
    return list(stop) if isinstance(stop, (list, tuple)) else None


def _output_type(response_format: Any) -> str | None:
    kind = field(given(response_format), "type")
    if kind in ("json_object", "json_schema"):
        return ga.GenAiOutputTypeValues.JSON.value
    return ga.GenAiOutputTypeValues.TEXT.value if kind == "text" else None


def plan_chat(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, inject_usage: bool) -> Plan:
    """``chat.completions.create``/``parse``; asks a stream for usage when the caller did not."""
    request = given_kwargs(kwargs)
    model = request.get("model")
    stream = bool(request.get("stream"))
    n = request.get("n")
    attributes: dict[str, Any] = {
        **_server(instance),
        ga.GEN_AI_REQUEST_TEMPERATURE: request.get("temperature"),
        ga.GEN_AI_REQUEST_TOP_P: request.get("top_p"),
        ga.GEN_AI_REQUEST_MAX_TOKENS: request.get("max_completion_tokens") or request.get("max_tokens"),
        ga.GEN_AI_REQUEST_FREQUENCY_PENALTY: request.get("frequency_penalty"),
        ga.GEN_AI_REQUEST_PRESENCE_PENALTY: request.get("presence_penalty"),
        ga.GEN_AI_REQUEST_STOP_SEQUENCES: _stop(request.get("stop")),
        ga.GEN_AI_REQUEST_SEED: request.get("seed"),
        ga.GEN_AI_REQUEST_CHOICE_COUNT: n if isinstance(n, int) and n != 1 else None,
        ga.GEN_AI_OUTPUT_TYPE: _output_type(request.get("response_format")),
        ga.GEN_AI_REQUEST_STREAM: True if stream else None,
    }
    capture = capture_enabled()
    attributes.update(request_content(capture, lambda: chat_input(request.get("messages"))))
    send = kwargs
    hide = None
    raw = _raw_response(kwargs)
    stream_options = request.get("stream_options")
    wants_usage = isinstance(stream_options, Mapping) and bool(stream_options.get("include_usage"))
    if stream and inject_usage and not raw and not wants_usage:
        options = dict(stream_options) if isinstance(stream_options, Mapping) else {}
        send = {**kwargs, "stream_options": {**options, "include_usage": True}}
        hide = is_usage_only_chunk

    def on_result(result: Any, call: Call) -> Any:
        if raw:
            return _finish_only(result, call)
        if stream:
            return stream_proxy(result, call, ChatStreamObserver(capture), hide)
        call.finish(chat_attributes(result, capture))
        return result

    return Plan(_CHAT, _provider(instance), model, attributes, send, on_result)


def plan_responses(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan:
    """``responses.create``/``parse``; their streams always end with the full response and usage."""
    request = given_kwargs(kwargs)
    stream = bool(request.get("stream"))
    attributes: dict[str, Any] = {
        **_server(instance),
        ga.GEN_AI_REQUEST_TEMPERATURE: request.get("temperature"),
        ga.GEN_AI_REQUEST_TOP_P: request.get("top_p"),
        ga.GEN_AI_REQUEST_MAX_TOKENS: request.get("max_output_tokens"),
        ga.GEN_AI_REQUEST_STREAM: True if stream else None,
        ga.GEN_AI_CONVERSATION_ID: field(request.get("conversation"), "id") or _str(request.get("conversation")),
    }
    capture = capture_enabled()
    instructions = request.get("instructions")
    attributes.update(
        request_content(
            capture,
            lambda: responses_input(request.get("input")),
            lambda: [text_part(instructions)] if isinstance(instructions, str) else None,
        )
    )
    on_result = respond(
        stream, lambda: ResponsesStreamObserver(capture), lambda result: responses_attributes(result, capture)
    )
    if _raw_response(kwargs):
        on_result = _finish_only
    return Plan(_CHAT, _provider(instance), request.get("model"), attributes, kwargs, on_result)


def _finish_only(result: Any, call: Call) -> Any:
    call.finish()
    return result


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def plan_embeddings(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan:
    request = given_kwargs(kwargs)
    encoding = request.get("encoding_format")
    attributes: dict[str, Any] = {
        **_server(instance),
        ga.GEN_AI_REQUEST_ENCODING_FORMATS: [encoding] if isinstance(encoding, str) else None,
        ga.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: request.get("dimensions"),
    }
    if capture_enabled():
        inputs = request.get("input")
        texts = [inputs] if isinstance(inputs, str) else [t for t in inputs or [] if isinstance(t, str)]
        attributes.update(input_attributes([message("user", [text_part(t) for t in texts])] if texts else None))
    raw = _raw_response(kwargs)

    def on_result(result: Any, call: Call) -> Any:
        call.finish(None if raw else embeddings_attributes(result))
        return result

    return Plan(_EMBEDDINGS, _provider(instance), request.get("model"), attributes, kwargs, on_result)
