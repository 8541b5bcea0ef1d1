"""`CallDeduplicator` (hashed keys, on columns) against the tuple-keyed reference on the same rows: the same rows
kept, the same duplicate count, and the same remembered keys in the same order (so the capacity bound evicts the
same calls), including within-batch duplicates, chains, time overlaps, and record calls (`filter` + `remember`)
interleaved with table calls."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanmeter.processors import dedupe
from spanmeter.processors.dedupe import CallDeduplicator, _in_shared_buckets

from .columnar_helpers import batch_table, blank_record
from .dedupe_reference import ReferenceDeduplicator

# Few distinct values, so that keys collide often: resent spans, shared response ids, parents and children.
IDS = ["a1", "a2", "a3", "a4"]
rows = st.builds(
    lambda trace, span, parent, provider, response, usage, has_usage, start, duration: blank_record(
        trace_id=trace,
        span_id=span,
        parent_span_id=parent,
        provider=provider,
        response_id=response,
        input_tokens=usage[0],
        output_tokens=usage[1],
        cache_read_tokens=usage[2],
        cache_write_tokens=usage[3],
        has_usage=has_usage,
        timestamp=1_700_000_000_000_000_000 + start,
        duration_ns=duration,
    ),
    trace=st.sampled_from(["t1", "t2"]),
    span=st.sampled_from(IDS),
    parent=st.sampled_from(["", *IDS]),
    provider=st.sampled_from(["openai", "anthropic"]),
    response=st.sampled_from(["", "r1", "r2"]),
    usage=st.sampled_from([(0, 0, 0, 0), (10, 5, 0, 0), (10, 5, 2, 1)]),
    has_usage=st.booleans(),
    start=st.integers(0, 30),
    duration=st.integers(0, 10),
)
BOTH = pytest.mark.parametrize(
    "native",
    [
        pytest.param(True, id="in order (_dedupe)", marks=pytest.mark.skipif(
            dedupe._dedupe is None, reason="spanmeter.processors._dedupe is not built (no C compiler at install)"
        )),
        pytest.param(False, id="sorted (numpy)"),
    ],
)  # fmt: skip
"""Each test runs on both admissions of a batch: `_dedupe.admit` (each row in order, a hash table) and numpy's
`_admit` (all keys sorted together), which a collector built without a C compiler uses."""


# Each batch goes through the records (True) or the table (False) of the second deduplicator.
batches = st.lists(st.tuples(st.lists(rows, max_size=25), st.booleans()), min_size=1, max_size=6)


@BOTH
@settings(max_examples=300, deadline=None)
@given(batches=batches, capacity=st.integers(1, 40))
def test_filter_table_equals_filter_then_remember(native: bool, batches, capacity) -> None:
    reference = ReferenceDeduplicator(capacity)
    columnar = CallDeduplicator(capacity, native)
    for records, by_records in batches:
        expected, expected_duplicates = reference.filter_and_remember(records)
        if by_records:
            admission = columnar.filter(records)
            columnar.remember(admission)
            assert [r for r, keep in zip(records, expected, strict=True) if keep] == admission.kept
            assert admission.duplicates == expected_duplicates
        else:
            kept, duplicates = columnar.filter_table(batch_table(records))
            assert kept.dtype == bool and kept.tolist() == expected
            assert duplicates == expected_duplicates
        assert columnar.remembered() == reference.remembered()


@BOTH
def test_a_chain_within_one_table(native: bool) -> None:
    """The second row is the first's child (dropped), the third the second's child: it is kept, as a dropped
    row's keys are not remembered; the fourth resends the first."""
    call = {"provider": "openai", "has_usage": True, "input_tokens": 10, "output_tokens": 5}
    records = [
        blank_record(trace_id="t", span_id="p", **call),
        blank_record(trace_id="t", span_id="c", parent_span_id="p", **call),
        blank_record(trace_id="t", span_id="g", parent_span_id="c", **call),
        blank_record(trace_id="t", span_id="p", **call),
    ]
    kept, duplicates = CallDeduplicator(native=native).filter_table(batch_table(records))
    assert kept.tolist() == [True, False, True, False] and duplicates == 2
    assert [records.index(r) for r in CallDeduplicator(native=native).filter(records).kept] == [0, 2]


@BOTH
def test_an_empty_table(native: bool) -> None:
    deduplicator = CallDeduplicator(native=native)
    kept, duplicates = deduplicator.filter_table(batch_table([]))
    assert kept.tolist() == [] and duplicates == 0 and not deduplicator.remembered()


@BOTH
def test_100k_fresh_calls_are_all_kept_and_their_resend_all_dropped(native: bool) -> None:
    """Fixed-width hex ids (the exporter's), distinct calls: none is taken for another (no hash collision, no
    false overlap); sent in two batches of 50,000, then again in one of 100,000 (a segment of the default
    `batch.max_rows`), every one is recognised."""
    rows = 100_000
    start = 1_700_000_000_000_000_000
    table = pa.table(
        {
            "trace_id": [f"{index // 20:032x}" for index in range(rows)],
            "span_id": [f"{index + 1:016x}" for index in range(rows)],
            "parent_span_id": ["" if index % 20 == 0 else f"{index - index % 20 + 1:016x}" for index in range(rows)],
            "provider": ["openai"] * rows,
            "timestamp": pa.array([start + index * 1_000 for index in range(rows)], pa.timestamp("ns")),
            "duration_ns": pa.array([500] * rows, pa.uint64()),
            "input_tokens": pa.array([100 + index % 7 for index in range(rows)], pa.uint64()),
            "output_tokens": pa.array([10] * rows, pa.uint64()),
            "cache_read_tokens": pa.array([0] * rows, pa.uint64()),
            "cache_write_tokens": pa.array([0] * rows, pa.uint64()),
            "has_usage": [True] * rows,
            "response_id": [f"chatcmpl-{index}" for index in range(rows)],
        }
    )
    deduplicator = CallDeduplicator(capacity=4 * rows, native=native)
    for half in (table.slice(0, rows // 2), table.slice(rows // 2)):
        kept, duplicates = deduplicator.filter_table(half)
        assert kept.all() and duplicates == 0
    kept, duplicates = deduplicator.filter_table(table)
    assert not kept.any() and duplicates == rows


@settings(max_examples=200, deadline=None)
@given(
    distinct=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=3_000, unique=True),
    repeats=st.lists(st.integers(0, 2_999), max_size=50),
)
def test_only_keys_in_shared_buckets_go_to_the_sort(distinct: list[int], repeats: list[int]) -> None:
    """Every key that occurs more than once is kept for the sort that finds equal keys, wherever it is; a key
    kept alone is one whose bucket another key shares (the sort then leaves it as a run of one)."""
    keys = np.array(distinct + [distinct[index % len(distinct)] for index in repeats], dtype=np.uint64)
    keys = keys[np.random.default_rng(len(keys)).permutation(len(keys))]
    kept = _in_shared_buckets(keys)
    assert kept.tolist() == sorted(kept.tolist())
    values, counts = np.unique(keys, return_counts=True)
    repeated = set(values[counts > 1].tolist())
    must = [position for position, key in enumerate(keys.tolist()) if key in repeated]
    assert set(must) <= set(kept.tolist())
    buckets = (keys & np.uint64((1 << max(len(keys).bit_length() + 1, 10)) - 1)).tolist()
    for position in set(kept.tolist()) - set(must):
        assert buckets.count(buckets[position]) > 1


def test_most_distinct_keys_skip_the_sort() -> None:
    """300,000 distinct hashes (a batch of 50,000 spans' keys and lookups with the remembered ones): about a
    quarter share a bucket; without the buckets all 300,000 would be sorted."""
    keys = np.random.default_rng(7).integers(0, 2**64, 300_000, dtype=np.uint64)
    assert 0.15 * len(keys) < len(_in_shared_buckets(keys)) < 0.35 * len(keys)


@pytest.mark.skipif(dedupe._dedupe is None, reason="spanmeter.processors._dedupe is not built")
def test_the_native_admission_checks_its_buffers() -> None:
    """A buffer of the wrong size, or a table too small for the keys, is refused naming it, not read past."""
    rows, seen = 3, np.array([1, 2], dtype=np.uint64)
    times = np.zeros(2, dtype=np.int64)
    keys, flags = np.full(rows * 4, 5, dtype=np.uint64), np.ones(rows * 4, dtype=bool)
    spans = np.zeros(rows, dtype=np.int64)
    out = [np.zeros(rows * 4, dtype=dtype) for dtype in (np.uint64, np.int64, np.int64)]

    def admit(kept: np.ndarray, table: np.ndarray) -> int:
        return dedupe._dedupe.admit(
            seen, times, times, keys, flags, keys, flags, spans, spans, kept, *out, np.zeros(2, dtype=bool), table
        )

    with pytest.raises(ValueError, match="kept"):
        admit(np.zeros(rows + 1, dtype=bool), np.zeros(2 * 32, dtype=np.uint64))
    with pytest.raises(ValueError, match="table"):
        admit(np.zeros(rows, dtype=bool), np.zeros(2 * 16, dtype=np.uint64))
    kept = np.zeros(rows, dtype=bool)
    assert admit(kept, np.zeros(2 * 32, dtype=np.uint64)) == 1  # one key for every kind, written by the first row
    assert kept.tolist() == [True, False, False]  # the others find it, at the same time


def test_the_native_admission_is_built_where_a_compiler_is() -> None:
    """An optional extension fails its build with only a warning: where the install had a C compiler (CI's
    machines do), a missing module is a broken build, not a choice, and the tests above would run numpy's alone."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler here: numpy admits the rows")
    assert dedupe._dedupe is not None
    assert CallDeduplicator()._native  # the default where it is built
