"""The record-by-record deduplicator as it was before keys became hashes (`OrderedDict` of key tuples): the
reference `CallDeduplicator` is checked against. It also records, for every tuple key it writes, the 64-bit hash
`spanmeter.processors.dedupe` gives that key, so the remembered keys of both can be compared in order."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

from spanmeter.processors.dedupe import _records_table, _row_keys
from spanmeter.records import SpanRecord


def _usage(record: SpanRecord) -> tuple[int, int, int, int]:
    return (record.input_tokens, record.output_tokens, record.cache_read_tokens, record.cache_write_tokens)


def keys(record: SpanRecord) -> list[tuple[int, Hashable]]:
    """What a kept record is remembered by, with each key's kind."""
    found: list[tuple[int, Hashable]] = [(0, ("span", record.trace_id, record.span_id))]
    if record.response_id:
        found.append((1, ("response", record.provider, record.response_id, _usage(record))))
    if record.has_usage:
        call = (record.trace_id, record.provider, _usage(record))
        found.append((2, ("as span", *call, record.span_id)))
        if record.parent_span_id:
            found.append((3, ("as parent", *call, record.parent_span_id)))
    return found


def lookups(record: SpanRecord) -> list[Hashable]:
    found: list[Hashable] = [("span", record.trace_id, record.span_id)]
    if record.response_id:
        found.append(("response", record.provider, record.response_id, _usage(record)))
    if record.has_usage:
        call = (record.trace_id, record.provider, _usage(record))
        found.append(("as parent", *call, record.span_id))
        if record.parent_span_id:
            found.append(("as span", *call, record.parent_span_id))
    return found


def _overlaps(span: tuple[int, int], other: tuple[int, int] | None) -> bool:
    return other is not None and span[0] <= other[1] and other[0] <= span[1]


class ReferenceDeduplicator:
    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self.seen: OrderedDict[Hashable, tuple[int, int]] = OrderedDict()
        self.hashes: dict[Hashable, int] = {}

    def filter_and_remember(self, records: Sequence[SpanRecord]) -> tuple[list[bool], int]:
        hashed = _row_keys(_records_table(records))[0].tolist() if records else []
        batch: dict[Hashable, tuple[int, int]] = {}
        kept = []
        for record, row_hashes in zip(records, hashed, strict=True):
            span = (record.timestamp, record.timestamp + record.duration_ns)
            if any(_overlaps(span, self.seen.get(key) or batch.get(key)) for key in lookups(record)):
                kept.append(False)
                continue
            for kind, key in keys(record):
                batch[key] = span
                assert self.hashes.setdefault(key, row_hashes[kind]) == row_hashes[kind]
            kept.append(True)
        for key, span in batch.items():
            self.seen[key] = span
            self.seen.move_to_end(key)
        while len(self.seen) > self.capacity:
            self.seen.popitem(last=False)
        return kept, kept.count(False)

    def remembered(self) -> list[tuple[int, tuple[int, int]]]:
        return [(self.hashes[key], span) for key, span in self.seen.items()]
