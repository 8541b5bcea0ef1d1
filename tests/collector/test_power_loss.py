"""A power loss after a batch is stored loses no acknowledged span.

The collector's WAL and embedded store live on an ext4 filesystem in an image file on a loop device. The power
loss is a copy of the image taken while the collector runs: it holds what the filesystem had written to its
device, not what was still in the page cache. That copy, mounted again (its journal replayed), is what a machine
finds on its disk after the power comes back."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from .conftest import REPO
from .test_durability import ServeProcess, make_spans, query_store


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """An empty ext4 filesystem mounted from an image file: (the image, where it is mounted)."""
    if not shutil.which("mkfs.ext4") or not shutil.which("losetup"):
        pytest.skip("needs mkfs.ext4 and losetup (e2fsprogs, util-linux)")
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    with image.open("wb") as file:
        file.truncate(1 << 30)
    made = _run("mkfs.ext4", "-q", "-F", str(image))
    assert made.returncode == 0, made.stderr
    mounted = _run("mount", "-o", "loop", str(image), str(mount))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a loop device here (needs root): {mounted.stderr.strip()}")
    try:
        yield image, mount
    finally:
        _run("umount", "-l", str(mount))


def test_a_power_loss_after_an_insert_loses_no_acknowledged_span(tmp_path: Path, disk: tuple[Path, Path]) -> None:
    """The first spans are stored and their WAL segment released; the next request's segment is written over
    that segment's file, so after the power loss only the store can still hold them. ClickHouse writes its parts
    through the page cache without fsync: the collector must have them on disk before it lets the WAL go."""
    image, mount = disk
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    raw["exporters"]["clickhouse"]["batch"] = {"max_rows": 100_000, "max_age": "200ms"}
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(raw))

    serve = ServeProcess(config, mount / "store")
    wal = mount / "store-wal"
    try:
        exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{serve.http_port}/v1/traces")
        assert exporter.export(make_spans(40)) is SpanExportResult.SUCCESS
        deadline = time.monotonic() + 30
        while list(wal.rglob("*.wal")) or not list(wal.rglob("*.spare")):
            assert time.monotonic() < deadline, "the first segment was never stored and released"
            time.sleep(0.05)
        [spare] = wal.rglob("*.spare")
        assert exporter.export(make_spans(5)) is SpanExportResult.SUCCESS  # acknowledged: on disk
        assert not spare.exists()  # written over by the second request's segment
        after = tmp_path / "after.img"
        copied = _run("cp", "--sparse=always", str(image), str(after))  # the power goes out
        assert copied.returncode == 0, copied.stderr
    finally:
        serve.process.kill()
        serve.process.wait(timeout=60)
    _run("umount", str(mount))

    remount = tmp_path / "after"
    remount.mkdir()
    mounted = _run("mount", "-o", "loop", str(after), str(remount))  # replays the journal
    assert mounted.returncode == 0, mounted.stderr
    try:
        restarted = ServeProcess(config, remount / "store")  # the second request's segment is read back
        code, log = restarted.terminate()
        assert code == 0, log
        [[total, distinct]] = query_store(
            remount / "store", "SELECT count(), uniqExact(span_id) FROM spanmeter.genai_spans"
        )
        assert (int(total), int(distinct)) == (45, 45), log
    finally:
        _run("umount", "-l", str(remount))
