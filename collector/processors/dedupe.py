"""One model call, one row: recognising a call that reaches the collector twice.

Two ways a call arrives twice: an SDK that traces itself (Anthropic 2.x) under another
instrumentation (OpenLLMetry, OpenInference, Logfire) reports the same call in two spans; and an
exporter retries a request whose answer it never got. Rules, in order:

1. the same trace and span id: a resent span;
2. the same provider, response id (`gen_ai.response.id`) and usage, with overlapping times: one call
   (usage too, as some OpenAI-compatible servers reuse ids);
3. a span and its parent, with the same provider and usage (input, output, cache read, cache
   write): one call seen by two instrumentations, one inside the other. Siblings with the same
   usage (parallel identical calls from one agent step) are separate calls.

The first span to arrive is kept. What is remembered is bounded (the most recent calls), so this
catches duplicates that arrive close together, which is how both cases happen.
"""

from __future__ import annotations

import gc
import operator
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from itertools import compress, islice, repeat

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..records import SpanRecord

__all__ = ["Admission", "CallDeduplicator"]


@dataclass
class Admission:
    """The outcome of `filter` for one request: what to keep, and the keys to remember once it is accepted."""

    kept: list[SpanRecord] = field(default_factory=list)
    duplicates: int = 0
    keys: dict[Hashable, tuple[int, int]] = field(default_factory=dict)


class CallDeduplicator:
    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[Hashable, tuple[int, int]] = OrderedDict()

    def filter(self, records: Sequence[SpanRecord]) -> Admission:
        """The records that are not duplicates (of earlier calls or of each other), and how many were."""
        admission = Admission()
        batch = admission.keys
        for record in records:
            span = (record.timestamp, record.timestamp + record.duration_ns)
            if any(_overlaps(span, self._seen.get(key) or batch.get(key)) for key in _lookups(record)):
                admission.duplicates += 1
                continue
            for key in _keys(record):
                batch[key] = span
            admission.kept.append(record)
        return admission

    def remember(self, admission: Admission) -> None:
        """Call before the kept records are written, so a concurrent resend of them is a duplicate; if the
        write fails, `forget` them: a refused request must not make its retry a duplicate."""
        seen = self._seen
        for key, span in admission.keys.items():
            seen[key] = span
            seen.move_to_end(key)
        while len(seen) > self._capacity:
            seen.popitem(last=False)

    def filter_table(self, table: pa.Table) -> tuple[npt.NDArray[np.bool_], int]:
        """`filter` then `remember` on the rows of an Arrow table (the exporter's columns with `has_usage`,
        `response_id`): the mask of rows kept and how many were duplicates, the kept rows' keys remembered.

        The same outcome and the same remembered keys, in the same order, as the record methods, without Python
        bytecode per row: keys are built and looked up with C-level zip/map over the columns; a row is resolved
        one by one only when a lookup of it finds a key of an earlier row of the same table."""
        collecting = gc.isenabled()
        gc.disable()  # hundreds of thousands of key tuples, none in a cycle: no collection passes over them
        try:
            return _filter_table(self._seen, self._capacity, table)
        finally:
            if collecting:
                gc.enable()

    def forget(self, admission: Admission) -> None:
        for key, span in admission.keys.items():
            if self._seen.get(key) == span:
                del self._seen[key]


def _usage(record: SpanRecord) -> tuple[int, int, int, int]:
    return (record.input_tokens, record.output_tokens, record.cache_read_tokens, record.cache_write_tokens)


def _keys(record: SpanRecord) -> list[Hashable]:
    """What a kept record is remembered by."""
    keys: list[Hashable] = [("span", record.trace_id, record.span_id)]
    if record.response_id:
        keys.append(("response", record.provider, record.response_id, _usage(record)))
    if record.has_usage:
        call = (record.trace_id, record.provider, _usage(record))
        keys.append(("as span", *call, record.span_id))  # for a child reporting the same call
        if record.parent_span_id:
            keys.append(("as parent", *call, record.parent_span_id))  # for its parent doing so
    return keys


def _lookups(record: SpanRecord) -> list[Hashable]:
    """What a new record is looked up by: the same span, the same response, or its parent or child."""
    lookups: list[Hashable] = [("span", record.trace_id, record.span_id)]
    if record.response_id:
        lookups.append(("response", record.provider, record.response_id, _usage(record)))
    if record.has_usage:
        call = (record.trace_id, record.provider, _usage(record))
        lookups.append(("as parent", *call, record.span_id))
        if record.parent_span_id:
            lookups.append(("as span", *call, record.parent_span_id))
    return lookups


def _overlaps(span: tuple[int, int], other: tuple[int, int] | None) -> bool:
    return other is not None and span[0] <= other[1] and other[0] <= span[1]


# --- on columns -------------------------------------------------------------------------------

_KINDS = 4  # span, response, as span, as parent: the order `_keys` writes them in


Bools = npt.NDArray[np.bool_]
_USAGE = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _filter_table(
    seen: OrderedDict[Hashable, tuple[int, int]], capacity: int, table: pa.Table
) -> tuple[npt.NDArray[np.bool_], int]:
    rows = table.num_rows
    if not rows:
        return np.zeros(0, dtype=bool), 0
    column = table.column
    trace, span_id, parent, provider, response = (
        column(name).to_pylist() for name in ("trace_id", "span_id", "parent_span_id", "provider", "response_id")
    )
    usage = list(zip(*(column(name).to_pylist() for name in _USAGE), strict=True))
    starts = column("timestamp").cast(pa.int64()).to_pylist()
    spans = list(zip(starts, map(operator.add, starts, column("duration_ns").to_pylist()), strict=True))
    has_usage: Bools = np.asarray(column("has_usage").to_numpy(zero_copy_only=False), dtype=bool)
    has_parent: Bools = np.asarray(
        pc.not_equal(column("parent_span_id"), "").to_numpy(zero_copy_only=False), dtype=bool
    )
    has_response: Bools = np.asarray(pc.not_equal(column("response_id"), "").to_numpy(zero_copy_only=False), dtype=bool)
    every: Bools = np.ones(rows, dtype=bool)
    span_keys: list[Hashable] = list(zip(repeat("span"), trace, span_id, strict=False))
    response_keys: list[Hashable] = list(zip(repeat("response"), provider, response, usage, strict=False))
    as_span: list[Hashable] = list(zip(repeat("as span"), trace, provider, usage, span_id, strict=False))
    as_parent: list[Hashable] = list(zip(repeat("as parent"), trace, provider, usage, parent, strict=False))
    # Per kind, in `_keys` order: (what a row is remembered by, when it has it; its lookup of that kind, when it
    # makes it). A lookup finds only keys of its own kind.
    kinds: list[tuple[list[Hashable], Bools, list[Hashable], Bools]] = [
        (span_keys, every, span_keys, every),
        (response_keys, has_response, response_keys, has_response),
        (
            as_span,
            has_usage,
            list(zip(repeat("as span"), trace, provider, usage, parent, strict=False)),
            has_usage & has_parent,
        ),
        (
            as_parent,
            has_usage & has_parent,
            list(zip(repeat("as parent"), trace, provider, usage, span_id, strict=False)),
            has_usage,
        ),
    ]
    positions = np.arange(rows)
    dropped = np.zeros(rows, dtype=bool)  # by what was remembered before this call
    collide = []  # per kind: the rows whose lookup finds nothing remembered but a key of an earlier row
    for keys, holds, lookups, looks in kinds:
        found = list(map(seen.get, lookups))
        in_seen = looks & np.fromiter(map(operator.is_not, found, repeat(None)), dtype=np.bool_, count=rows)
        for row in np.flatnonzero(in_seen).tolist():
            dropped[row] |= _overlaps(spans[row], found[row])
        held = positions[holds]
        first: dict[Hashable, int] = dict(
            zip(reversed(list(compress(keys, holds))), reversed(held.tolist()), strict=True)
        )
        earliest = np.fromiter(map(first.get, lookups, repeat(rows)), dtype=np.int64, count=rows)
        collide.append(looks & ~in_seen & (earliest < positions))
    kept = ~dropped
    candidates = np.flatnonzero(np.logical_or.reduce(collide))
    if len(candidates):
        holders = []  # per kind: colliding key -> the rows holding it, in order
        for (keys, holds, lookups, _), colliding in zip(kinds, collide, strict=True):
            wanted: set[Hashable] = set(compress(lookups, colliding))
            by_key: dict[Hashable, list[int]] = {}
            hit = holds & np.fromiter(map(wanted.__contains__, keys), dtype=np.bool_, count=rows)
            for row in np.flatnonzero(hit).tolist():
                by_key.setdefault(keys[row], []).append(row)
            holders.append(by_key)
        for row in candidates.tolist():  # in order: a row's fate depends on the earlier rows kept
            if dropped[row]:
                continue
            for kind, ((_, _, lookups, _), colliding) in enumerate(zip(kinds, collide, strict=True)):
                if colliding[row] and _overlaps(
                    spans[row], _latest_kept(holders[kind][lookups[row]], row, kept, spans)
                ):
                    kept[row] = False
                    break
    # Remember the kept rows' keys as `remember` does: in the order `filter` wrote them, each with the span of
    # the last row that wrote it.
    entries: list[Hashable] = []
    values: list[tuple[int, int]] = []
    order = []
    for kind, (keys, holds, _, _) in enumerate(kinds):
        chosen = holds & kept
        entries.extend(compress(keys, chosen))
        values.extend(compress(spans, chosen))
        order.append(np.flatnonzero(chosen) * _KINDS + kind)
    sequence = np.argsort(np.concatenate(order), kind="stable").tolist()
    batch = dict(zip(map(entries.__getitem__, sequence), map(values.__getitem__, sequence), strict=True))
    deque(map(seen.__delitem__, list(filter(seen.__contains__, batch))), maxlen=0)  # moved to the end
    seen.update(batch.items())
    if len(seen) > capacity:
        deque(map(seen.__delitem__, list(islice(seen, len(seen) - capacity))), maxlen=0)
    return kept, int(rows - kept.sum())


def _latest_kept(
    rows: list[int], before: int, kept: npt.NDArray[np.bool_], spans: list[tuple[int, int]]
) -> tuple[int, int] | None:
    """The span the last kept row before `before` remembered (what `filter`'s batch holds then)."""
    for row in reversed(rows):
        if row < before and kept[row]:
            return spans[row]
    return None
