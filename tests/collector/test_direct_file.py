"""The WAL's segment files written with direct I/O: what a file holds after any mix of writes, syncs and rollbacks
is what was synced, byte for byte, then zeros to the end of its block; and the log uses it and reads it back."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanmeter.exporters.direct_file import BLOCK, AppendFile
from spanmeter.exporters.wal import WriteAheadLog

from .test_wal import REQUESTS_SCHEMA, append, request_log, rows_in

WRITE = st.tuples(st.just("write"), st.integers(min_value=0, max_value=3 * BLOCK + 7))
STEPS = st.lists(st.one_of(WRITE, st.just(("sync", 0)), st.just(("rollback", 0))), max_size=25)


@settings(max_examples=150, deadline=None)
@given(steps=STEPS, direct=st.booleans(), reused=st.booleans())
def test_a_file_holds_what_was_synced_then_zeros_to_its_blocks_end(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]], direct: bool, reused: bool
) -> None:
    """A staging buffer of two blocks, so that writes larger than it go out in several pieces; a reused file
    (older bytes beyond the new ones) keeps those past the last block written, until a rollback cuts the file."""
    path = tmp_path_factory.mktemp("direct") / "segment"
    earlier = os.urandom(5 * BLOCK + 123) if reused else b""
    path.write_bytes(earlier)
    buffer = mmap.mmap(-1, 2 * BLOCK)
    file = AppendFile(path, os.O_WRONLY if reused else os.O_WRONLY | os.O_CREAT, buffer, direct=direct)
    assert file.direct is direct  # ext4 or tmpfs under the tests: both take direct I/O
    synced = b""
    pending = b""
    for step, size in steps:
        if step == "write":
            data = os.urandom(size)
            file.write(data)
            pending += data
        elif step == "sync":
            file.sync()
            synced += pending
            pending = b""
            held = path.read_bytes()
            assert held[: len(synced)] == synced
            if direct:
                block_end = -(-len(synced) // BLOCK) * BLOCK
                assert held[len(synced) : block_end] == bytes(block_end - len(synced))[: len(held) - len(synced)]
                assert held[block_end:] == earlier[block_end:]
        else:
            file.rollback()
            pending = b""
            earlier = b""  # the cut takes an earlier use's bytes with it, as the log counts
            assert path.read_bytes() == synced
        assert file.size == len(synced) + len(pending)
    file.sync()
    synced += pending
    file.close(max(len(synced), len(earlier)))
    held = path.read_bytes()
    assert held[: len(synced)] == synced
    assert len(held) == max(len(synced), len(earlier))  # the padding cut, an earlier use's bytes kept


def test_the_log_writes_its_segments_with_direct_io_and_reads_an_unsealed_one_back_whole(tmp_path: Path) -> None:
    """While a segment is open its file is written with O_DIRECT, its last block ending in zeros. A copy of it
    taken then (as a crash leaves it) is read back with every record and nothing quarantined; once sealed, the
    file ends at its last record."""
    wal = request_log(tmp_path / "live", segment_rows=100)
    bodies = [os.urandom(size) for size in (10, 5000, 333, 9000)]
    append(wal, *bodies)
    [segment_file] = (tmp_path / "live").glob("*.wal")
    flags = [
        int(line.split()[1], 8)
        for fd in os.listdir("/proc/self/fd")
        if _points_to(fd, segment_file)
        for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()
        if line.startswith("flags:")
    ]
    assert flags and all(flag & os.O_DIRECT for flag in flags)
    held = segment_file.read_bytes()
    assert len(held) % BLOCK == 0  # whole blocks, the last one ending in zeros
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / segment_file.name).write_bytes(held)

    wal.close()
    wal.unlock()
    assert len(segment_file.read_bytes()) < len(held)  # sealed: the zeros past the last record are gone

    recovered_log = WriteAheadLog(crashed, 2**24, 100, 60.0, schema=REQUESTS_SCHEMA, rows_of=rows_in)
    [recovered] = recovered_log.open()
    assert recovered.table().column("body").to_pylist() == bodies
    assert recovered_log.quarantined == 0
    recovered_log.close()
    recovered_log.unlock()


def _points_to(fd: str, path: Path) -> bool:
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}")) == path
    except OSError:
        return False
