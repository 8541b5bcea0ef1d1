"""Whether a range of a request's bytes holds a GenAI marker key: one pass for all the markers.

Most of an app's OTLP stream is ordinary spans, and the prefilter looks for the markers in every scope's bytes of
every request on the receiving thread. `bytes.find` for each of the ten markers reads those bytes ten times
(~0.9 µs a span of an ordinary scope); Hyperscan, a multi-pattern matcher made for scanning traffic, reads them
once (~0.1 µs a span, bench/README.md). Where Hyperscan is not installed (a platform without its wheels), the
markers are found with `bytes.find`: the same answer, more slowly.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence

try:
    import hyperscan
except ImportError:  # no wheel for this platform: bytes.find below
    hyperscan = None  # type: ignore[assignment]

__all__ = ["MarkerSearch"]


class MarkerSearch:
    """Called as `search(body, start, end)`: whether body[start:end] holds one of `markers` (literal bytes), read
    in place. Safe to call from several threads (each has its own Hyperscan scratch space)."""

    def __init__(self, markers: Sequence[bytes], accelerated: bool = True) -> None:
        if not markers or not all(markers):
            raise ValueError("markers must be non-empty byte strings")
        self._markers = tuple(markers)
        self._database = _compile(self._markers) if accelerated and hyperscan is not None else None
        self._local = threading.local()

    @property
    def accelerated(self) -> bool:
        return self._database is not None

    def __call__(self, body: bytes, start: int, end: int) -> bool:
        if self._database is None:
            find = body.find
            return any(find(marker, start, end) >= 0 for marker in self._markers)
        try:
            self._scan(memoryview(body)[start:end], _stop)
        except hyperscan.ScanTerminated:  # the handler stopped the scan at the first marker
            return True
        return False

    def occurring(self, buffers: Iterable[memoryview]) -> set[int] | None:
        """The positions (in `markers`) of the markers that occur in any of `buffers`, each scanned once (a marker
        made of the end of one buffer and the start of the next is not found); None without Hyperscan."""
        if self._database is None:
            return None
        found: set[int] = set()

        def note(index: int, *_: object) -> bool:
            found.add(index)
            return len(found) == len(self._markers)  # all found: stop

        for buffer in buffers:
            try:
                self._scan(buffer, note)
            except hyperscan.ScanTerminated:
                break
        return found

    def _scan(self, view: memoryview, handler: Callable[..., bool]) -> None:
        """Scans `view` in place (the stub names only str and bytes), with this thread's scratch space."""
        assert self._database is not None
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._database)
        self._database.scan(view, match_event_handler=handler, scratch=scratch)  # type: ignore[type-var]


def _compile(markers: tuple[bytes, ...]) -> hyperscan.Database:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[re.escape(marker) for marker in markers],
        ids=list(range(len(markers))),
        elements=len(markers),
        flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(markers),
    )
    return database


def _stop(*_: object) -> bool:
    """Hyperscan's match handler: a true result ends the scan (one marker is enough)."""
    return True
