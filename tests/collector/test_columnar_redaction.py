"""`redact_map_column` against `Redactor.redact` value by value: every map value of `min_length` characters or
more redacted as `redact` redacts it, the others, the keys, the nulls and the map boundaries untouched."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from spanmeter.privacy import Redactor
from spanmeter.processors.columnar_redaction import redact_map_column
from spanmeter.processors.genai import ATTRIBUTE_REDACTION_LENGTH

MAP = pa.map_(pa.string(), pa.string())
SECRETS = [
    "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
    "Authorization: Bearer abc.def-123456789012345",
    "contact me at jane.doe@example.com please",
    "card 4111 1111 1111 1111 ok",
    "postgres://user:hunter2@db:5432/x",
    "api_key=abcdef123456 and more",
    "AKIAABCDEFGHIJKLMNOP",
    "ghp_" + "a" * 36,
    "nothing secret in this long value",
    "short",
    "é" * 19 + "x",  # 20 characters, more bytes
    "",
]
values = st.one_of(st.sampled_from(SECRETS), st.text(max_size=40))
maps = st.lists(st.one_of(st.none(), st.dictionaries(st.text(max_size=5), values, max_size=4)), max_size=20)
REDACTORS = [
    Redactor(),
    Redactor([("ticket", r"TICKET-\d+", None), ("upper", r"[A-Z]{3}", "***")]),
    Redactor(disabled=["email", "openai_api_key"]),
    Redactor(builtin=False),
]


@settings(max_examples=300, deadline=None)
@given(
    rows=maps,
    which=st.integers(0, len(REDACTORS) - 1),
    min_length=st.sampled_from([0, 5, ATTRIBUTE_REDACTION_LENGTH]),
    start=st.integers(0, 3),
    chunked=st.booleans(),
)
def test_redact_map_column_equals_redact_value_by_value(rows, which, min_length, start, chunked) -> None:
    redactor = REDACTORS[which]
    array = pa.array([None if row is None else list(row.items()) for row in rows], MAP).slice(start)
    column = pa.chunked_array([array.slice(0, 2), array.slice(2)], MAP) if chunked else array
    expected = [
        None if row is None else [(k, redactor.redact(v) if len(v) >= min_length else v) for k, v in row.items()]
        for row in rows[start:]
    ]
    result = redact_map_column(column, redactor, min_length)
    assert result.type == MAP
    assert result.to_pylist() == expected
    assert result.is_null().to_pylist() == [row is None for row in rows[start:]]


def test_secrets_are_redacted_once_per_distinct_value() -> None:
    calls = []

    class Counting(Redactor):
        def redact(self, text: str) -> str:
            calls.append(text)
            return super().redact(text)

    column = pa.array([[("k", SECRETS[0]), ("s", "short")]] * 100 + [[("k", SECRETS[2])]], MAP)
    result = redact_map_column(column, Counting(), ATTRIBUTE_REDACTION_LENGTH)
    assert sorted(calls) == sorted([SECRETS[0], SECRETS[2]])
    assert result.to_pylist()[0] == [("k", "[REDACTED:openai_api_key]"), ("s", "short")]


def test_chunks_where_nothing_changes_are_kept_without_a_copy() -> None:
    """The engine's maps come in many chunks; one holding no value the rules change (a resource's instance id, long
    but not secret, on every row) is handed back as it is, the others rebuilt."""
    clean = pa.array([[("service.instance.id", "5addd5e9-f0ef-4fc4-b817-b70ec030d248"), ("s", "short")]] * 3, MAP)
    secret = pa.array([[("k", SECRETS[0])], [("k", SECRETS[8])]], MAP)
    column = pa.chunked_array([clean, secret, clean.slice(1)], MAP)
    result = redact_map_column(column, Redactor(), ATTRIBUTE_REDACTION_LENGTH)
    assert isinstance(result, pa.ChunkedArray)
    assert result.chunks[0].items.buffers()[2].address == clean.items.buffers()[2].address  # the same values
    assert result.chunks[1].to_pylist() == [[("k", "[REDACTED:openai_api_key]")], [("k", SECRETS[8])]]
    assert result.chunks[2].to_pylist() == clean.slice(1).to_pylist()
