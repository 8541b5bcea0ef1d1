"""Reading google-genai responses into span attributes."""

from __future__ import annotations

from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

from .._content import message, output_attributes, text_part, tool_call_part, tool_response_part
from .._genai import Usage, as_int, field


def usage(metadata: Any) -> Usage:
    """Gemini's prompt count includes cached content; thinking tokens are billed as output, so add them."""
    prompt = as_int(field(metadata, "prompt_token_count"))
    tool_prompt = as_int(field(metadata, "tool_use_prompt_token_count"))
    candidates = as_int(field(metadata, "candidates_token_count"))
    thoughts = as_int(field(metadata, "thoughts_token_count"))
    input_tokens = None if prompt is None else prompt + (tool_prompt or 0)
    output_tokens = None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_input_tokens=as_int(field(metadata, "cached_content_token_count")),
        reasoning_output_tokens=thoughts,
    )


def finish_reason(candidate: Any) -> str | None:
    reason = field(candidate, "finish_reason")
    reason = getattr(reason, "value", reason)
    return str(reason).lower() if reason else None


def content_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for part in field(content, "parts") or []:
        if isinstance(part, str):
            parts.append(text_part(part))
        elif field(part, "text") is not None:
            kind = "reasoning" if field(part, "thought") else "text"
            parts.append({"type": kind, "content": field(part, "text")})
        elif field(part, "function_call") is not None:
            call = field(part, "function_call")
            parts.append(tool_call_part(field(call, "id"), field(call, "name"), field(call, "args")))
        elif field(part, "function_response") is not None:
            response = field(part, "function_response")
            parts.append(tool_response_part(field(response, "id"), field(response, "response")))
    return parts


def input_messages(contents: Any) -> list[dict[str, Any]]:
    if isinstance(contents, str) or field(contents, "parts") is not None:
        contents = [contents]
    result = []
    for content in contents or []:
        role = "user" if isinstance(content, str) else str(field(content, "role") or "user")
        result.append(message("assistant" if role == "model" else role, content_parts(content)))
    return result


def response_attributes(response: Any, capture: bool) -> dict[str, Any]:
    candidates = field(response, "candidates") or []
    reasons = [r for r in (finish_reason(c) for c in candidates) if r]
    attributes = {
        ga.GEN_AI_RESPONSE_ID: field(response, "response_id"),
        ga.GEN_AI_RESPONSE_MODEL: field(response, "model_version"),
        ga.GEN_AI_RESPONSE_FINISH_REASONS: reasons or None,
        **usage(field(response, "usage_metadata")).attributes(),
    }
    if capture:
        outputs = [message("assistant", content_parts(field(c, "content")), finish_reason(c)) for c in candidates]
        attributes.update(output_attributes(outputs))
    return attributes


class GenerateStreamObserver:
    """Each chunk carries cumulative usage; the last one with usage metadata wins."""

    def __init__(self, capture: bool) -> None:
        self._capture = capture
        self._last: Any = None
        self._usage: Any = None
        self._reasons: list[str] = []
        self._text: list[dict[str, Any]] = []

    def on_item(self, chunk: Any) -> None:
        self._last = chunk
        if field(chunk, "usage_metadata") is not None:
            self._usage = field(chunk, "usage_metadata")
        for candidate in field(chunk, "candidates") or []:
            if reason := finish_reason(candidate):
                self._reasons = [reason]
            if self._capture:
                self._text.extend(content_parts(field(candidate, "content")))

    def attributes(self) -> dict[str, Any]:
        if self._last is None:
            return {}
        attributes = {
            ga.GEN_AI_RESPONSE_ID: field(self._last, "response_id"),
            ga.GEN_AI_RESPONSE_MODEL: field(self._last, "model_version"),
            ga.GEN_AI_RESPONSE_FINISH_REASONS: self._reasons or None,
            **usage(self._usage).attributes(),
        }
        if self._capture:
            reason = self._reasons[0] if self._reasons else None
            attributes.update(output_attributes([message("assistant", _merge_text(self._text), reason)]))
        return attributes


def _merge_text(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Joins consecutive streamed text pieces into one part, as the whole response would have it."""
    merged: list[dict[str, Any]] = []
    for part in parts:
        if merged and part.get("type") == merged[-1].get("type") == "text":
            merged[-1] = text_part(merged[-1]["content"] + part["content"])
        else:
            merged.append(part)
    return merged
