"""SQL that turns a file of length-delimited OTLP trace requests into one row per GenAI span of a convention.

A value is read as OTLP's AnyValue reads in Python (`otlp_values.as_str`, `as_count`): the string if set,
else the integer, else the double, else the boolean; token counts from the integer or a numeric string.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from google.protobuf.internal.encoder import _VarintBytes  # the varint OTLP's own length prefix uses

from ..conventions.base import TOKEN_FIELDS, Convention, Field

__all__ = ["SCHEMA_FILE", "STRUCTURE", "decode_sql", "length_delimited"]

SCHEMA_FILE = Path(__file__).with_name("otlp_traces.proto")
"""ClickHouse's `format_schema`: `f"{SCHEMA_FILE}:ExportTraceServiceRequest"`."""

_SCALAR = "Tuple(string_value String, bool_value Bool, int_value Int64, double_value Float64)"
_VALUE = (
    "Tuple(string_value String, bool_value Bool, int_value Int64, double_value Float64, "
    f"array_value Tuple(values Array({_SCALAR})))"
)
_ATTRIBUTES = f"Array(Tuple(key String, value {_VALUE}))"
STRUCTURE = (
    f"resource_spans Array(Tuple(resource Tuple(attributes {_ATTRIBUTES}), "
    "scope_spans Array(Tuple(scope Tuple(name String, version String), spans Array(Tuple("
    "trace_id String, span_id String, parent_span_id String, name String, start_time_unix_nano UInt64, "
    f"end_time_unix_nano UInt64, attributes {_ATTRIBUTES}, status Tuple(message String, code Int32)))))))"
)
"""The columns ClickHouse reads each request into, matching `otlp_traces.proto`."""


def length_delimited(bodies: Iterable[bytes]) -> bytes:
    """Requests as ClickHouse's `Protobuf` format reads many messages: each prefixed by its varint length."""
    return b"".join(_VarintBytes(len(body)) + body for body in bodies)


def _text(value: str) -> str:
    return (
        f"multiIf(tupleElement({value}, 'string_value') != '', tupleElement({value}, 'string_value'), "
        f"tupleElement({value}, 'int_value') != 0, toString(tupleElement({value}, 'int_value')), "
        f"tupleElement({value}, 'double_value') != 0, toString(tupleElement({value}, 'double_value')), "
        f"tupleElement({value}, 'bool_value'), 'true', '')"
    )


def _count(value: str) -> str:
    return (
        f"if(tupleElement({value}, 'int_value') != 0, tupleElement({value}, 'int_value'), "
        f"toInt64OrZero(tupleElement({value}, 'string_value')))"
    )


def _texts(value: str) -> str:
    array = f"tupleElement(tupleElement({value}, 'array_value'), 'values')"
    return (
        f"if(notEmpty({array}), arrayMap(x -> tupleElement(x, 'string_value'), {array}), "
        f"if(tupleElement({value}, 'string_value') != '', [tupleElement({value}, 'string_value')], []))"
    )


def _quoted(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _field(field: Field, names: tuple[str, ...]) -> str:
    """The first of `names` the span carries, read as the field's kind ('', 0 or [] when none)."""
    read = _count if field in TOKEN_FIELDS else _texts if field is Field.FINISH_REASONS else _text
    default = "0" if field in TOKEN_FIELDS else "[]" if field is Field.FINISH_REASONS else "''"
    branches = [f"mapContains(a, {_quoted(n)}), {read(f'a[{_quoted(n)}]')}" for n in names if "#" not in n]
    return f"multiIf({', '.join(branches)}, {default})" if branches else default


def decode_sql(convention: Convention) -> str:
    """A SELECT over `file({path:String}, 'Protobuf', STRUCTURE)`: span ids, times, scope, status and every
    field the convention names, for the spans carrying one of its markers. Run it with the setting
    `format_schema` = `f"{SCHEMA_FILE}:ExportTraceServiceRequest"`."""
    fields = ",\n  ".join(f"{_field(field, names)} AS {field.value}" for field, names in convention.fields.items())
    markers = ", ".join(_quoted(m) for m in convention.markers)
    return f"""SELECT
  lower(hex(tupleElement(span, 'trace_id'))) AS trace_id,
  lower(hex(tupleElement(span, 'span_id'))) AS span_id,
  lower(hex(tupleElement(span, 'parent_span_id'))) AS parent_span_id,
  tupleElement(span, 'start_time_unix_nano') AS timestamp,
  tupleElement(span, 'end_time_unix_nano') - tupleElement(span, 'start_time_unix_nano') AS duration_ns,
  tupleElement(tupleElement(scope_spans, 'scope'), 'name') AS scope_name,
  tupleElement(tupleElement(span, 'status'), 'code') AS status_code,
  {fields}
FROM file({{path:String}}, 'Protobuf', {_quoted(STRUCTURE)})
ARRAY JOIN resource_spans AS resource_spans_
ARRAY JOIN tupleElement(resource_spans_, 'scope_spans') AS scope_spans
ARRAY JOIN tupleElement(scope_spans, 'spans') AS span
LEFT ARRAY JOIN [mapFromArrays(
  arrayMap(x -> tupleElement(x, 'key'), tupleElement(span, 'attributes')),
  arrayMap(x -> tupleElement(x, 'value'), tupleElement(span, 'attributes')))] AS a
WHERE hasAny(mapKeys(a), [{markers}])"""
