"""An embedded store's inserts written as Native files (native.py, _native.c) store exactly what the driver's own
Arrow insert stores: every column type of genai_spans, chunked and sliced tables, dictionaries of every index
width; what the module cannot write exactly goes as Arrow."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanmeter import native
from spanmeter.exporters.clickhouse import ARROW_SCHEMA
from spanmeter.store import InsertSpool, apply_schema, insert_arrow

pytestmark = pytest.mark.skipif(not native.available(), reason="spanmeter._native is not built (no C compiler)")

TEXT = st.text(st.characters(codec="utf-8"), max_size=6) | st.sampled_from(["", "x" * 200, "é" * 9000])
"""Short texts, and lengths whose varint takes 2 and 3 bytes."""


@pytest.fixture(scope="module")
def tables(store: Client) -> Iterator[tuple[str, str]]:
    """Two tables shaped as genai_spans (no views): one filled by the driver, one through a spool."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    apply_schema(store, database)
    for name in ("by_driver", "by_spool"):
        store.command(f"CREATE TABLE {database}.{name} AS {database}.genai_spans")
    yield f"{database}.by_driver", f"{database}.by_spool"
    store.command(f"DROP DATABASE {database}")


def stored(store: Client, table: str) -> list[str]:
    columns = ", ".join(name for name in ARROW_SCHEMA.names) + ", sample_weight, prompt_prefix_hash"
    return sorted(repr(row) for row in store.query(f"SELECT {columns} FROM {table}").result_rows)


def insert_both(store: Client, tables: tuple[str, str], rows: pa.Table, spool: InsertSpool) -> None:
    by_driver, by_spool = tables
    for table in tables:
        store.command(f"TRUNCATE TABLE {table}")
    store.insert_arrow(by_driver, rows)
    insert_arrow(store, by_spool, rows, {}, spool)


@st.composite
def span_rows(draw: st.DrawFn) -> pa.Table:
    """Rows of ARROW_SCHEMA's types, any values the columns hold, cut into chunks and slices as concatenated
    batches are."""
    count = draw(st.integers(1, 12))
    rows = []
    for _ in range(count):
        row: dict[str, Any] = {}
        for field in ARROW_SCHEMA:
            kind = field.type
            if pa.types.is_string(kind):
                row[field.name] = draw(TEXT)
            elif pa.types.is_uint64(kind):
                row[field.name] = draw(st.integers(0, 2**64 - 1))
            elif pa.types.is_timestamp(kind):
                row[field.name] = draw(st.integers(0, 2**62))
            elif pa.types.is_decimal(kind):
                unscaled = draw(st.integers(-(10**18) + 1, 10**18 - 1))
                row[field.name] = Decimal(unscaled).scaleb(-kind.scale)
            elif pa.types.is_map(kind):
                row[field.name] = draw(st.dictionaries(TEXT, TEXT, max_size=4))
            elif pa.types.is_list(kind):
                row[field.name] = draw(st.lists(TEXT, max_size=3))
            else:
                raise AssertionError(f"no values drawn for {field}")
        rows.append(row)
    columns = {name: [row[name] for row in rows] for name in ARROW_SCHEMA.names}
    columns["timestamp"] = pa.array(columns["timestamp"], pa.int64()).cast(ARROW_SCHEMA.field("timestamp").type)
    table = pa.table(columns, schema=ARROW_SCHEMA)
    cuts = sorted(draw(st.lists(st.integers(0, count), max_size=3)))
    pieces = [table.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, count], strict=True)]
    return pa.concat_tables(pieces)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=span_rows())
def test_a_native_insert_stores_what_the_driver_stores(
    store: Client, tables: tuple[str, str], tmp_path: Path, rows: pa.Table
) -> None:
    spool = InsertSpool(tmp_path)
    insert_both(store, tables, rows, spool)
    assert (tmp_path / f"insert-{threading.get_ident()}.native").exists()
    assert not (tmp_path / f"insert-{threading.get_ident()}.arrow").exists()
    assert stored(store, tables[1]) == stored(store, tables[0])


@pytest.mark.parametrize("distinct", [300, 80_000])
def test_wider_dictionaries(store: Client, tables: tuple[str, str], tmp_path: Path, distinct: int) -> None:
    """More than 256 (UInt16 indexes) and 65,536 (UInt32) distinct values of a LowCardinality column and of map
    keys; the empty string among them, not first (the dictionary's default goes first)."""
    count = 80_000
    names = [f"v{i % distinct}" if i % 7 else "" for i in range(count)]
    rows = _zeros_table(count)
    for name, column in (
        ("project", pa.array(names)),
        ("span_id", pa.array([str(i) for i in range(count)])),
        ("tags", pa.array([{name: "t"} for name in names], pa.map_(pa.string(), pa.string()))),
    ):
        rows = rows.set_column(rows.schema.get_field_index(name), name, column)
    insert_both(store, tables, rows, InsertSpool(tmp_path))
    assert (tmp_path / f"insert-{threading.get_ident()}.native").exists()
    assert stored(store, tables[1]) == stored(store, tables[0])
    assert store.query(f"SELECT uniqExact(project) FROM {tables[1]}").result_rows == [(len(set(names)),)]
    assert len(set(names)) > (256 if distinct < 65_536 else 65_536)


def _zeros(kind: pa.DataType, count: int) -> pa.Array:
    if pa.types.is_map(kind) or pa.types.is_list(kind):
        return pa.array([[]] * count, kind)
    if pa.types.is_timestamp(kind):
        return pa.array([0] * count, pa.int64()).cast(kind)
    if pa.types.is_string(kind):
        return pa.array([""] * count, kind)
    return pa.array([0] * count, kind)


def test_a_many_chunked_insert_is_one_block_and_one_part(
    store: Client, tables: tuple[str, str], tmp_path: Path
) -> None:
    """Chunks are written as one Native block: ClickHouse squashes an insert's blocks at a cost."""
    rows = pa.concat_tables(
        [_zeros_table(3).slice(1) for _ in range(20)]  # 20 chunks, each a slice with an offset
    )
    laid_out = native.parts(rows, native.table_types(store, tables[1]))
    assert laid_out is not None and laid_out[0] == bytes([len(ARROW_SCHEMA), 40])  # one block's header: 40 rows
    insert_both(store, tables, rows, InsertSpool(tmp_path))
    assert store.query(f"SELECT count(), uniqExact(_part) FROM {tables[1]}").result_rows == [(40, 1)]


def _zeros_table(count: int) -> pa.Table:
    return pa.table([_zeros(field.type, count) for field in ARROW_SCHEMA], schema=ARROW_SCHEMA)


def test_what_native_cannot_write_exactly_goes_as_arrow(store: Client, tables: tuple[str, str], tmp_path: Path) -> None:
    """A null (the driver's Arrow insert stores a default), a decimal of more digits than its precision, a column
    of a type the module does not know: written as Arrow, stored as the driver stores them."""
    types = native.table_types(store, tables[1])
    rows = _zeros_table(2)
    with_null = rows.set_column(1, "trace_id", pa.array(["a", None], pa.string()))
    wide = pc.cast(pa.array([Decimal("9000000"), Decimal(0)], pa.decimal128(38, 12)), pa.decimal128(18, 12), safe=False)
    too_wide = rows.set_column(rows.schema.get_field_index("total_cost"), "total_cost", wide)
    unknown = rows.set_column(1, "trace_id", pa.array([1, 2], pa.int8()))  # Int8 into a String column
    spool = InsertSpool(tmp_path)
    for case in (with_null, too_wide, unknown):
        assert native.parts(case, types) is None
        arrow_file = tmp_path / f"insert-{threading.get_ident()}.arrow"
        arrow_file.unlink(missing_ok=True)
        outcomes = []
        for table in tables:
            store.command(f"TRUNCATE TABLE {table}")
        for by_spool in (False, True):
            try:
                if by_spool:
                    insert_arrow(store, tables[1], case, {}, spool)
                else:
                    store.insert_arrow(tables[0], case)
                outcomes.append("stored")
            except Exception as exc:
                outcomes.append(type(exc).__name__)
        assert outcomes[0] == outcomes[1]
        assert arrow_file.exists()
        assert stored(store, tables[1]) == stored(store, tables[0])


def test_the_file_is_what_clickhouse_itself_writes(store: Client, tables: tuple[str, str], tmp_path: Path) -> None:
    """The same rows read back from the table as Native, byte for byte: the dictionaries ('' first, then in order
    of first use), their index width, the nested offsets, the decimals' words."""
    rows = _zeros_table(4)
    for name, values in (
        ("project", ["a", "b", "c", "d"]),  # the table's order
        ("provider", ["x", "", "y", "x"]),  # the default value second in order of use
        (
            "total_cost",
            pa.array(
                [Decimal("1.5"), Decimal("-0.000000000001"), Decimal(0), Decimal("999999")], pa.decimal128(18, 12)
            ),
        ),
        ("finish_reasons", [["stop"], [], ["", "length"], ["stop"]]),
        (
            "tags",
            pa.array(
                [{"k": "v", "": "e"}, {}, {"k2": "w"}, {"k": "é" * 200, "big": "x" * (2**20 + 3)}],
                pa.map_(pa.string(), pa.string()),
            ),
        ),
        ("timestamp", pa.array([3, 2, 1, 0], pa.int64()).cast(ARROW_SCHEMA.field("timestamp").type)),
    ):
        index = rows.schema.get_field_index(name)
        rows = rows.set_column(index, name, pa.array(values, ARROW_SCHEMA.field(name).type))
    store.command(f"TRUNCATE TABLE {tables[0]}")
    store.insert_arrow(tables[0], rows)
    assert native.write(tmp_path / "rows.native", rows, native.table_types(store, tables[0]))
    theirs = store.raw_query(f"SELECT {', '.join(ARROW_SCHEMA.names)} FROM {tables[0]} ORDER BY project", fmt="Native")
    assert (tmp_path / "rows.native").read_bytes() == theirs


def test_string_offsets_are_checked(tmp_path: Path) -> None:
    """The writer reads no byte outside the buffers it is given: offsets past their buffer, or pointing past the
    data, are refused (and `native.write` then leaves the rows to Arrow's writer)."""
    from spanmeter import _native

    offsets, data = pa.py_buffer(np.array([0, 2, 9], np.int32).tobytes()), pa.py_buffer(b"abcd")
    with pytest.raises(ValueError, match="past their offsets"):
        _native.write_file(str(tmp_path / "f"), [(offsets, data, 0, 3, 4)])
    with pytest.raises(ValueError, match="outside its data"):
        _native.write_file(str(tmp_path / "f"), [(offsets, data, 0, 2, 4)])
    assert _native.write_file(str(tmp_path / "f"), [b"\x01", (offsets, data, 0, 1, 4)]) == 4
    assert (tmp_path / "f").read_bytes() == b"\x01\x02ab"
