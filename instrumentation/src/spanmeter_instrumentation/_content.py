"""Message content capture, off by default.

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` takes the values of
opentelemetry-util-genai: ``SPAN_ONLY`` and ``SPAN_AND_EVENT`` put content on the span
(``gen_ai.input.messages``, ``gen_ai.system_instructions``, ``gen_ai.output.messages``);
``NO_CONTENT`` and ``EVENT_ONLY`` keep it off the span (we emit no events). The older
boolean ``true`` also captures, as the first GenAI instrumentations read it.

The prompt prefix hash (``spanmeter.prompt.prefix_hash``) lets spanmeter see repeated prompts without storing
them: an HMAC-SHA256 of the system instructions and every input message but the last, keyed by a per-deployment
salt. It is on with content capture, else only when ``SPANMETER_PROMPT_PREFIX_HASH`` enables it: a short prompt
could be found again by hashing guesses with the salt, so whoever holds the salt and the spans must be trusted
with prompts, as with capture.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Callable
from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
PREFIX_HASH_ENV = "SPANMETER_PROMPT_PREFIX_HASH"
PREFIX_SALT_ENV = "SPANMETER_PROMPT_PREFIX_SALT"
PREFIX_HASH_ATTRIBUTE = "spanmeter.prompt.prefix_hash"
_SPAN_MODES = frozenset({"span_only", "span_and_event", "true"})
_ON = frozenset({"true", "1", "yes", "on"})
_OFF = frozenset({"false", "0", "no", "off"})
_PROCESS_SALT = secrets.token_bytes(32)
"""The salt when SPANMETER_PROMPT_PREFIX_SALT is unset: repeats are then seen within one process only."""
_logger = logging.getLogger(__name__)
_warned_salt = False


def capture_enabled() -> bool:
    """Read per call, so a process can switch capture without re-instrumenting."""
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in _SPAN_MODES


def prefix_hash_enabled(capture: bool) -> bool:
    """SPANMETER_PROMPT_PREFIX_HASH `true`/`false` decides; unset, the hash goes with content capture."""
    value = os.environ.get(PREFIX_HASH_ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    return capture


def prefix_hash(messages: list[dict[str, Any]] | None, system: list[dict[str, Any]] | None = None) -> str | None:
    """The salted hash of a request's prefix: its system instructions and its input messages but the last (the
    one message when that is all there is), in the conventions' message format; None for an empty request."""
    messages, system = messages or [], system or []
    prefix = {"system": system, "messages": messages[:-1] if system or len(messages) > 1 else messages}
    if not prefix["system"] and not prefix["messages"]:
        return None
    digest = hmac.new(_salt(), to_json(prefix).encode(), hashlib.sha256).hexdigest()
    return digest[:32]  # 128 bits: no accidental collision among any store's prompts


def _salt() -> bytes:
    global _warned_salt
    salt = os.environ.get(PREFIX_SALT_ENV, "")
    if salt:
        return salt.encode()
    if not _warned_salt:
        _warned_salt = True
        _logger.info("%s is not set: prompt prefix hashes are salted per process", PREFIX_SALT_ENV)
    return _PROCESS_SALT


def request_content(
    capture: bool,
    messages: Callable[[], list[dict[str, Any]] | None],
    system: Callable[[], list[dict[str, Any]] | None] | None = None,
) -> dict[str, str]:
    """A request's content attributes (with capture) and prompt prefix hash (when enabled); the messages are
    converted only when one of them is wanted."""
    hashing = prefix_hash_enabled(capture)
    if not capture and not hashing:
        return {}
    converted, instructions = messages(), system() if system is not None else None
    attributes = input_attributes(converted, instructions) if capture else {}
    if hashing and (digest := prefix_hash(converted, instructions)) is not None:
        attributes[PREFIX_HASH_ATTRIBUTE] = digest
    return attributes


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
