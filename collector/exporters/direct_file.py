"""A WAL segment file appended to with direct I/O (`O_DIRECT`): its records go from one reused buffer to the disk.

Buffered writes copy every record into the page cache, pages the log never reads again except after a crash. On
the virtual machines these collectors run on, freed memory goes back to the host and comes back at several times
the cost on its next touch, so that copy ran at ~0.4 GB/s under load: the WAL writer's largest cost. A direct
write copies each record once, into a buffer the writer keeps (its pages stay warm), and hands whole blocks to the
device. The file's last, partial block is kept in the buffer and written again, completed, by the next write;
what lies past the last record in it is zeros, which the log's reader takes for the end (no record has tag 0).

Where the filesystem refuses `O_DIRECT`, the file is written through the page cache as before.
"""

from __future__ import annotations

import errno
import mmap
import os

import pyarrow as pa

__all__ = ["AppendFile", "write_all"]

BLOCK = 4096
"""The alignment of a direct write's offset, length and memory: a page, which every block device's logical block
divides."""


class AppendFile:
    """One open segment file, appended to. `write` stages bytes, `sync` makes them durable, `rollback` cuts the
    file back to where the last `sync` left it (a failed write leaves no half record behind)."""

    def __init__(self, path: os.PathLike[str] | str, flags: int, buffer: mmap.mmap, *, direct: bool = True) -> None:
        """`flags`: as `os.open`'s (`O_WRONLY`, with `O_CREAT | O_EXCL` for a new file); `buffer`: the staging
        buffer, a multiple of `BLOCK` long, shared by the files one writer opens one after the other; `direct`:
        False writes through the page cache, as where the filesystem refuses direct I/O."""
        self.direct = direct
        try:
            self.fd = os.open(path, flags | (os.O_DIRECT if direct else 0), 0o644)
        except OSError as exc:
            if not direct or exc.errno != errno.EINVAL:
                raise
            self.direct = False  # the filesystem has no direct I/O (it may have created the file first)
            self.fd = os.open(path, flags & ~os.O_EXCL, 0o644)
        self.size = 0
        """Bytes appended: the file's records end here."""
        self._view = memoryview(buffer)
        self._end = 0  # how far direct writes reached: `size` rounded up to a block
        self._offset = 0  # the file offset of the buffer's first byte, a multiple of BLOCK
        self._fill = 0  # staged bytes in the buffer, from `_offset`
        self._synced = (0, 0, b"")  # size, offset and staged bytes after the last sync

    def write(self, data: bytes | pa.Buffer) -> None:
        view = memoryview(data).cast("B")
        self.size += len(view)
        if not self.direct:
            write_all(self.fd, view)
            return
        room = len(self._view)
        while view:
            take = min(len(view), room - self._fill)
            self._view[self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == room:
                self._write_blocks(room)

    def sync(self) -> None:
        """Write what is staged (the last block padded with zeros) and `fdatasync`: durable when it returns."""
        if self.direct and self._fill:
            whole = -(-self._fill // BLOCK) * BLOCK
            self._view[self._fill : whole] = bytes(whole - self._fill)
            self._write_blocks(whole)
        os.fdatasync(self.fd)
        self._synced = (self.size, self._offset, bytes(self._view[: self._fill]) if self.direct else b"")

    def rollback(self) -> None:
        """Cut the file back to the last `sync`'s end; raises OSError when it cannot."""
        self.size, self._offset, staged = self._synced
        self._fill = len(staged)
        self._view[: self._fill] = staged
        os.ftruncate(self.fd, self.size)
        self._end = min(self._end, self.size)
        if not self.direct:
            os.lseek(self.fd, self.size, os.SEEK_SET)

    def close(self, length: int | None = None) -> None:
        """With `length` (at least `size`: a reused file keeps its earlier use's bytes), the zeros past it that
        filled the last block go first, so the file holds what the log counts."""
        try:
            if length is not None and self._end > length:
                os.ftruncate(self.fd, length)
        finally:
            os.close(self.fd)

    def _write_blocks(self, length: int) -> None:
        """Write the buffer's first `length` bytes (whole blocks) at `_offset`; keep only a partial block staged."""
        written = 0
        while written < length:
            written += os.pwrite(self.fd, self._view[written:length], self._offset + written)
        self._end = max(self._end, self._offset + length)
        whole = self._fill - self._fill % BLOCK
        self._view[: self._fill - whole] = self._view[whole : self._fill]
        self._offset += whole
        self._fill -= whole


def write_all(fd: int, data: bytes | pa.Buffer | memoryview) -> None:
    """All of `data` at the file's position (`os.write` may take less)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]
