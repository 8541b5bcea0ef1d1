"""The write-ahead log: accepted rows are on disk, fsync'd, before a request is acknowledged.

Each request's rows are one record, an Arrow IPC stream, appended to the open segment file. One
writer thread takes every record that is waiting, writes them, and calls fdatasync once for all
of them (group commit): concurrent requests share one sync, and each request's `append` returns
only after the sync that covers it. A segment is sealed when it holds `segment_rows` rows or its
first record is `segment_age` seconds old; a sealed segment is one insert batch, and the random
token in its file name is the `insert_deduplication_token` it is always inserted under, so a
segment replayed after a crash that happened after its insert landed is stored once.

Under a backlog the exporter inserts the rows of consecutive segments together, under one token: the group's
members are recorded first, fsync'd, in a file of their own (`record_group`), so that after a crash the same
segments are inserted together under the same token again, and a retry of a group that did land is dropped. A
group's record is deleted after all its members are released; a record left with some members gone means the
group was stored (members are released only after its insert), and the members left are deleted at start.

Segments are released only after their rows are stored (`release`). A released segment's file is kept
for reuse while the log's files hold at most `recycle_bytes` (`max_bytes` by default: that bound counts every
byte the log's files hold) and the next segment is written over it, as databases recycle their log files:
writing over pages the file already has costs the kernel far less than filling a new file (no new pages to
allocate, no blocks to allocate and journal before each `fdatasync`; on virtual machines whose freed memory
goes back to the host, no memory to fault in again at several times the cost). A request that would not fit
beside the kept files has the oldest of them deleted, as many as it needs. At start,
every segment left by a previous run is read back, record by record, up to the first damage (a torn tail
from a crash in mid-write, or corruption); the damaged bytes are moved aside to `quarantine/` and counted.

Segment files are written with direct I/O where the filesystem takes it (`direct_file`): records go from one
buffer the writer keeps to the disk, never through the page cache, whose fresh pages are the dearest memory a
virtual machine touches. A direct write is whole blocks, so while a segment is open its file ends in up to a block
of zeros past its last record (not counted in `max_bytes`); they are cut when it is sealed, and read back after a
crash as the end of its records.

Layout: a segment starts with `MAGIC` and a random nonce; each record is
``tag (u32 LE) | length (u32 LE) | crc32 (u32 LE) | payload``. The tag comes from the nonce and the
checksum is seeded with it, so the records of a file's earlier use, still beyond the end of the current
one's, are told apart from the current use's and from damage: the first record of another tag ends the
segment. Segments of the first layout (`MAGIC_V1`: ``length | crc32 | payload``, no nonce) are read too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import mmap
import os
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from .direct_file import AppendFile, write_all

__all__ = [
    "GROUP_SUFFIX",
    "MAGIC",
    "MAGIC_V1",
    "RECORD_HEADER",
    "SEGMENT_HEADER",
    "Group",
    "Segment",
    "WalFull",
    "WalUnavailable",
    "WalWriteError",
    "WriteAheadLog",
    "encode_table",
]

logger = logging.getLogger(__name__)

MAGIC = b"SPANWAL2"
MAGIC_V1 = b"SPANWAL1"
"""The first layout: records without a tag, in files never reused."""
_NONCE = 8
SEGMENT_HEADER = len(MAGIC) + _NONCE
RECORD_HEADER = struct.Struct("<III")
"""tag, length, crc32"""
_HEADER_V1 = struct.Struct("<II")
_SUFFIX = ".wal"
_STAGING = 8 << 20
_SPARE_SUFFIX = ".spare"
GROUP_SUFFIX = ".group"
"""A group's record: its members' tokens, one a line, in order; the file's stem is the group's token."""


class WalUnavailable(Exception):
    """The WAL cannot take this request now; the sender should retry."""


class WalFull(WalUnavailable):
    """Taking the request would put the WAL over `max_bytes`."""


class WalWriteError(WalUnavailable):
    """The disk refused the write (full, read-only, I/O error); nothing of the request was kept."""


def encode_table(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _decode_table(payload: memoryview) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


def _row_count(table: pa.Table) -> int:
    return table.num_rows


@dataclass(frozen=True)
class Group:
    """Consecutive segments inserted together under `token`, as their record in the WAL's directory says."""

    token: str
    members: tuple[str, ...]
    """The segments' tokens, in order."""


@dataclass
class Segment:
    """One segment file: the rows of the requests it holds, inserted under `token`, or its group's."""

    path: Path
    token: str
    recovered: bool = False
    """Left by a previous run (its rows were never counted by this run's budgets)."""
    group: Group | None = None
    """Set once recorded (`record_group`): the segment is then only ever inserted with its group."""
    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    size: int = 0
    extent: int = 0
    """The file's size before this use (a kept file written over): it holds the larger of this and `size`."""
    opened_at: float = field(default_factory=time.monotonic)

    @property
    def slack(self) -> int:
        """Bytes of the file's earlier use beyond this one's records: disk held, not counted in `size`."""
        return max(0, self.extent - self.size)

    def table(self) -> pa.Table:
        return pa.concat_tables(self.tables) if len(self.tables) != 1 else self.tables[0]


@dataclass(frozen=True)
class _Nonce:
    """A segment file's use: its records carry `tag` and a checksum seeded with `seed`."""

    value: bytes

    @classmethod
    def new(cls) -> _Nonce:
        """A new use's: never of tag 0, which the zeros ending a segment written with direct I/O carry."""
        while True:
            nonce = cls(os.urandom(_NONCE))
            if nonce.tag:
                return nonce

    @property
    def tag(self) -> int:
        return int.from_bytes(self.value[:4], "little")

    @property
    def seed(self) -> int:
        return zlib.crc32(self.value)

    def header(self, payload: pa.Buffer) -> bytes:
        return RECORD_HEADER.pack(self.tag, payload.size, zlib.crc32(payload, self.seed))


@dataclass
class _Append:
    table: pa.Table
    payload: pa.Buffer
    done: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


class WriteAheadLog:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_rows: int,
        segment_age: float,
        schema: pa.Schema,
        older: tuple[pa.Schema, ...] = (),
        rows_of: Callable[[pa.Table], int] = _row_count,
        recycle_bytes: int | None = None,
    ) -> None:
        """`schema`: what records hold; `older`: what an earlier version's records held, read back at start (a
        segment holds records of one schema). `rows_of`: the rows a record counts for (segments are sealed at
        `segment_rows`). `recycle_bytes`: released files are kept for reuse while the log's files hold at most
        this (at most, and by default, `max_bytes`)."""
        self.directory = directory
        self.max_bytes = max_bytes
        self._recycle_bytes = max_bytes if recycle_bytes is None else min(recycle_bytes, max_bytes)
        self._segment_rows = segment_rows
        self._segment_age = segment_age
        self._followed_age = segment_age
        self._followed_until = 0.0
        self._schemas = (schema, *older)
        self._rows_of = rows_of
        self._cond = threading.Condition()
        self._waiting: list[_Append] = []
        self._sealed: deque[Segment] = deque()
        self._open: Segment | None = None
        self._file: AppendFile | None = None
        self._buffer = mmap.mmap(-1, _STAGING)  # the writer's, reused by every segment file: its pages stay warm
        self._nonce = _Nonce(b"")
        self._spares: list[tuple[Path, int]] = []  # kept files and their sizes, the last kept last
        self._doomed: list[tuple[Path, int]] = []  # kept files the writer deletes before it writes again
        self._slack = 0  # the segments' `slack`, on disk beside `_bytes`
        self._bytes = 0  # in segments' records on disk and reserved by waiting appends
        self._rows = 0  # in segments not yet released
        self._sequence = 0
        self._closing = False
        self._lock_fd = -1
        self._thread: threading.Thread | None = None
        self._failed_bytes = 0
        self.write_error: str | None = None
        """Why the last write failed; None once a write (or a probe) succeeds again."""
        self.quarantined = 0
        """Damaged segment tails moved to quarantine/ by this run's recovery."""

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> list[Segment]:
        """Lock the directory, read back what a previous run left, start the writer; returns that."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise OSError(f"the write-ahead log {self.directory} is in use by another collector") from None
        paths = sorted(self.directory.glob(f"*{_SUFFIX}"))
        groups, stored = self._recorded_groups({_token(path) for path in paths})
        recovered = []
        for path in paths:
            if _token(path) in stored:
                path.unlink()
                continue
            segment = self._recover(path)
            if segment is not None:
                segment.group = groups.get(segment.token)
                recovered.append(segment)
        with self._cond:
            self._sealed.extend(recovered)
            self._slack = sum(segment.slack for segment in recovered)
        for spare in sorted(self.directory.glob(f"*{_SPARE_SUFFIX}")):
            self._keep(spare, spare.stat().st_size)
        self._thread = threading.Thread(target=self._write_loop, name="spanmeter-wal-writer", daemon=True)
        self._thread.start()
        return recovered

    def close(self) -> None:
        """Write what is waiting, seal the open segment and stop the writer. Segments stay on disk; the directory
        stays locked until `unlock` (the exporter may still be storing and deleting segments)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    @property
    def locked(self) -> bool:
        """This collector holds the log's directory: from `open` until `unlock`."""
        return self._lock_fd >= 0

    def unlock(self) -> None:
        """Let another collector take the directory: only once nothing of this one touches its segments."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    @property
    def writer_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the receivers' side -----------------------------------------------------------------

    async def append(self, table: pa.Table) -> None:
        """Returns once `table` is durable; raises WalUnavailable when it cannot be kept."""
        payload = encode_table(table)
        need = payload.size + RECORD_HEADER.size
        loop = asyncio.get_running_loop()
        entry = _Append(table, payload, loop.create_future(), loop)
        with self._cond:
            if self._closing:
                raise WalUnavailable("the collector is shutting down")
            if self._held() + need > self.max_bytes:
                self._doom_spares(self._held() + need - self.max_bytes)  # kept files make room first
            if self._held() + need > self.max_bytes:
                raise WalFull(
                    f"the write-ahead log is full ({self._held()} of {self.max_bytes} bytes on disk, "
                    f"{self._bytes} of them waiting for ClickHouse)"
                )
            self._bytes += need
            self._waiting.append(entry)
            self._cond.notify_all()
        await entry.done

    @property
    def size(self) -> int:
        with self._cond:
            return self._bytes

    @property
    def disk_bytes(self) -> int:
        """What the log's files hold on disk, kept files included: at most `max_bytes`."""
        with self._cond:
            return self._held() + sum(size for _, size in self._doomed)

    def _held(self) -> int:
        """Under the lock: the disk the log's segments and kept files hold (those given up not counted: they are
        deleted before the next write)."""
        return self._bytes + self._slack + sum(size for _, size in self._spares)

    @property
    def rows(self) -> int:
        with self._cond:
            return self._rows

    def probe(self) -> bool:
        """Whether the directory takes a write now as large as the one that failed (readiness after a write
        error, e.g. disk full)."""
        path = self.directory / ".probe"
        try:
            with open(path, "wb") as probe:
                probe.write(b"\0" * max(4096, self._failed_bytes))
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as exc:
            self.write_error = _describe(exc)
            return False
        finally:
            path.unlink(missing_ok=True)
        self.write_error = None
        return True

    # --- the exporter's side -----------------------------------------------------------------

    def take(self, timeout: float, after: Segment | None = None) -> Segment | None:
        """The oldest sealed segment (it stays first until released), or with `after` the one sealed next after
        that one, if `after` is not released yet; None if none came within `timeout`."""
        with self._cond:
            segment = self._next(after)
            if segment is None and not self.drained:
                self._cond.wait(timeout)
                segment = self._next(after)
            return segment

    def sealed_after(self, segment: Segment) -> bool:
        """Whether another segment is sealed after `segment` (a backlog)."""
        with self._cond:
            return self._next(segment) is not None

    def _next(self, after: Segment | None) -> Segment | None:
        sealed = self._sealed
        for index, segment in enumerate(sealed):
            if segment is after:
                return sealed[index + 1] if index + 1 < len(sealed) else None
        return sealed[0] if sealed else None

    def follow(self, age: float, seconds: float) -> None:
        """Seal segments at `age` of age (when shorter than the configured one) for the next `seconds`: someone is
        following the stored calls live (`spanmeter tail`), and segments sealed sooner reach the tables sooner. A
        long age costs less CPU (each insert's cost hardly depends on its rows) when nobody watches."""
        with self._cond:
            self._followed_age = age
            self._followed_until = time.monotonic() + seconds
            self._cond.notify_all()  # the writer thread recomputes how long it waits

    @property
    def drained(self) -> bool:
        """Closed, with every sealed segment released."""
        return self._closing and not self.writer_alive and not self._sealed

    def record_group(self, segments: list[Segment]) -> Group:
        """Record that `segments` (consecutive, not yet stored) are inserted together from now on: durable before
        it returns (written, fsync'd, renamed into place, the directory fsync'd), so a crash leaves either no
        record or a whole one. Raises OSError when the disk refuses it (the segments are then inserted one by
        one, as before)."""
        group = Group(uuid.uuid4().hex, tuple(segment.token for segment in segments))
        path = self.directory / f"{group.token}{GROUP_SUFFIX}"
        partial = path.with_name(path.name + ".partial")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                write_all(fd, "".join(f"{member}\n" for member in group.members).encode())
                os.fdatasync(fd)
            finally:
                os.close(fd)
            os.rename(partial, path)
            _sync_directory(self.directory)
        except OSError:
            partial.unlink(missing_ok=True)
            raise
        for segment in segments:
            segment.group = group
        return group

    def forget_group(self, group: Group) -> None:
        """Every member is released: the record goes (not synced: a record found with its members gone is
        deleted at the next start)."""
        (self.directory / f"{group.token}{GROUP_SUFFIX}").unlink(missing_ok=True)

    def release(self, segment: Segment) -> None:
        """Its rows are stored: its file is kept to be written over by a later segment (or deleted when the log's
        files would hold more than `recycle_bytes` with it: `_keep`). Renamed, not yet synced: after a crash the
        segment may be read back under its name and token, and its insert is then dropped as a retry, as when it
        was deleted."""
        spare = self.directory / f"{segment.token}{_SPARE_SUFFIX}"
        kept: Path | None = spare
        try:
            segment.path.rename(spare)  # renamed before the writer may take it
        except OSError:
            segment.path.unlink(missing_ok=True)
            kept = None
        with self._cond:
            if self._sealed and self._sealed[0] is segment:
                self._sealed.popleft()
            self._bytes -= segment.size
            self._slack -= segment.slack
            self._rows -= segment.rows
            segment.tables = []
            self._cond.notify_all()  # the exporter's thread may wait for the WAL to drain (released on another)
        if kept is not None:
            self._keep(kept, max(segment.size, segment.extent))

    def _keep(self, spare: Path, size: int) -> None:
        """Keep a file for reuse when the log's files hold at most `recycle_bytes` with it; else delete it."""
        with self._cond:
            keep = self._held() + size <= self._recycle_bytes
            if keep:
                self._spares.append((spare, size))
        if not keep:
            spare.unlink(missing_ok=True)

    def _doom_spares(self, room: int | None = None) -> None:
        """Under the lock: the oldest kept files, enough of them to free `room` bytes (all without it), are to be
        deleted, by the writer before it writes again (unlinks of large files kept off the receivers' thread). The
        files written over next are the last kept: their pages are the likeliest still in memory."""
        doomed = 0
        while self._spares and (room is None or doomed < room):
            spare = self._spares.pop(0)
            self._doomed.append(spare)
            doomed += spare[1]
        if doomed:
            self._cond.notify_all()

    def _delete_doomed(self) -> int:
        """On the writer's thread: delete the files `_doom_spares` gave up (counted until they are gone); how many
        there were."""
        with self._cond:
            doomed = list(self._doomed)
        if not doomed:
            return 0
        for spare, _ in doomed:
            spare.unlink(missing_ok=True)
        with self._cond:
            del self._doomed[: len(doomed)]  # any given up meanwhile were appended after them
        return len(doomed)

    # --- the writer thread -------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._doomed and not self._closing and not self._open_is_due():
                    self._cond.wait(self._until_due())
                batch, self._waiting = self._waiting, []
                closing = self._closing
            self._delete_doomed()  # before the batch: the files' space is what lets it fit
            if batch:
                self._write(batch)
            with self._cond:
                if self._open is not None and (closing or self._open_is_due()):
                    self._seal()
                if closing and not self._waiting:
                    return

    def _open_is_due(self) -> bool:
        segment = self._open
        if segment is None or not segment.rows:
            return False
        return segment.rows >= self._segment_rows or time.monotonic() - segment.opened_at >= self._age()

    def _until_due(self) -> float | None:
        if self._open is None or not self._open.rows:
            return None
        return max(0.0, self._age() - (time.monotonic() - self._open.opened_at))

    def _age(self) -> float:
        """Under the lock: the age at which the open segment is sealed now."""
        if time.monotonic() < self._followed_until:
            return min(self._segment_age, self._followed_age)
        return self._segment_age

    def _write(self, batch: list[_Append]) -> None:
        failure: OSError | None = None
        truncated = False
        try:
            segment = self._open or self._new_segment()
            file = self._file
            assert file is not None
            slack = segment.slack
            try:
                for entry in batch:
                    file.write(self._nonce.header(entry.payload))
                    file.write(entry.payload)
                file.sync()
            except OSError:
                truncated = _rollback(file)  # no half-written record left behind to be read back
                raise
        except OSError as exc:
            failure = exc
        with self._cond:
            if failure is None:
                self.write_error = None
                for entry in batch:
                    rows = self._rows_of(entry.table)
                    segment.tables.append(entry.table)
                    segment.rows += rows
                    segment.size += entry.payload.size + RECORD_HEADER.size
                    self._rows += rows
                self._slack += segment.slack - slack  # records written over the earlier use's bytes
            else:
                self.write_error = _describe(failure)
                self._failed_bytes = sum(entry.payload.size + RECORD_HEADER.size for entry in batch)
                self._bytes -= self._failed_bytes
                if truncated:  # a kept file's earlier use beyond the records went with the cut
                    self._slack -= segment.slack
                    segment.extent = min(segment.extent, segment.size)
                logger.error("cannot write %d requests to the write-ahead log: %s", len(batch), self.write_error)
        if failure is not None and failure.errno in (errno.ENOSPC, errno.EDQUOT):
            self._drop_spares()
        for entry in batch:
            entry.loop.call_soon_threadsafe(_settle, entry.done, failure)

    def _drop_spares(self) -> None:
        """The disk is full: the kept files' space goes back to it (the next requests may fit then)."""
        with self._cond:
            self._doom_spares()
        deleted = self._delete_doomed()
        if deleted:
            logger.warning("write-ahead log: the disk is full; deleted %d kept segment files to make room", deleted)

    def _new_segment(self) -> Segment:
        """A segment file, a spare one written over when there is one. Its header (a new nonce) is synced
        before the file takes a segment's name: a reused file read back after a crash never shows the
        records of its earlier use as a segment's."""
        self._sequence += 1
        token = uuid.uuid4().hex
        path = self.directory / f"{time.time_ns():020d}-{self._sequence:06d}-{token}{_SUFFIX}"
        nonce = _Nonce.new()
        with self._cond:
            spare, extent = self._spares.pop() if self._spares else (None, 0)
        file = None
        if spare is not None:
            with contextlib.suppress(OSError):
                file = AppendFile(spare, os.O_WRONLY, self._buffer)
        if file is None:
            spare, extent = None, 0
            file = AppendFile(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self._buffer)
        try:
            file.write(MAGIC + nonce.value)
            file.sync()
            if spare is not None:
                os.rename(spare, path)
            _sync_directory(self.directory)  # the file itself survives power loss, not only its data
        except OSError:
            file.close()
            (spare or path).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            raise
        self._file = file
        self._nonce = nonce
        segment = Segment(path, token, size=SEGMENT_HEADER, extent=extent)
        with self._cond:
            self._bytes += SEGMENT_HEADER
            self._slack += segment.slack
            self._open = segment
        return segment

    def _seal(self) -> None:
        """Under the lock: the open segment becomes the last sealed one (already fsync'd)."""
        assert self._open is not None and self._file is not None
        try:
            self._file.close(max(self._open.size, self._open.extent))
        except OSError as exc:  # the zeros stay: the records before them are whole and synced
            logger.warning("cannot cut a write-ahead log segment's last block to its records: %s", _describe(exc))
        self._file = None
        if self._open.rows:
            self._sealed.append(self._open)
        else:
            self._open.path.unlink(missing_ok=True)
            self._bytes -= self._open.size
            self._slack -= self._open.slack
        self._open = None
        self._cond.notify_all()

    # --- recovery ----------------------------------------------------------------------------

    def _recover(self, path: Path) -> Segment | None:
        token = _token(path)
        data = memoryview(path.read_bytes())
        magic = bytes(data[: len(MAGIC)])
        nonce = _Nonce(bytes(data[len(MAGIC) : SEGMENT_HEADER])) if magic == MAGIC else None
        offset = SEGMENT_HEADER if nonce is not None else len(MAGIC_V1)
        damage = None if magic in (MAGIC, MAGIC_V1) else "not a spanmeter WAL segment"
        if damage is not None:
            offset = 0
        segment = Segment(path, token, recovered=True)
        header = RECORD_HEADER if nonce is not None else _HEADER_V1
        while damage is None and offset < len(data):
            if nonce is not None and (len(data) - offset < 4 or _tag(data, offset) != nonce.tag):
                break  # the end: what follows is an earlier use's (a reused file), or nothing of a whole record
            if len(data) - offset < header.size:
                damage = "a record header cut short (torn write)"
                break
            length, crc = header.unpack_from(data, offset)[-2:]
            payload = data[offset + header.size : offset + header.size + length]
            if len(payload) < length:
                damage = "a record cut short (torn write)"
            elif zlib.crc32(payload, nonce.seed if nonce is not None else 0) != crc:
                damage = "a record whose checksum does not match"
            else:
                try:
                    table = _decode_table(payload)
                    table = _readable(table, self._schemas)
                except (pa.ArrowException, ValueError) as exc:
                    damage = f"a record that is not readable Arrow ({exc})"
                else:
                    segment.tables.append(table)
                    segment.rows += self._rows_of(table)
                    offset += header.size + length
        segment.size = offset
        segment.extent = len(data)  # an earlier use's records may lie beyond the last one read
        if damage is not None:
            self._quarantine(path, data[offset:], offset, damage)
        if not segment.rows:
            path.unlink()
            return None
        self._bytes += segment.size
        self._rows += segment.rows
        logger.info("write-ahead log: %d rows to store from %s, left by a previous run", segment.rows, path.name)
        return segment

    def _recorded_groups(self, present: set[str]) -> tuple[dict[str, Group], set[str]]:
        """The groups a previous run recorded, by member token, and the members whose rows are stored. A group
        whose members' files are all `present` may or may not have been stored: it is inserted again, under its
        token. One with a member gone was stored (members are released only after its insert): the members left
        are. Records of stored groups, and unfinished ones, are deleted."""
        groups: dict[str, Group] = {}
        stored: set[str] = set()
        for partial in self.directory.glob(f"*{GROUP_SUFFIX}.partial"):
            partial.unlink(missing_ok=True)  # never renamed into place: its group was never inserted
        for path in sorted(self.directory.glob(f"*{GROUP_SUFFIX}")):
            group = Group(path.stem, tuple(path.read_text().split()))
            left = [member for member in group.members if member in present]
            if group.members and len(left) == len(group.members):
                groups.update(dict.fromkeys(group.members, group))
                continue
            stored.update(left)
            if left:
                logger.info(
                    "write-ahead log: %d segments of group %s were stored before a restart; deleted",
                    len(left),
                    group.token,
                )
            path.unlink()
        return groups, stored

    def _quarantine(self, path: Path, damaged: memoryview, offset: int, why: str) -> None:
        folder = self.directory / "quarantine"
        folder.mkdir(exist_ok=True)
        target = folder / f"{path.name}.at-{offset}"
        target.write_bytes(damaged)
        self.quarantined += 1
        logger.error(
            "write-ahead log segment %s is damaged at byte %d (%s): the records before it are stored, "
            "the %d bytes from there are kept in %s",
            path.name,
            offset,
            why,
            len(damaged),
            target,
        )


def _token(path: Path) -> str:
    """A segment file's token, the last part of its name."""
    return path.stem.rsplit("-", 1)[-1]


def _tag(data: memoryview, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "little")


def _readable(table: pa.Table, schemas: tuple[pa.Schema, ...]) -> pa.Table:
    """The record as one of `schemas` (upgraded where it can be); ValueError when it is none of them."""
    if table.schema in schemas:
        return table
    for schema in schemas:
        try:
            return _upgraded(table, schema)
        except ValueError:
            continue
    raise ValueError("rows of another schema")


def _upgraded(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A record an older version wrote, before a map column (e.g. `content`) or an integer column (e.g.
    `sampling_threshold`) was added: that column empty or 0, its default in the store, so rows left in the WAL
    across an upgrade are stored, not quarantined."""
    for position, column in enumerate(schema):
        if table.schema.get_field_index(column.name) >= 0:
            continue
        if pa.types.is_map(column.type):
            table = table.add_column(position, column, pa.array([[]] * table.num_rows, type=column.type))
        elif pa.types.is_integer(column.type):
            table = table.add_column(position, column, pa.repeat(pa.scalar(0, column.type), table.num_rows))
    if table.schema != schema:
        raise ValueError("rows of another schema")
    return table


def _settle(future: asyncio.Future[None], failure: OSError | None) -> None:
    if future.done():
        return
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(WalWriteError(f"cannot write the write-ahead log: {_describe(failure)}"))


def _rollback(file: AppendFile) -> bool:
    try:
        file.rollback()
    except OSError as exc:  # the record stays half-written; recovery quarantines it
        logger.error("cannot truncate the write-ahead log after a failed write: %s", _describe(exc))
        return False
    return True


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{exc.strerror or exc} ({name})" if name else str(exc)
