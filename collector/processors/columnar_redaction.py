"""Redaction on columns: a map column's values redacted as `Redactor.redact` redacts them one by one, with Python
touching each distinct long value once (the genai processor redacts attribute values of
`ATTRIBUTE_REDACTION_LENGTH` characters or more; shorter ones cannot hold what the rules find)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..privacy import Redactor

__all__ = ["redact_map_column"]


def redact_map_column(column: pa.ChunkedArray | pa.Array, redactor: Redactor, min_length: int) -> pa.Array:
    """`column` (a map of strings to strings) with every value of `min_length` characters or more replaced by
    `redactor.redact(value)`: the values are flattened, the long ones' distinct values redacted once each, and the
    map rebuilt on the same offsets, keys and nulls."""
    maps = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = maps.offsets
    first = offsets[0].as_py()
    size = offsets[-1].as_py() - first
    keys, items = maps.keys.slice(first, size), maps.items.slice(first, size)  # a slice's own entries
    offsets = pc.subtract(offsets, pa.scalar(first, pa.int32()))
    long = np.asarray(
        pc.fill_null(pc.greater_equal(pc.utf8_length(items), min_length), False).to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    if not redactor.active or not long.any():
        return maps
    positions = pa.array(np.flatnonzero(long))
    values = items.take(positions)
    distinct = pc.unique(values)
    redacted = pa.array([redactor.redact(text) for text in distinct.to_pylist()], pa.string())
    replaced = redacted.take(pc.index_in(values, value_set=distinct))
    items = pc.replace_with_mask(items, pa.array(long), replaced.cast(items.type))
    mask = maps.is_null() if maps.null_count else None
    return pa.MapArray.from_arrays(offsets, keys, items, type=maps.type, mask=mask)
