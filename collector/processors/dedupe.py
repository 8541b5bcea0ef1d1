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

Keys are 64-bit hashes, computed on whole columns with numpy: each string (trace, span and parent id,
provider, response id) hashed from its bytes, then the parts of a key mixed in order, with a seed per kind
(span, response, "as span", "as parent") so a lookup finds only keys of its own kind. The seeds are drawn per
process. Two different keys share a hash with probability about n²/2^65 for n keys (1e-10 for a batch of 50,000
rows against as many remembered): a call is wrongly dropped only if that happens AND the two calls' times
overlap. Remembered keys are numpy arrays (key, start, end) in the order they were remembered, the last
`capacity` kept; a key remembered again moves to the end. A batch's rows are admitted by native code (`_dedupe`:
each row in order, one hash table) or, where it is not built, by numpy (`_admit`: all keys sorted together): the
same answers, both held by the tests to the record-by-record reference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..records import SpanRecord

try:
    from . import _dedupe
except ImportError:  # built without a C compiler: numpy finds the same answers (`_admit`)
    _dedupe = None  # type: ignore[assignment]

__all__ = ["Admission", "CallDeduplicator"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass
class Admission:
    """The outcome of `filter` for one request: what to keep, and the keys to remember once it is accepted
    (key hash -> (start, end), in the order they were first written)."""

    kept: list[SpanRecord] = field(default_factory=list)
    duplicates: int = 0
    keys: dict[int, tuple[int, int]] = field(default_factory=dict)


@dataclass
class _Batch:
    """What `_admit` finds: the rows kept, and their keys to remember (first-write order, last writer's span)."""

    kept: Bools
    keys: U64
    starts: I64
    ends: I64
    replaced: Bools  # the remembered keys among `keys`


class CallDeduplicator:
    def __init__(self, capacity: int = 50_000, native: bool | None = None) -> None:
        """`native`: a batch's rows admitted by `_dedupe` rather than numpy's `_admit`; by default where it is
        built."""
        if native and _dedupe is None:
            raise RuntimeError("spanmeter.processors._dedupe is not built (a C compiler is needed at install)")
        self._native = _dedupe is not None if native is None else native
        self._capacity = capacity
        self._keys: U64 = np.zeros(0, dtype=np.uint64)  # oldest first
        self._starts: I64 = np.zeros(0, dtype=np.int64)
        self._ends: I64 = np.zeros(0, dtype=np.int64)
        self._slots: U64 = np.zeros(0, dtype=np.uint64)  # _dedupe's table, kept between batches

    def remembered(self) -> list[tuple[int, tuple[int, int]]]:
        """The remembered keys, oldest first, with their spans (for tests)."""
        return list(zip(self._keys.tolist(), zip(self._starts.tolist(), self._ends.tolist(), strict=True), strict=True))

    def filter(self, records: Sequence[SpanRecord]) -> Admission:
        """The records that are not duplicates (of earlier calls or of each other), and how many were."""
        batch = self._admit(_records_table(records))
        kept = batch.kept.tolist()
        return Admission(
            kept=[record for record, keep in zip(records, kept, strict=True) if keep],
            duplicates=len(kept) - sum(kept),
            keys=dict(
                zip(batch.keys.tolist(), zip(batch.starts.tolist(), batch.ends.tolist(), strict=True), strict=True)
            ),
        )

    def remember(self, admission: Admission) -> None:
        """Call before the kept records are written, so a concurrent resend of them is a duplicate; if the
        write fails, `forget` them: a refused request must not make its retry a duplicate."""
        spans = list(admission.keys.values())
        self._remember(
            np.array(list(admission.keys), dtype=np.uint64),
            np.array([start for start, _ in spans], dtype=np.int64),
            np.array([end for _, end in spans], dtype=np.int64),
        )

    def forget(self, admission: Admission) -> None:
        if not admission.keys or not len(self._keys):
            return
        keys = np.array(list(admission.keys), dtype=np.uint64)
        spans = np.array(list(admission.keys.values()), dtype=np.int64).reshape(-1, 2)
        order = np.argsort(keys)
        at = np.minimum(np.searchsorted(keys, self._keys, sorter=order), len(keys) - 1)
        match = order[at]
        gone = (keys[match] == self._keys) & (spans[match, 0] == self._starts) & (spans[match, 1] == self._ends)
        self._keep(~gone)

    def filter_table(self, table: pa.Table) -> tuple[npt.NDArray[np.bool_], int]:
        """`filter` then `remember` on the rows of an Arrow table (the exporter's columns with `has_usage`,
        `response_id`): the mask of rows kept and how many were duplicates, the kept rows' keys remembered."""
        batch = self._admit(table)
        self._remember(batch.keys, batch.starts, batch.ends, batch.replaced)
        return batch.kept, int(len(batch.kept) - np.count_nonzero(batch.kept))

    def _keep(self, mask: Bools) -> None:
        self._keys, self._starts, self._ends = self._keys[mask], self._starts[mask], self._ends[mask]

    def _remember(self, keys: U64, starts: I64, ends: I64, replaced: Bools | None = None) -> None:
        """`keys` (distinct) remembered after everything else, replacing what the same keys held (`replaced`, when
        known: which remembered keys those are); the oldest beyond the capacity forgotten."""
        if replaced is None and len(keys) and len(self._keys):
            replaced = np.isin(self._keys, keys)
        if replaced is not None and replaced.any():
            self._keep(~replaced)
        keep = self._capacity
        self._keys = np.concatenate([self._keys, keys])[-keep:] if keep else self._keys[:0]
        self._starts = np.concatenate([self._starts, starts])[-keep:] if keep else self._starts[:0]
        self._ends = np.concatenate([self._ends, ends])[-keep:] if keep else self._ends[:0]

    def _admit(self, table: pa.Table) -> _Batch:
        if not self._native or not table.num_rows:
            return _admit(self._keys, self._starts, self._ends, table)
        words = 2 << max(4, (2 * (len(self._keys) + table.num_rows * _KINDS) - 1).bit_length())
        if len(self._slots) < words:
            self._slots = np.empty(words, dtype=np.uint64)
        return _admit_in_order(self._keys, self._starts, self._ends, table, self._slots[:words])


def _records_table(records: Sequence[SpanRecord]) -> pa.Table:
    from ..exporters.clickhouse import to_arrow  # the exporter imports the processors

    table = to_arrow(records)
    table = table.append_column("has_usage", pa.array([r.has_usage for r in records], pa.bool_()))
    return table.append_column("response_id", pa.array([r.response_id for r in records], pa.string()))


# --- hashing ------------------------------------------------------------------------------------

_SEEDS = np.frombuffer(os.urandom(8 * 8), dtype=np.uint64).copy()
_STRING, _USAGE_SEED, _CALL, _SPAN, _RESPONSE, _AS_SPAN, _AS_PARENT = (_SEEDS[i] for i in range(7))
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_KINDS = 4  # span, response, as span, as parent: the order keys are written in
_USAGE = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _mix(h: U64) -> U64:
    """splitmix64's finalizer, in place: a bijection of uint64 that spreads every bit."""
    h ^= h >> _S30
    h *= _M1
    h ^= h >> _S27
    h *= _M2
    h ^= h >> _S31
    return h


def _combine(seed: np.uint64, *parts: U64) -> U64:
    h = np.full(len(parts[0]), seed, dtype=np.uint64)
    for part in parts:
        h ^= part
        _mix(h)
    return h


def _hash_strings(column: pa.ChunkedArray | pa.Array) -> U64:
    """A 64-bit hash of each string's bytes (null as empty): its length, then its 8-byte words, mixed. Rows of
    one length are hashed together (a fixed-width id column is one reshape of its data)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    array = array.cast(pa.large_binary())
    rows = len(array)
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=array.offset + rows + 1)[array.offset :]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, dtype=np.uint8)
    lengths = np.diff(offsets)
    hashes = np.empty(rows, dtype=np.uint64)
    if not rows:
        return hashes
    lowest, highest = int(lengths.min()), int(lengths.max())
    for length in range(lowest, highest + 1) if highest - lowest < 4 else np.unique(lengths).tolist():
        if lowest == highest:
            where: slice | npt.NDArray[np.intp] = slice(None)
            first = int(offsets[0])
            chars = data[first : first + rows * length].reshape(rows, length)
        else:
            where = np.flatnonzero(lengths == length)
            if not len(where):
                continue
            chars = data[offsets[where][:, None] + np.arange(length)]
        words = -(-length // 8)
        padded = np.zeros((len(chars), words * 8), dtype=np.uint8)
        padded[:, :length] = chars
        h = np.full(len(chars), _STRING ^ np.uint64(length), dtype=np.uint64)
        _mix(h)
        for word in padded.view("<u8").T:
            h ^= word
            _mix(h)
        hashes[where] = h
    return hashes


def _row_keys(table: pa.Table) -> tuple[U64, Bools, U64, Bools]:
    """Per row and kind (n x 4): the key a kept row is remembered by, whether it has it; the key it is looked
    up by, whether it makes that lookup."""
    rows = table.num_rows
    column = table.column
    trace, span, parent, provider, response = (
        _hash_strings(column(name)) for name in ("trace_id", "span_id", "parent_span_id", "provider", "response_id")
    )
    usage = _combine(_USAGE_SEED, *(np.asarray(column(name).to_numpy(), dtype=np.uint64) for name in _USAGE))
    call = _combine(_CALL, trace, provider, usage)
    as_span, as_parent = _combine(_AS_SPAN, call), _combine(_AS_PARENT, call)
    has_usage = np.asarray(column("has_usage").to_numpy(zero_copy_only=False), dtype=bool)
    has_parent = np.asarray(pc.not_equal(column("parent_span_id"), "").to_numpy(zero_copy_only=False), dtype=bool)
    has_response = np.asarray(pc.not_equal(column("response_id"), "").to_numpy(zero_copy_only=False), dtype=bool)
    span_key = _combine(_SPAN, trace, span)
    response_key = _combine(_RESPONSE, provider, response, usage)
    keys = np.empty((rows, _KINDS), dtype=np.uint64)
    lookups = np.empty((rows, _KINDS), dtype=np.uint64)
    keys[:, 0] = lookups[:, 0] = span_key
    keys[:, 1] = lookups[:, 1] = response_key
    keys[:, 2] = _mix(as_span ^ span)  # for a child reporting the same call
    lookups[:, 2] = _mix(as_span ^ parent)
    keys[:, 3] = _mix(as_parent ^ parent)  # for its parent doing so
    lookups[:, 3] = _mix(as_parent ^ span)
    with_parent = has_usage & has_parent
    holds = np.column_stack([np.ones(rows, dtype=bool), has_response, has_usage, with_parent])
    looks = np.column_stack([np.ones(rows, dtype=bool), has_response, with_parent, has_usage])
    return keys, holds, lookups, looks


# --- admission ----------------------------------------------------------------------------------

_NONE = np.iinfo(np.int64).max


def _admit(seen: U64, seen_starts: I64, seen_ends: I64, table: pa.Table) -> _Batch:
    """Which rows `filter` keeps, and the keys it would remember, against the remembered `seen` keys.

    Remembered keys, the keys rows hold and their lookups are sorted together once (a row's span and response
    lookups are the keys it holds); only keys met more than once matter, and each such run tells a lookup whether
    the key is remembered (then only that span counts, as `filter` looks there first) or which earlier row of the
    table holds it. Rows whose lookups find an earlier row are resolved one by one, in order: a row dropped as a
    duplicate remembers nothing (chains), and only the last kept holder's span counts."""
    rows = table.num_rows
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return _Batch(np.zeros(0, dtype=bool), np.zeros(0, dtype=np.uint64), empty, empty, np.zeros(len(seen), bool))
    keys, holds, lookups, looks = _row_keys(table)
    starts, ends = _spans(table)
    holds_flat = holds.ravel()
    held = np.flatnonzero(holds_flat)  # row * 4 + kind, in the order `filter` writes keys
    looked = np.flatnonzero(looks[:, 2:].ravel())  # the parent and child lookups, row * 2 + kind - 2
    looked_places = looked + (looked & ~1) + 2
    remembered = len(seen)
    # tags: a remembered key i: i - remembered (< 0); a held key at place p: 2p; a lookup at p: 2p + 1
    every = np.concatenate([seen, keys.ravel()[held], lookups[:, 2:].ravel()[looked]])
    tags = np.concatenate([np.arange(-remembered, 0, dtype=np.int64), 2 * held, 2 * looked_places + 1])
    maybe_shared = _in_shared_buckets(every)
    every, tags = every[maybe_shared], tags[maybe_shared]
    order = np.argsort(every)
    every, tags = every[order], tags[order]
    boundary = np.empty(len(every) + 1, dtype=bool)
    boundary[0] = boundary[-1] = True
    np.not_equal(every[1:], every[:-1], out=boundary[1:-1])
    shared = ~(boundary[:-1] & boundary[1:])  # in a run of more than one entry
    tags, starts_run = tags[shared], boundary[:-1][shared]
    kept = np.ones(rows, dtype=bool)
    replaced = np.zeros(remembered, dtype=bool)
    writer = np.arange(rows * _KINDS, dtype=np.int64) >> 2  # per place: the row whose span it remembers
    if len(tags):
        firsts = np.flatnonzero(starts_run)
        run = np.cumsum(starts_run) - 1
        lowest = np.minimum.reduceat(tags, firsts)  # < 0: the key is remembered (remembered keys are distinct)
        is_held = (tags >= 0) & (tags & 1 == 0)
        earliest = np.minimum.reduceat(np.where(is_held, tags, _NONE), firsts)  # the first holder's 2p
        is_lookup = (tags >= 0) & ((tags & 1 == 1) | ((tags >> 1) & 3 < 2))
        lookup_at = np.flatnonzero(is_lookup)
        lookup_run = run[lookup_at]
        lookup_row = tags[lookup_at] >> 3
        found = lowest[lookup_run]
        in_seen = found < 0
        hit_row, hit = lookup_row[in_seen], found[in_seen] + remembered
        overlap = (starts[hit_row] <= seen_ends[hit]) & (seen_starts[hit] <= ends[hit_row])
        kept[hit_row[overlap]] = False
        first_holder = earliest[lookup_run]
        collide = ~in_seen & (first_holder != _NONE) & ((first_holder >> 3) < lookup_row)
        if collide.any():
            _resolve(
                kept,
                lookup_row[collide],
                tags[lookup_at[collide]] >> 1,
                lookup_run[collide],
                run,
                is_held,
                tags,
                starts,
                ends,
            )
        # A key written more than once: remembered at its first write's place with its last write's span.
        kept_held = is_held & kept[np.maximum(tags, 0) >> 3]
        first_write = np.minimum.reduceat(np.where(kept_held, tags, _NONE), firsts)
        last_write = np.maximum.reduceat(np.where(kept_held, tags, -1), firsts)
        later = kept_held & (tags != first_write[run])
        holds_flat = holds_flat.copy()
        holds_flat[tags[later] >> 1] = False
        written = first_write != _NONE
        writer[first_write[written] >> 1] = last_write[written] >> 3
        replaced[lowest[written & (lowest < 0)] + remembered] = True
    places = np.flatnonzero(holds_flat & np.repeat(kept, _KINDS))
    rows_of = writer[places]
    return _Batch(kept, keys.ravel()[places], starts[rows_of], ends[rows_of], replaced)


def _admit_in_order(seen: U64, seen_starts: I64, seen_ends: I64, table: pa.Table, slots: U64) -> _Batch:
    """`_admit`'s answer from `_dedupe.admit`: each row in order, each key looked up once in a hash table of the
    remembered keys and those the batch wrote so far (`slots`: two words a slot, a power of two of slots at least
    twice the keys), where `_admit` sorts all keys together: 12-13 against 21-22 ms of CPU for a batch of 50,000
    new spans, 11-12 against 25-26 for the same spans resent (hashes included; bench/README.md)."""
    rows = table.num_rows
    keys, holds, lookups, looks = _row_keys(table)
    starts, ends = _spans(table)
    kept = np.empty(rows, dtype=bool)
    out_keys = np.empty(rows * _KINDS, dtype=np.uint64)
    out_starts = np.empty(rows * _KINDS, dtype=np.int64)
    out_ends = np.empty(rows * _KINDS, dtype=np.int64)
    replaced = np.zeros(len(seen), dtype=bool)
    written = _dedupe.admit(
        np.ascontiguousarray(seen), np.ascontiguousarray(seen_starts), np.ascontiguousarray(seen_ends),
        keys, holds, lookups, looks, starts, ends,
        kept, out_keys, out_starts, out_ends, replaced, slots,
    )  # fmt: skip
    return _Batch(kept, out_keys[:written], out_starts[:written], out_ends[:written], replaced)


def _spans(table: pa.Table) -> tuple[I64, I64]:
    """Each row's start and end (ns)."""
    starts = np.asarray(table.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
    return starts, starts + np.asarray(table.column("duration_ns").to_numpy(), dtype=np.int64)


def _in_shared_buckets(keys: U64) -> npt.NDArray[np.intp]:
    """The positions of the keys that may occur more than once: those whose bucket (the hash's low bits, at least
    twice as many buckets as keys) holds another. Only runs of equal keys matter and most keys occur once, so
    sorting these finds the same runs as sorting all: about a quarter of them (bench/README.md: 30.1 against 36.0
    ms of CPU for a batch of 50,000 spans)."""
    bits = max(len(keys).bit_length() + 1, 10)
    bucket = (keys & np.uint64((1 << bits) - 1)).astype(np.intp)
    return np.flatnonzero(np.bincount(bucket, minlength=1 << bits)[bucket] > 1)


def _resolve(
    kept: Bools, rows: I64, places: I64, runs: I64, run: I64, is_held: Bools, tags: I64, starts: I64, ends: I64
) -> None:
    """`filter`'s own order for the rows whose lookups find a key an earlier row of the table holds: the row is
    a duplicate if the last KEPT earlier holder's span overlaps its own (each row's lookups in kind order)."""
    wanted = np.zeros(int(run[-1]) + 1, dtype=bool)
    wanted[runs] = True
    chosen = is_held & wanted[run]
    holder_run, holder_row = run[chosen], tags[chosen] >> 3
    order = np.lexsort((holder_row, holder_run))
    holders: dict[int, list[int]] = {}
    for key_run, holder in zip(holder_run[order].tolist(), holder_row[order].tolist(), strict=True):
        holders.setdefault(key_run, []).append(holder)
    start_list, end_list = starts.tolist(), ends.tolist()
    order = np.lexsort((places, rows))
    for row, key_run in zip(rows[order].tolist(), runs[order].tolist(), strict=True):
        if not kept[row]:
            continue
        for holder in reversed(holders[key_run]):
            if holder < row and kept[holder]:
                if start_list[row] <= end_list[holder] and start_list[holder] <= end_list[row]:
                    kept[row] = False
                break
