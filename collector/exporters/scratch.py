"""Where the collector writes its scratch files: the engine's flattened requests and an embedded store's inserts.

Both are written again for every segment and never read after a crash (the write-ahead log holds the requests),
so they need no disk. On the write-ahead log's disk they cost page writeback and, worse, delay the log's own
`fdatasync` behind them: in one run (bench/README.md, thirteenth session) moving them to a memory filesystem took
the CPU a stored span to 0.94x and the requests answered a second to 1.18x. They go to `/dev/shm` when it is a
memory filesystem with room to spare (`MIN_FREE`: a container's default 64 MiB is not), else beside the log.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

__all__ = ["MIN_FREE", "SHARED_MEMORY", "Scratch"]

SHARED_MEMORY = Path("/dev/shm")
MIN_FREE = 2 * 2**30
"""Free bytes a memory filesystem needs to be used: a segment's flattened requests and a group's insert file are
each at most a few hundred MiB (`batch.max_insert_bytes`), and the room is shared with the machine's memory."""


class Scratch:
    """A collector's scratch directory, owned by the write-ahead log it serves (whose directory the collector
    locks, so no other collector writes here)."""

    def __init__(self, wal_directory: Path, configured: str | None = None, shared: Path | None = None) -> None:
        """`configured`: the directory set in pipelines.yaml (used as it is); none: chosen as the module says, on
        `shared` (default `SHARED_MEMORY`)."""
        shared = SHARED_MEMORY if shared is None else shared
        self.owned = False
        """Made for this log under the memory filesystem: removed when the collector stops."""
        if configured:
            self.directory = Path(configured)
        elif _roomy(shared):
            # One directory per log, named after the log's path: the same after a restart, apart from any other's.
            digest = hashlib.sha256(str(wal_directory.resolve()).encode()).hexdigest()[:16]
            self.directory = shared / f"spanmeter-{digest}"
            self.owned = True
        else:
            self.directory = wal_directory

    def path(self, name: str) -> Path:
        return self.directory / name

    def remove(self) -> None:
        """Frees the memory its files hold (a memory filesystem's files stay until removed or the machine stops)."""
        if self.owned:
            shutil.rmtree(self.directory, ignore_errors=True)


def _roomy(shared: Path) -> bool:
    """Whether `shared` is a writable memory filesystem with `MIN_FREE` bytes free."""
    try:
        stat = os.statvfs(shared)
    except OSError:
        return False
    if stat.f_bavail * stat.f_frsize < MIN_FREE or not os.access(shared, os.W_OK):
        return False
    return _filesystem(shared) in ("tmpfs", "ramfs")


def _filesystem(path: Path) -> str:
    """The type of the filesystem mounted at `path` (Linux's /proc/self/mounts), or "" when unknown."""
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return ""
    target = str(path.resolve())
    found = ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == target:
            found = fields[2]
    return found
