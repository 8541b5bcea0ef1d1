"""Arrow rows written as a ClickHouse `Native` file, for an embedded store's insert (store.insert_arrow).

ClickHouse reads an Arrow insert one value at a time into its own columns: each LowCardinality value is hashed
into a dictionary, each decimal narrowed. Native is its own layout, read with no conversion: an insert of 100,000
spans through every view took 3.4-3.7 µs of CPU a row instead of 4.3-4.6, writing the file included
(bench/README.md). So the rows are laid out here as Native
lays them out, from Arrow's buffers: fixed-width columns as they are, decimals as their 64-bit words, a
LowCardinality column as a dictionary Arrow computes and each value's index in it, a String column written by
`_native` (a varint length before each value). The column types are the table's own (`table_types`), so the
engine converts nothing. A column this module cannot write exactly as ClickHouse would read it from Arrow (a type
it does not know, a null, a decimal past its precision) makes `parts` return None, and the rows go as Arrow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from google.protobuf.internal.encoder import _VarintBytes  # LEB128, as Native's lengths and counts

try:
    from . import _native
except ImportError:  # built without a C compiler: inserts are read from Arrow files
    _native = None  # type: ignore[assignment]

__all__ = ["available", "parts", "table_types", "write"]

Part: TypeAlias = bytes | np.ndarray | pa.Buffer | tuple[pa.Buffer, pa.Buffer, int, int, int]
"""What `_native.write_file` takes: bytes written as they are, or an Arrow string array's (offsets, data, first,
count, offset width) written as a Native String column."""

_LOW_CARDINALITY_VERSION = np.uint64(1).tobytes()  # SharedDictionariesWithAdditionalKeys, before the column's data
_ADDITIONAL_KEYS = 0x600  # HasAdditionalKeysBit | NeedUpdateDictionary: the keys come with the block
_FIXED: dict[str, pa.DataType] = {  # laid out alike in both: little-endian values, one after another
    **{f"UInt{bits}": getattr(pa, f"uint{bits}")() for bits in (8, 16, 32, 64)},
    **{f"Int{bits}": getattr(pa, f"int{bits}")() for bits in (8, 16, 32, 64)},
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "DateTime64(9, 'UTC')": pa.timestamp("ns", tz="UTC"),
}
_INDEX_TYPES = (np.uint8, np.uint16, np.uint32)  # a LowCardinality's index types 0, 1, 2, as wide as it needs
_DECIMAL = re.compile(r"Decimal\((\d+), (\d+)\)")


def available() -> bool:
    return _native is not None


def table_types(client: Client, table: str) -> dict[str, str]:
    """`table`'s (`database.name`) columns and their ClickHouse types."""
    database, _, name = table.partition(".")
    result = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {table:String}",
        parameters={"db": database, "table": name},
    )
    return {column: kind for column, kind in result.result_rows}


def write(path: Path, rows: pa.Table, types: Mapping[str, str]) -> bool:
    """Write `rows` over the file at `path` as a Native block typed as `types` says; False when some column cannot
    be (see the module's docstring: nothing is written then). OSError when the file cannot be written."""
    if _native is None:
        return False
    laid_out = parts(rows, types)
    if laid_out is None:
        return False
    try:
        _native.write_file(str(path), laid_out)
    except ValueError:  # an array whose offsets point past its data: Arrow's own writer is left to judge it
        return False
    return True


def parts(rows: pa.Table, types: Mapping[str, str]) -> list[Part] | None:
    """The Native file of `rows`, one block (ClickHouse squashes an insert's blocks into one at a cost: one block
    of 100,000 rows took ~0.8 µs a row less than 28 of them), as `_native.write_file` parts, each column written
    from its chunks in place; None if some column cannot be written exactly."""
    if rows.num_rows == 0:
        return None
    laid_out: list[Part] = [_VarintBytes(rows.num_columns) + _VarintBytes(rows.num_rows)]
    for field, column in zip(rows.schema, rows.columns, strict=True):
        kind = types.get(field.name)
        writer = _writer(kind, field.type) if kind is not None else None
        chunks = [chunk for chunk in column.chunks if len(chunk)]
        written = writer(chunks) if writer is not None and not column.null_count else None
        if written is None:
            return None
        laid_out.append(_string(field.name) + _string(kind or ""))
        laid_out.extend(written)
    return laid_out


Writer: TypeAlias = Callable[[list[pa.Array]], list[Part] | None]


def _writer(kind: str, arrow_type: pa.DataType) -> Writer | None:
    """How a column of `arrow_type` is written as ClickHouse type `kind`, if this module knows."""
    if _FIXED.get(kind) == arrow_type:
        return _fixed
    decimal = _DECIMAL.fullmatch(kind)
    if decimal and pa.types.is_decimal128(arrow_type):
        precision, scale = int(decimal.group(1)), int(decimal.group(2))
        if precision <= 18 and arrow_type.scale == scale:
            return lambda chunks: _decimal64(chunks, precision)
    if kind == "String" and _is_strings(arrow_type):
        return lambda chunks: [_strings(chunk) for chunk in chunks]
    if kind == "LowCardinality(String)" and _is_strings(arrow_type):
        return lambda chunks: _with_prefix(_low_cardinality(chunks))
    if kind == "Array(LowCardinality(String))" and pa.types.is_list(arrow_type) and _is_strings(arrow_type.value_type):
        return _array_of_low_cardinality
    if (
        kind == "Map(LowCardinality(String), String)"
        and pa.types.is_map(arrow_type)
        and _is_strings(arrow_type.key_type)
        and _is_strings(arrow_type.item_type)
    ):
        return _map
    return None


def _is_strings(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def _fixed(chunks: list[pa.Array]) -> list[Part]:
    width = chunks[0].type.bit_width // 8
    return [chunk.buffers()[1].slice(chunk.offset * width, len(chunk) * width) for chunk in chunks]


def _decimal64(chunks: list[pa.Array], precision: int) -> list[Part] | None:
    """A Decimal of precision ≤ 18 is an Int64 of the unscaled value: the low word of Arrow's 128 bits, when the
    high word is only its sign and the value has at most `precision` digits (else ClickHouse would refuse it)."""
    written: list[Part] = []
    for chunk in chunks:
        words = np.frombuffer(chunk.buffers()[1], dtype=np.int64, count=2 * (chunk.offset + len(chunk)))
        low, high = words[2 * chunk.offset :: 2], words[2 * chunk.offset + 1 :: 2]
        if not np.array_equal(high, low >> 63) or np.any(np.abs(low) >= 10**precision):
            return None
        written.append(np.ascontiguousarray(low))
    return written


def _strings(array: pa.Array) -> Part:
    """A String column: `_native` writes each value's length and bytes from Arrow's offsets and data."""
    _, offsets, data = array.buffers()
    width = 8 if pa.types.is_large_string(array.type) else 4
    return (offsets, data if data is not None else pa.py_buffer(b""), array.offset, len(array), width)


def _with_prefix(written: list[Part] | None) -> list[Part] | None:
    return None if written is None else [_LOW_CARDINALITY_VERSION, *written]


def _low_cardinality(chunks: list[pa.Array]) -> list[Part] | None:
    """A LowCardinality(String) column's data: its dictionary (the default value, '', first, as ClickHouse
    writes it) and each value's index in it, in the narrowest unsigned type that holds them. Arrow encodes a
    chunked array with one dictionary, which every chunk carries."""
    if not chunks:
        return []
    if any(chunk.null_count for chunk in chunks):
        return None
    encoded = pc.dictionary_encode(pa.chunked_array(chunks)).chunks
    dictionary = encoded[-1].dictionary
    if any(len(chunk.dictionary) != len(dictionary) for chunk in encoded):
        return None
    indices = np.concatenate([chunk.indices.to_numpy() for chunk in encoded])
    empty = pc.index(dictionary, "").as_py()
    blank = pa.array([""], dictionary.type)
    if empty == -1:
        keys = pa.concat_arrays([blank, dictionary])
        positions = indices.astype(np.uint32) + 1
    else:
        keys = pa.concat_arrays([blank, dictionary.slice(0, empty), dictionary.slice(empty + 1)])
        moved = np.arange(1, len(dictionary) + 1, dtype=np.uint32)
        moved[empty] = 0
        moved[empty + 1 :] -= 1
        positions = moved[indices]
    width = 0 if len(keys) <= 1 << 8 else 1 if len(keys) <= 1 << 16 else 2
    return [
        np.uint64(_ADDITIONAL_KEYS | width).tobytes(),
        np.uint64(len(keys)).tobytes(),
        _strings(keys),
        np.uint64(len(indices)).tobytes(),
        positions.astype(_INDEX_TYPES[width]),
    ]


def _nested(chunks: list[pa.Array]) -> tuple[np.ndarray, list[tuple[pa.Array, int, int]]]:
    """Lists' offsets as ClickHouse's (each row's end, counted from the column's first element) and, per chunk,
    the chunk with the range of its elements (Arrow's offsets of a slice are not rebased; its children are not
    sliced)."""
    ends, ranges, total = [], [], 0
    for chunk in chunks:
        at = chunk.offsets.to_numpy()
        ends.append((at[1:] - at[0]).astype(np.uint64) + np.uint64(total))
        ranges.append((chunk, int(at[0]), int(at[-1] - at[0])))
        total += int(at[-1] - at[0])
    return np.concatenate(ends), ranges


def _array_of_low_cardinality(chunks: list[pa.Array]) -> list[Part] | None:
    ends, ranges = _nested(chunks)
    written = _low_cardinality([chunk.values.slice(first, count) for chunk, first, count in ranges if count])
    return None if written is None else [_LOW_CARDINALITY_VERSION, ends, *written]


def _map(chunks: list[pa.Array]) -> list[Part] | None:
    """Map(K, V) is Array(Tuple(K, V)): the offsets, then every key, then every value."""
    ends, ranges = _nested(chunks)
    ranges = [item for item in ranges if item[2]]
    keys = _low_cardinality([chunk.keys.slice(first, count) for chunk, first, count in ranges])
    items = [chunk.items.slice(first, count) for chunk, first, count in ranges]
    if keys is None or any(item.null_count for item in items):
        return None
    return [_LOW_CARDINALITY_VERSION, ends, *keys, *(_strings(item) for item in items)]


def _string(text: str) -> bytes:
    data = text.encode()
    return _VarintBytes(len(data)) + data
