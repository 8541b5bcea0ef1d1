"""SQL building blocks: OTLP AnyValue read as `otlp_values` reads it, and quoting of the tables' names.

Every value the reader takes from a convention table reaches SQL through `literal` (or `literals`), and every
alias through `identifier`: nothing a sender wrote is ever spliced into the text, it is read from the file.
An expression here reads a value exactly like Python or is paired with a check (`readable`, `count_ok`,
`list_ok`) saying when it does not; the reader sends such requests to the Python reader.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "as_count",
    "as_str",
    "as_str_list",
    "as_text",
    "count_ok",
    "cut",
    "identifier",
    "list_ok",
    "literal",
    "literals",
    "readable",
]

KINDS = ("string_value", "bool_value", "int_value", "double_value", "array_value", "kvlist_value", "bytes_value")
"""AnyValue's oneof members by field number (1..7); 0 is a value with none set."""
_KIND = "Enum8('none' = 0, " + ", ".join(f"'{kind}' = {n}" for n, kind in enumerate(KINDS, 1)) + ")"
_SCALARS = "string_value String, bool_value Bool, int_value Int64, double_value Float64, bytes_value String"
SCALAR = f"Tuple(kind {_KIND}, {_SCALARS}, array_value Tuple(values Array(Tuple(kind {_KIND}))))"
"""An array's element: its own array is read only as far as telling that it is one (not read)."""
VALUE = f"Tuple(kind {_KIND}, {_SCALARS}, array_value Tuple(values Array({SCALAR})))"
"""An AnyValue as read with `input_format_protobuf_oneof_presence`: `kind` names the member set."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JSON_UNSAFE = r"[\x00-\x1f\"\\]"
"""Characters json.dumps escapes in a string: elements holding one are not spelled by the engine."""
_WS = "[ \\t\\n\\r]*"
_JSON_STRING = '"[^"\\\\\\x00-\\x1f]*"'
_JSON_ITEM = '"([^"\\\\\\x00-\\x1f]*)"'
SIMPLE_JSON_LIST = f"^\\[{_WS}({_JSON_STRING}({_WS},{_WS}{_JSON_STRING})*)?{_WS}\\]{_WS}$"
"""A JSON array of strings without escapes: json.loads gives the strings between the quotes as they are."""


def literal(value: str | int) -> str:
    """A string or integer from a convention table as a ClickHouse literal. A semicolon is written as its escape:
    the client (clickhouse-connect) runs its Python SQL lexer over the whole query text when one is in it (~27 ms
    for the engine's query, 0.5 µs a span of a 50,000-span batch, far more a span of small batches)."""
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace(";", "\\x3B") + "'"


def literals(values: Iterable[str | int]) -> str:
    return "[" + ", ".join(literal(value) for value in values) + "]"


def identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not an identifier: {name!r}")
    return name


def _get(value: str, member: str) -> str:
    return f"tupleElement({value}, {literal(member)})"


def _is(value: str, kind: str) -> str:
    return f"{_get(value, 'kind')} = {literal(kind)}"


def cut(text: str, limit: int = 1024) -> str:
    """Python's `text[:limit]`: characters, not bytes."""
    return f"substringUTF8({text}, 1, {limit})"


def _double(number: str) -> str:
    """repr(float) for the doubles `_double_ok` accepts: ClickHouse prints the same shortest digits, without
    Python's `.0` on whole numbers."""
    return f"if({number} = trunc({number}), concat(toString({number}), '.0'), toString({number}))"


def _double_ok(number: str) -> str:
    """Doubles printed without an exponent by Python (and finite): those `_double` spells exactly."""
    return f"(isFinite({number}) AND ({number} = 0 OR (abs({number}) >= 1e-4 AND abs({number}) < 1e16)))"


def _scalar(value: str) -> str:
    """as_str of a string, bool, int, double or empty value."""
    return (
        f"multiIf({_is(value, 'string_value')}, {_get(value, 'string_value')}, "
        f"{_is(value, 'bool_value')}, if({_get(value, 'bool_value')}, 'true', 'false'), "
        f"{_is(value, 'int_value')}, toString({_get(value, 'int_value')}), "
        f"{_is(value, 'double_value')}, {_double(_get(value, 'double_value'))}, '')"
    )


def _json(element: str) -> str:
    """An array element as json.dumps writes it (strings without characters to escape)."""
    return (
        f"multiIf({_is(element, 'string_value')}, concat('\"', {_get(element, 'string_value')}, '\"'), "
        f"{_get(element, 'kind')} = 'none', 'null', {_scalar(element)})"
    )


def _array(value: str) -> str:
    return _get(_get(value, "array_value"), "values")


def as_str(value: str) -> str:
    """otlp_values.as_str: scalars as text, arrays as compact JSON."""
    return (
        f"if({_is(value, 'array_value')}, "
        f"concat('[', arrayStringConcat(arrayMap(e -> {_json('e')}, {_array(value)}), ','), ']'), {_scalar(value)})"
    )


def as_text(value: str, string: str) -> str:
    """otlp_values.as_text, given the value's `as_str`: a one-element array reads as its element; at most 1024
    characters."""
    return cut(
        f"if({_is(value, 'array_value')} AND length({_array(value)}) = 1, {_scalar(f'{_array(value)}[1]')}, {string})"
    )


def _scalar_ok(value: str, string_ok: str) -> str:
    """A scalar spelled exactly: strings when `string_ok`, doubles printed without an exponent, ints, bools."""
    kind = _get(value, "kind")
    return (
        f"multiIf({kind} = 'string_value', {string_ok}, "
        f"{kind} = 'double_value', {_double_ok(_get(value, 'double_value'))}, "
        f"{kind} IN ('none', 'bool_value', 'int_value'), 1, 0)"
    )


def readable(value: str) -> str:
    """Whether `as_str`/`as_text` spell the value as Python does: no map, bytes or nested array, no double Python
    would print with an exponent, no array string json.dumps would escape."""
    element = _scalar_ok("e", f"NOT match({_get('e', 'string_value')}, {literal(_JSON_UNSAFE)})")
    return f"if({_is(value, 'array_value')}, arrayAll(e -> {element}, {_array(value)}), {_scalar_ok(value, '1')})"


def as_count(value: str) -> str:
    """otlp_values.as_count for the values `count_ok` accepts, as Int128 (sums cannot overflow); 0 for others
    (NaN, infinities and huge doubles included: no integer holds them)."""
    double = _get(value, "double_value")
    return (
        f"toInt128(multiIf({_is(value, 'int_value')}, {_get(value, 'int_value')}, "
        f"{_is(value, 'double_value')}, toInt64(if(abs({double}) < 1e18, {double}, 0)), "
        f"toInt64OrZero({_get(value, 'string_value')})))"
    )


def count_ok(value: str) -> str:
    """A count Python accepts and the engine reads the same (else the reference rejects it, or reads text the
    engine does not: spaces, 19+ digits)."""
    double = _get(value, "double_value")
    return (
        f"multiIf({_is(value, 'int_value')}, {_get(value, 'int_value')} >= 0, "
        f"{_is(value, 'double_value')}, {double} >= 0 AND {double} < 1e18 AND {double} = trunc({double}), "
        f"{_is(value, 'string_value')}, match({_get(value, 'string_value')}, '^[0-9]{{1,18}}$'), 0)"
    )


def as_str_list(value: str, string: str) -> str:
    """otlp_values.as_str_list, given the value's `as_str`: an array's elements, a JSON array of plain strings,
    or one string."""
    text = _get(value, "string_value")
    items = (
        f"if({_is(value, 'array_value')}, arrayMap(e -> {_scalar('e')}, {_array(value)}), "
        f"if({_is(value, 'string_value')} AND startsWith({text}, '['), extractAll({text}, {literal(_JSON_ITEM)}), "
        f"if({string} = '', [], [{string}])))"
    )
    return f"arrayMap(x -> {cut('x')}, arraySlice({items}, 1, 64))"


def list_ok(value: str) -> str:
    """Text starting with `[` is read only when it is a JSON array of plain strings."""
    text = _get(value, "string_value")
    json_text = f"{_is(value, 'string_value')} AND startsWith({text}, '[')"
    return f"(NOT ({json_text}) OR match({text}, {literal(SIMPLE_JSON_LIST)}))"
