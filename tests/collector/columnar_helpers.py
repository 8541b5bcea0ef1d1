"""What the columnar stages' differential tests share: plain rows, and the batch table the record list becomes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from spanmeter.exporters.clickhouse import to_arrow
from spanmeter.records import COLUMNS, SpanRecord

_MAPS = ("finish_reasons", "span_attributes", "resource_attributes")
_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def blank_record(**values: Any) -> SpanRecord:
    """A row with every column set (empty strings, zero counts), then `values`."""
    record = SpanRecord()
    for name in COLUMNS:
        if not hasattr(record, name):
            setattr(record, name, "")
    record.finish_reasons = []
    record.span_attributes = {}
    record.resource_attributes = {}
    record.timestamp = 1_700_000_000_000_000_000
    record.duration_ns = 0
    for name in _COUNTS:
        setattr(record, name, 0)
    record.attributes = []
    record.resource = {}
    for name, value in values.items():
        setattr(record, name, value)
    return record


def batch_table(records: Sequence[SpanRecord], request: int = 0) -> pa.Table:
    """The records as the batch table the columnar stages take: the exporter's columns and three more."""
    table = to_arrow(records)
    table = table.append_column("has_usage", pa.array([r.has_usage for r in records], pa.bool_()))
    table = table.append_column("response_id", pa.array([r.response_id for r in records], pa.string()))
    return table.append_column("request", pa.array([request] * len(records), pa.int32()))
