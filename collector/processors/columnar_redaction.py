"""Redaction on columns: a map column's values redacted as `Redactor.redact` redacts them one by one, with Python
touching each distinct long value once (the genai processor redacts attribute values of
`ATTRIBUTE_REDACTION_LENGTH` characters or more; shorter ones cannot hold what the rules find)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..privacy import Redactor

__all__ = ["redact_map_column"]


def redact_map_column(
    column: pa.ChunkedArray | pa.Array, redactor: Redactor, min_length: int
) -> pa.ChunkedArray | pa.Array:
    """`column` (a map of strings to strings) with every value of `min_length` characters or more replaced by
    `redactor.redact(value)`. Chunk by chunk: a chunk where no such value changes is kept as it is, with no copy
    (joining the engine's chunks first copied every map, ~2 µs a span where new memory is dear); in the others the
    long values are redacted once for each distinct one and the map rebuilt on the same offsets, keys and nulls."""
    if not redactor.active:
        return column
    redacted: dict[str, str] = {}
    if isinstance(column, pa.ChunkedArray):
        chunks = [_redact_maps(chunk, redactor, min_length, redacted) for chunk in column.chunks]
        return pa.chunked_array(chunks, column.type)
    return _redact_maps(column, redactor, min_length, redacted)


def _redact_maps(maps: pa.MapArray, redactor: Redactor, min_length: int, redacted: dict[str, str]) -> pa.MapArray:
    """One chunk; `redacted` holds what earlier chunks' values became."""
    offsets = maps.offsets
    first = offsets[0].as_py()
    size = offsets[-1].as_py() - first
    items = maps.items.slice(first, size)  # a slice's own entries
    # A value has at least as many bytes as characters: only values of `min_length` bytes are measured in characters.
    wide = _flags(pc.greater_equal(pc.binary_length(items), min_length))
    positions = np.flatnonzero(wide)
    if not len(positions):
        return maps
    long = _flags(pc.greater_equal(pc.utf8_length(items.take(pa.array(positions))), min_length))
    positions = positions[long]
    if not len(positions):
        return maps
    values = items.take(pa.array(positions))
    distinct = pc.unique(values)
    texts = distinct.to_pylist()
    for text in texts:
        if text not in redacted:
            redacted[text] = redactor.redact(text)
    if all(redacted[text] == text for text in texts):  # nothing found (a resource's instance id on every row)
        return maps
    replacements = pa.array([redacted[text] for text in texts], pa.string())
    mask = np.zeros(size, dtype=bool)
    mask[positions] = True
    replaced = replacements.take(pc.index_in(values, value_set=distinct))
    items = pc.replace_with_mask(items, pa.array(mask), replaced.cast(items.type))
    keys = maps.keys.slice(first, size)
    relative = pc.subtract(offsets, pa.scalar(first, pa.int32()))
    mask_of_nulls = maps.is_null() if maps.null_count else None
    return pa.MapArray.from_arrays(relative, keys, items, type=maps.type, mask=mask_of_nulls)


def _flags(condition: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(condition, False).to_numpy(zero_copy_only=False), dtype=bool)
