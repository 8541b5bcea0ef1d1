"""Planners for ``Models``/``AsyncModels``: generate_content (plain and stream) and embed_content.

The private per-request methods are wrapped, not the public ones: with automatic function
calling one ``generate_content`` makes several model requests, and each must carry its own usage.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

from .._content import capture_enabled, request_content
from .._genai import Call, field, server_attributes
from .._instrumentor import Plan, respond
from ._response import GenerateStreamObserver, content_parts, input_messages, response_attributes

_GENERATE = ga.GenAiOperationNameValues.GENERATE_CONTENT.value
_EMBEDDINGS = ga.GenAiOperationNameValues.EMBEDDINGS.value


def _provider(instance: Any) -> str:
    api_client = getattr(instance, "_api_client", None)
    if getattr(api_client, "vertexai", False):
        return ga.GenAiProviderNameValues.GCP_VERTEX_AI.value
    return ga.GenAiProviderNameValues.GCP_GEMINI.value


def _server(instance: Any) -> dict[str, Any]:
    options = getattr(getattr(instance, "_api_client", None), "_http_options", None)
    return server_attributes(field(options, "base_url") or "")


def _request(instance: Any, kwargs: dict[str, Any], stream: bool) -> dict[str, Any]:
    config = kwargs.get("config")
    stop = field(config, "stop_sequences")
    attributes: dict[str, Any] = {
        **_server(instance),
        ga.GEN_AI_REQUEST_TEMPERATURE: field(config, "temperature"),
        ga.GEN_AI_REQUEST_TOP_P: field(config, "top_p"),
        ga.GEN_AI_REQUEST_TOP_K: field(config, "top_k"),
        ga.GEN_AI_REQUEST_MAX_TOKENS: field(config, "max_output_tokens"),
        ga.GEN_AI_REQUEST_STOP_SEQUENCES: list(stop) if stop else None,
        ga.GEN_AI_REQUEST_SEED: field(config, "seed"),
        ga.GEN_AI_REQUEST_FREQUENCY_PENALTY: field(config, "frequency_penalty"),
        ga.GEN_AI_REQUEST_PRESENCE_PENALTY: field(config, "presence_penalty"),
        ga.GEN_AI_REQUEST_CHOICE_COUNT: field(config, "candidate_count"),
        ga.GEN_AI_REQUEST_STREAM: True if stream else None,
    }
    attributes.update(
        request_content(
            capture_enabled(),
            lambda: input_messages(kwargs.get("contents")),
            lambda: content_parts(field(config, "system_instruction")) or None,
        )
    )
    return attributes


def _plan_generate(instance: Any, kwargs: dict[str, Any], stream: bool) -> Plan:
    capture = capture_enabled()
    on_result = respond(
        stream, lambda: GenerateStreamObserver(capture), lambda result: response_attributes(result, capture)
    )
    attributes = _request(instance, kwargs, stream)
    return Plan(_GENERATE, _provider(instance), kwargs.get("model"), attributes, kwargs, on_result)


def plan_generate(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan:
    return _plan_generate(instance, kwargs, stream=False)


def plan_generate_stream(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan:
    return _plan_generate(instance, kwargs, stream=True)


def plan_embed(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan:
    attributes = {
        **_server(instance),
        ga.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: field(kwargs.get("config"), "output_dimensionality"),
    }

    def on_result(result: Any, call: Call) -> Any:
        # The Gemini API reports no tokens for embeddings; Vertex AI reports per-embedding statistics.
        tokens = [field(field(e, "statistics"), "token_count") for e in field(result, "embeddings") or []]
        counted = [int(t) for t in tokens if isinstance(t, (int, float))]
        call.finish({ga.GEN_AI_USAGE_INPUT_TOKENS: sum(counted)} if counted else None)
        return result

    return Plan(_EMBEDDINGS, _provider(instance), kwargs.get("model"), attributes, kwargs, on_result)
