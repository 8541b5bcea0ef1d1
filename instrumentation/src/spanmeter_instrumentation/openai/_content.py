"""OpenAI messages in the GenAI conventions' message format (only used when capture is on)."""

from __future__ import annotations

from typing import Any

from .._content import message, text_part, tool_call_part, tool_response_part
from .._genai import field


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for part in content or []:
        kind = field(part, "type")
        if kind in ("text", "input_text", "output_text"):
            parts.append(text_part(field(part, "text")))
        elif kind is not None:
            parts.append({"type": str(kind)})
    return parts


def chat_input(messages: Any) -> list[dict[str, Any]]:
    result = []
    for item in messages or []:
        role = str(field(item, "role") or "user")
        if role == "tool":
            result.append(message("tool", [tool_response_part(field(item, "tool_call_id"), field(item, "content"))]))
            continue
        parts = _content_parts(field(item, "content"))
        for tool_call in field(item, "tool_calls") or []:
            function = field(tool_call, "function")
            parts.append(tool_call_part(field(tool_call, "id"), field(function, "name"), field(function, "arguments")))
        result.append(message(role, parts))
    return result


def chat_choice_output(choice: Any) -> dict[str, Any]:
    msg = field(choice, "message")
    parts = _content_parts(field(msg, "content")) if field(msg, "content") else []
    for tool_call in field(msg, "tool_calls") or []:
        function = field(tool_call, "function")
        parts.append(tool_call_part(field(tool_call, "id"), field(function, "name"), field(function, "arguments")))
    return message("assistant", parts, field(choice, "finish_reason"))


def responses_input(input_: Any) -> list[dict[str, Any]]:
    if isinstance(input_, str):
        return [message("user", [text_part(input_)])]
    result = []
    for item in input_ or []:
        kind = field(item, "type")
        if kind == "function_call_output":
            result.append(message("tool", [tool_response_part(field(item, "call_id"), field(item, "output"))]))
        elif kind == "function_call":
            call = tool_call_part(field(item, "call_id"), field(item, "name"), field(item, "arguments"))
            result.append(message("assistant", [call]))
        elif field(item, "role"):
            result.append(message(str(field(item, "role")), _content_parts(field(item, "content"))))
    return result


def responses_output(response: Any, finish_reason: str | None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for item in field(response, "output") or []:
        kind = field(item, "type")
        if kind == "message":
            parts.extend(_content_parts(field(item, "content")))
        elif kind == "function_call":
            parts.append(tool_call_part(field(item, "call_id"), field(item, "name"), field(item, "arguments")))
    return [message("assistant", parts, finish_reason)] if parts else []
