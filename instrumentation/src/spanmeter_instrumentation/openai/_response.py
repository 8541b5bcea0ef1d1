"""Reading OpenAI responses and stream items into span attributes."""

from __future__ import annotations

from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

from .._content import output_attributes
from .._genai import Usage, as_int, field
from ._content import chat_choice_output, responses_output


def chat_usage(usage: Any) -> Usage:
    """Chat Completions: ``prompt_tokens`` already includes ``cached_tokens`` (OTel's meaning)."""
    return Usage(
        input_tokens=as_int(field(usage, "prompt_tokens")),
        output_tokens=as_int(field(usage, "completion_tokens")),
        cache_read_input_tokens=as_int(field(field(usage, "prompt_tokens_details"), "cached_tokens")),
        reasoning_output_tokens=as_int(field(field(usage, "completion_tokens_details"), "reasoning_tokens")),
    )


def responses_usage(usage: Any) -> Usage:
    """Responses API: ``input_tokens`` includes ``cached_tokens``; output includes reasoning."""
    return Usage(
        input_tokens=as_int(field(usage, "input_tokens")),
        output_tokens=as_int(field(usage, "output_tokens")),
        cache_read_input_tokens=as_int(field(field(usage, "input_tokens_details"), "cached_tokens")),
        reasoning_output_tokens=as_int(field(field(usage, "output_tokens_details"), "reasoning_tokens")),
    )


def _common(obj: Any) -> dict[str, Any]:
    return {
        ga.GEN_AI_RESPONSE_ID: field(obj, "id"),
        ga.GEN_AI_RESPONSE_MODEL: field(obj, "model"),
        ga.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER: field(obj, "service_tier"),
    }


def chat_attributes(completion: Any, capture: bool) -> dict[str, Any]:
    choices = field(completion, "choices") or []
    attributes = {
        **_common(completion),
        ga.GEN_AI_OPENAI_RESPONSE_SYSTEM_FINGERPRINT: field(completion, "system_fingerprint"),
        ga.GEN_AI_RESPONSE_FINISH_REASONS: [
            str(field(c, "finish_reason")) for c in choices if field(c, "finish_reason")
        ]
        or None,
        **chat_usage(field(completion, "usage")).attributes(),
    }
    if capture:
        attributes.update(output_attributes([chat_choice_output(choice) for choice in choices]))
    return attributes


def responses_finish_reason(response: Any) -> str | None:
    """Maps a Response's status onto the conventions' finish reasons."""
    status = field(response, "status")
    if status == "completed":
        outputs = field(response, "output") or []
        return "tool_call" if any(field(item, "type") == "function_call" for item in outputs) else "stop"
    if status == "incomplete":
        reason = field(field(response, "incomplete_details"), "reason")
        return "length" if reason == "max_output_tokens" else str(reason or "incomplete")
    return "error" if status == "failed" else status


def responses_attributes(response: Any, capture: bool) -> dict[str, Any]:
    finish = responses_finish_reason(response)
    attributes = {
        **_common(response),
        ga.GEN_AI_RESPONSE_FINISH_REASONS: [finish] if finish else None,
        **responses_usage(field(response, "usage")).attributes(),
    }
    if capture:
        attributes.update(output_attributes(responses_output(response, finish)))
    return attributes


def embeddings_attributes(result: Any) -> dict[str, Any]:
    usage = field(result, "usage")
    return {
        ga.GEN_AI_RESPONSE_MODEL: field(result, "model"),
        **Usage(input_tokens=as_int(field(usage, "prompt_tokens"))).attributes(),
    }


def is_usage_only_chunk(chunk: Any) -> bool:
    """The extra final chunk that ``include_usage`` adds: no choices, only usage."""
    return not field(chunk, "choices") and field(chunk, "usage") is not None


class ChatStreamObserver:
    """Rebuilds the completion's facts from ``chat.completion.chunk`` items."""

    def __init__(self, capture: bool) -> None:
        self._capture = capture
        self._first: Any = None
        self._usage: Any = None
        self._finish: dict[int, str] = {}
        self._text: dict[int, list[str]] = {}
        self._tools: dict[int, dict[int, dict[str, Any]]] = {}

    def on_item(self, chunk: Any) -> None:
        if self._first is None:
            self._first = chunk
        if field(chunk, "usage") is not None:
            self._usage = field(chunk, "usage")
        for choice in field(chunk, "choices") or []:
            index = field(choice, "index") or 0
            if field(choice, "finish_reason"):
                self._finish[index] = str(field(choice, "finish_reason"))
            if self._capture:
                self._accumulate(index, field(choice, "delta"))

    def _accumulate(self, index: int, delta: Any) -> None:
        if field(delta, "content"):
            self._text.setdefault(index, []).append(field(delta, "content"))
        for call in field(delta, "tool_calls") or []:
            slot = self._tools.setdefault(index, {}).setdefault(field(call, "index") or 0, {"arguments": ""})
            function = field(call, "function")
            for key, value in (("id", field(call, "id")), ("name", field(function, "name"))):
                if value:
                    slot[key] = value
            slot["arguments"] += field(function, "arguments") or ""

    def attributes(self) -> dict[str, Any]:
        attributes = {
            **(_common(self._first) if self._first is not None else {}),
            ga.GEN_AI_OPENAI_RESPONSE_SYSTEM_FINGERPRINT: field(self._first, "system_fingerprint"),
            ga.GEN_AI_RESPONSE_FINISH_REASONS: [self._finish[i] for i in sorted(self._finish)] or None,
            **chat_usage(self._usage).attributes(),
        }
        if self._capture:
            indexes = sorted(set(self._text) | set(self._tools) | set(self._finish))
            choices = [
                {
                    "finish_reason": self._finish.get(i),
                    "message": {
                        "content": "".join(self._text.get(i, [])),
                        "tool_calls": [
                            {"id": t.get("id"), "function": {"name": t.get("name"), "arguments": t["arguments"]}}
                            for _, t in sorted(self._tools.get(i, {}).items())
                        ],
                    },
                }
                for i in indexes
            ]
            attributes.update(output_attributes([chat_choice_output(choice) for choice in choices]))
        return attributes


class ResponsesStreamObserver:
    """Responses API streams end with a ``response.completed`` (or failed/incomplete) event."""

    def __init__(self, capture: bool) -> None:
        self._capture = capture
        self._response: Any = None

    def on_item(self, event: Any) -> None:
        response = field(event, "response")
        if response is not None:
            self._response = response

    def attributes(self) -> dict[str, Any]:
        return responses_attributes(self._response, self._capture) if self._response is not None else {}
