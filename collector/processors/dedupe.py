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

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

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
