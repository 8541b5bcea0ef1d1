"""Reading Anthropic messages and stream events into span attributes."""

from __future__ import annotations

from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

from .._content import message, output_attributes, text_part, tool_call_part, tool_response_part
from .._genai import Usage, as_int, field


def usage(raw: Any) -> Usage:
    """Anthropic's ``input_tokens`` excludes cache reads and writes; OTel's includes them."""
    uncached = as_int(field(raw, "input_tokens"))
    cache_read = as_int(field(raw, "cache_read_input_tokens"))
    cache_creation = as_int(field(raw, "cache_creation_input_tokens"))
    total_input = None if uncached is None else uncached + (cache_read or 0) + (cache_creation or 0)
    return Usage(
        input_tokens=total_input,
        output_tokens=as_int(field(raw, "output_tokens")),
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=cache_creation,
        reasoning_output_tokens=as_int(field(field(raw, "output_tokens_details"), "thinking_tokens")),
    )


def blocks_to_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for block in content or []:
        kind = field(block, "type")
        if kind == "text":
            parts.append(text_part(field(block, "text")))
        elif kind == "tool_use":
            parts.append(tool_call_part(field(block, "id"), field(block, "name"), field(block, "input")))
        elif kind == "tool_result":
            parts.append(tool_response_part(field(block, "tool_use_id"), field(block, "content")))
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": field(block, "thinking")})
        elif kind is not None:
            parts.append({"type": str(kind)})
    return parts


def input_messages(messages: Any) -> list[dict[str, Any]]:
    return [message(str(field(m, "role")), blocks_to_parts(field(m, "content"))) for m in messages or []]


def message_attributes(msg: Any, capture: bool) -> dict[str, Any]:
    stop_reason = field(msg, "stop_reason")
    attributes = {
        ga.GEN_AI_RESPONSE_ID: field(msg, "id"),
        ga.GEN_AI_RESPONSE_MODEL: field(msg, "model"),
        ga.GEN_AI_RESPONSE_FINISH_REASONS: [str(stop_reason)] if stop_reason else None,
        **usage(field(msg, "usage")).attributes(),
    }
    if capture:
        parts = blocks_to_parts(field(msg, "content"))
        attributes.update(output_attributes([message("assistant", parts, stop_reason)] if parts else None))
    return attributes


class MessageStreamObserver:
    """Rebuilds the message from raw SSE events; ``message_delta`` usage is cumulative."""

    def __init__(self, capture: bool) -> None:
        self._capture = capture
        self._message: dict[str, Any] = {"content": []}
        self._usage: dict[str, Any] = {}
        self._json: dict[int, str] = {}

    def on_item(self, event: Any) -> None:
        kind = field(event, "type")
        if kind == "message_start":
            start = field(event, "message")
            self._message.update(id=field(start, "id"), model=field(start, "model"))
            self._merge_usage(field(start, "usage"))
        elif kind == "message_delta":
            self._message["stop_reason"] = field(field(event, "delta"), "stop_reason")
            self._merge_usage(field(event, "usage"))
        elif self._capture:
            self._accumulate(kind, event)

    def _merge_usage(self, raw: Any) -> None:
        for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = as_int(field(raw, name))
            if value is not None:
                self._usage[name] = value
        details = field(raw, "output_tokens_details")
        if details is not None:
            self._usage["output_tokens_details"] = details

    def _accumulate(self, kind: Any, event: Any) -> None:
        content: list[dict[str, Any]] = self._message["content"]
        if kind == "content_block_start":
            block = field(event, "content_block")
            content.append({"type": field(block, "type"), "text": "", "thinking": "", "id": field(block, "id")})
            content[-1]["name"] = field(block, "name")
        elif kind == "content_block_delta" and content:
            delta = field(event, "delta")
            delta_kind = field(delta, "type")
            if delta_kind == "text_delta":
                content[-1]["text"] += field(delta, "text") or ""
            elif delta_kind == "thinking_delta":
                content[-1]["thinking"] += field(delta, "thinking") or ""
            elif delta_kind == "input_json_delta":
                content[-1]["input"] = content[-1].get("input", "") + (field(delta, "partial_json") or "")

    def attributes(self) -> dict[str, Any]:
        return message_attributes({**self._message, "usage": self._usage or None}, self._capture)
