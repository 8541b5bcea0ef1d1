"""The prefilter's search for GenAI marker keys in a request's bytes: one Hyperscan pass finds exactly what
`bytes.find` of each marker finds, in any range of any bytes, from several threads at once."""

from __future__ import annotations

import platform
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanmeter.conventions import CONVENTIONS
from spanmeter.conventions.base import detection_keys
from spanmeter.processors.markers import MarkerSearch

MARKERS, _ = detection_keys(CONVENTIONS)
FAST = MarkerSearch(MARKERS)
PLAIN = MarkerSearch(MARKERS, accelerated=False)

# Pieces bodies are made of: whole markers, their halves (a marker cut by a range's end or start), bytes that
# look like them, and anything.
PIECES = st.one_of(
    st.sampled_from(MARKERS),
    st.sampled_from(MARKERS).map(lambda marker: marker[: len(marker) // 2]),
    st.sampled_from(MARKERS).map(lambda marker: marker[len(marker) // 2 :]),
    st.sampled_from([b"gen_ai.", b"llm.", b"ai.", b"gen_ai.operation", b"\x00", b"\xff"]),
    st.binary(max_size=40),
)


def test_hyperscan_is_what_searches_where_its_wheels_exist() -> None:
    if platform.machine() not in ("x86_64", "aarch64", "arm64"):
        pytest.skip(f"hyperscan has no wheel for {platform.machine()}: the markers are found with bytes.find")
    assert FAST.accelerated
    assert not PLAIN.accelerated


@settings(max_examples=400, deadline=None, database=None)
@given(pieces=st.lists(PIECES, max_size=30), data=st.data())
def test_one_pass_finds_exactly_what_each_markers_find_finds(pieces: list[bytes], data: st.DataObject) -> None:
    body = b"".join(pieces)
    start = data.draw(st.integers(0, len(body)), label="start")
    end = data.draw(st.integers(start, len(body)), label="end")
    expected = any(marker in body[start:end] for marker in MARKERS)
    assert FAST(body, start, end) is expected
    assert PLAIN(body, start, end) is expected


def test_threads_searching_at_once_each_get_their_own_answer() -> None:
    """Hyperscan refuses a scratch space in use by another scan: each thread has its own."""
    marked = b"x" * 5000 + MARKERS[3] + b"y" * 5000
    ordinary = b"z" * 10_000
    wrong: list[object] = []

    def search() -> None:
        for index in range(2000):
            body = marked if index % 2 else ordinary
            try:
                if FAST(body, 0, len(body)) is not bool(index % 2):
                    wrong.append((body[:10], bool(index % 2)))
            except Exception as exc:  # e.g. hyperscan.ScratchInUseError
                wrong.append(exc)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_no_marker_is_no_search() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        MarkerSearch([b"gen_ai.system", b""])
