"""What the write-ahead log holds for an accepted OTLP trace request: its bytes and what reading them later needs."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["REQUESTS_SCHEMA", "request_record", "rows_in"]

REQUESTS_SCHEMA = pa.schema(
    [
        pa.field("body", pa.binary()),
        pa.field("project", pa.string()),
        pa.field("received_ns", pa.int64()),
        pa.field("spans", pa.int64()),
    ]
)
"""One accepted request: its spans that may be GenAI (protobuf), the project its sender's key may write (null:
any), when it arrived (its spans are judged as of then, also when read again after a crash), how many spans."""


def request_record(body: bytes, project: str | None, spans: int, received_ns: int | None = None) -> pa.Table:
    received = time.time_ns() if received_ns is None else received_ns
    return pa.Table.from_arrays(
        [_binary(body), pa.array([project], pa.string()), pa.array([received]), pa.array([spans])],
        schema=REQUESTS_SCHEMA,
    )


def _binary(body: bytes) -> pa.Array:
    """`body` as a one-value binary array over the bytes object itself. `pa.array([body])` copies it into fresh
    memory, which on virtual machines that fault every new page in costs ~1-3 ms for a 512-span request."""
    offsets = np.array([0, len(body)], np.int32)
    return pa.Array.from_buffers(pa.binary(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(body)])


def rows_in(table: pa.Table) -> int:
    """The spans a record of requests holds; the rows of a record of rows (an earlier version's WAL)."""
    if table.schema.equals(REQUESTS_SCHEMA):
        return int(pc.sum(table.column("spans")).as_py() or 0)
    return table.num_rows
