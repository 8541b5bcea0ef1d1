"""Reading OTLP ``AnyValue`` messages: only for the attributes a mapping asks for."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = [
    "MAX_LIST_LENGTH",
    "MAX_TEXT_LENGTH",
    "InvalidValue",
    "as_count",
    "as_str",
    "as_str_list",
    "as_text",
    "preview",
    "python_count",
    "to_python",
    "valid_text",
]

MAX_TEXT_LENGTH = 1024
"""Characters kept of a value read into a column (a model, a provider, a user id...): longer ones are cut."""
MAX_LIST_LENGTH = 64
"""Strings kept of a list read into a column (finish reasons: one per choice)."""
_MAX_DIGITS = 30
"""A token count written with more digits is not a count (and int() of thousands of digits is slow)."""


class InvalidValue(ValueError):
    """An attribute whose value cannot mean what its name says (a negative token count...)."""


def preview(value: object, limit: int = 80) -> str:
    """A value for an error message: its repr, cut short (a sender's value can be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def valid_text(text: str) -> str:
    """`text` as storable UTF-8: JSON and Python literals can spell lone surrogates (`"\\ud800"`),
    which no column can hold; they become `?`. Protobuf strings are checked by the parser already."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="replace").decode()
    return text


def to_python(value: AnyValue) -> Any:
    """An AnyValue as Python. Recursion is bounded: the protobuf parser refuses messages nested
    deeper than upb's limit (100), so an AnyValue tree is at most ~50 levels deep."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [to_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: to_python(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def as_str(value: AnyValue) -> str:
    """A scalar as a column string; arrays and maps as JSON."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind in ("int_value", "double_value"):
        return str(getattr(value, kind))
    if kind is None:
        return ""
    return json.dumps(to_python(value), separators=(",", ":"), ensure_ascii=False)


def as_text(value: AnyValue) -> str:
    """Like ``as_str`` but a one-element array reads as its element (e.g. a model sent as a list); a column
    value, so at most MAX_TEXT_LENGTH characters."""
    kind = value.WhichOneof("value")
    if kind == "string_value":  # the usual case, read here rather than through as_str: per field of every span
        text = value.string_value
    elif kind == "array_value" and len(value.array_value.values) == 1:
        text = as_str(value.array_value.values[0])
    else:
        text = as_str(value)
    return text if len(text) <= MAX_TEXT_LENGTH else text[:MAX_TEXT_LENGTH]


def as_str_list(value: AnyValue) -> list[str]:
    """A list of labels (an array, a JSON array's text, or one string): at most MAX_LIST_LENGTH of them,
    each at most MAX_TEXT_LENGTH characters."""
    items = _str_list(value)
    if len(items) > MAX_LIST_LENGTH or sum(map(len, items)) > MAX_TEXT_LENGTH:
        return [text if len(text) <= MAX_TEXT_LENGTH else text[:MAX_TEXT_LENGTH] for text in items[:MAX_LIST_LENGTH]]
    return items


def _str_list(value: AnyValue) -> list[str]:
    if value.WhichOneof("value") == "array_value":
        return [as_str(v) for v in value.array_value.values]
    text = as_str(value)
    if text.startswith("["):
        try:
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return [valid_text(v if isinstance(v, str) else str(v)) for v in parsed]
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
            return [text]
    return [text] if text else []


def as_count(value: AnyValue) -> int:
    """A token count: a non-negative whole number, sent as int, integral double or decimal string."""
    kind = value.WhichOneof("value")
    if kind not in ("int_value", "double_value", "string_value"):
        raise InvalidValue(f"expected a number, got {kind or 'an empty value'}")
    return python_count(getattr(value, kind))


def python_count(value: object) -> int:
    """The same rules for a value already in Python (e.g. read from a JSON attribute)."""
    if isinstance(value, bool):
        raise InvalidValue(f"expected a number, got {value!r}")
    if isinstance(value, int):
        count = value
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise InvalidValue(f"{value!r} is not a whole number")
        count = int(value)
    elif isinstance(value, str):
        text = value.strip()
        digits = text.removeprefix("-")
        # ASCII only: str.isdigit() accepts other scripts' digits and superscripts, which int() refuses.
        if not (digits.isascii() and digits.isdigit()):
            raise InvalidValue(f"{preview(value)} is not a number")
        if len(digits) > _MAX_DIGITS:
            raise InvalidValue(f"{preview(value)} has more than {_MAX_DIGITS} digits")
        count = int(text)
    else:
        raise InvalidValue(f"expected a number, got {type(value).__name__}")
    if count < 0:
        raise InvalidValue(f"{count} is negative")
    return count
