"""The collector's scratch files (the engine's flattened requests, an embedded store's insert files): on a memory
filesystem when one has room, else beside the write-ahead log; where pipelines.yaml says when it says; a memory
filesystem's directory removed when the collector stops."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from spanmeter.config import Config
from spanmeter.exporters import scratch
from spanmeter.exporters.scratch import Scratch
from spanmeter.service import Collector, CollectorThread

from .conftest import emit, tracer_provider, wait_for_rows

CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 30,
}


@pytest.fixture
def memory_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory the scratch takes for a memory filesystem (the host's /dev/shm may be small or absent)."""
    shared = tmp_path / "shm"
    shared.mkdir()
    monkeypatch.setattr(scratch, "_filesystem", lambda path: "tmpfs" if path == shared else "ext4")
    monkeypatch.setattr(scratch, "SHARED_MEMORY", shared)
    return shared


def test_a_memory_filesystem_with_room_holds_one_directory_per_log(tmp_path: Path, memory_filesystem: Path) -> None:
    first = Scratch(tmp_path / "wal" / "a", shared=memory_filesystem)
    assert first.owned and first.directory.parent == memory_filesystem
    assert Scratch(tmp_path / "wal" / "a", shared=memory_filesystem).directory == first.directory  # after a restart
    assert Scratch(tmp_path / "wal" / "b", shared=memory_filesystem).directory != first.directory


def test_without_room_on_the_memory_filesystem_scratch_is_beside_the_log(
    tmp_path: Path, memory_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scratch, "MIN_FREE", 2**62)  # a container's 64 MiB /dev/shm, say
    chosen = Scratch(tmp_path / "wal", shared=memory_filesystem)
    assert (chosen.directory, chosen.owned) == (tmp_path / "wal", False)


def test_a_disk_directory_is_not_taken_for_a_memory_filesystem(tmp_path: Path) -> None:
    chosen = Scratch(tmp_path / "wal", shared=tmp_path)  # tmp_path is on disk here, or at least not /dev/shm
    assert (chosen.directory, chosen.owned) == (tmp_path / "wal", False)


def test_a_configured_directory_is_used_as_it_is_and_kept(tmp_path: Path, memory_filesystem: Path) -> None:
    chosen = Scratch(tmp_path / "wal", str(tmp_path / "mine"), shared=memory_filesystem)
    assert (chosen.directory, chosen.owned) == (tmp_path / "mine", False)
    chosen.directory.mkdir()
    chosen.remove()
    assert chosen.directory.is_dir()


def store_some(collector: Collector, count: int = 6) -> None:
    provider = tracer_provider(collector)
    for index in range(count):
        emit(provider, "chat gpt-4o-mini", {**CHAT, "gen_ai.response.id": f"r-{index}"})
    provider.shutdown()
    wait_for_rows(collector, count)


def test_a_collector_writes_its_scratch_files_where_configured_not_beside_the_log(
    tmp_path: Path, start_collector: Callable[..., Collector]
) -> None:
    collector = start_collector(
        {"exporters": {"clickhouse": {"scratch_directory": str(tmp_path / "scratch"), "batch": {"max_age": "100ms"}}}}
    )
    store_some(collector)
    assert list((tmp_path / "scratch" / "engine").glob("part-*.bin")), "the engine read no segment"
    assert list((tmp_path / "scratch" / "inserts").glob("insert-*.native")), "no insert went through a file"
    wal = collector.exporter.wal.directory
    assert not (wal / "engine").exists() and not (wal / "inserts").exists()


def test_a_memory_filesystem_directory_is_removed_when_the_collector_stops(
    memory_filesystem: Path, make_config: Callable[..., Config]
) -> None:
    thread = CollectorThread(make_config({"exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}}}))
    collector = thread.start()
    directory = collector.exporter.scratch.directory
    try:
        store_some(collector)
        assert directory.parent == memory_filesystem
        assert list((directory / "engine").glob("part-*.bin")) and list((directory / "inserts").glob("*.native"))
    finally:
        thread.stop()
    assert not directory.exists()
