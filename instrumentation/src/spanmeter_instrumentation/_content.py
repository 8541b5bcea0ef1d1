"""Message content capture, off by default.

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` takes the values of
opentelemetry-util-genai: ``SPAN_ONLY`` and ``SPAN_AND_EVENT`` put content on the span
(``gen_ai.input.messages``, ``gen_ai.system_instructions``, ``gen_ai.output.messages``);
``NO_CONTENT`` and ``EVENT_ONLY`` keep it off the span (we emit no events). The older
boolean ``true`` also captures, as the first GenAI instrumentations read it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_SPAN_MODES = frozenset({"span_only", "span_and_event", "true"})


def capture_enabled() -> bool:
    """Read per call, so a process can switch capture without re-instrumenting."""
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in _SPAN_MODES


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_default, separators=(",", ":"))


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def text_part(content: Any) -> dict[str, Any]:
    return {"type": "text", "content": content}


def tool_call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": _maybe_json(arguments)}


def tool_response_part(call_id: Any, response: Any) -> dict[str, Any]:
    return {"type": "tool_call_response", "id": call_id, "response": response}


def _maybe_json(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def message(role: str, parts: list[dict[str, Any]], finish_reason: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"role": role, "parts": parts}
    if finish_reason is not None:
        result["finish_reason"] = finish_reason
    return result


def input_attributes(
    messages: list[dict[str, Any]] | None, system: list[dict[str, Any]] | None = None
) -> dict[str, str]:
    attributes: dict[str, str] = {}
    if messages:
        attributes[ga.GEN_AI_INPUT_MESSAGES] = to_json(messages)
    if system:
        attributes[ga.GEN_AI_SYSTEM_INSTRUCTIONS] = to_json(system)
    return attributes


def output_attributes(messages: list[dict[str, Any]] | None) -> dict[str, str]:
    return {ga.GEN_AI_OUTPUT_MESSAGES: to_json(messages)} if messages else {}
