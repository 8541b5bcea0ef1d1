"""Rows ClickHouse refused because of what they hold, set aside so nothing behind them waits.

Each refused group of rows is an Arrow file in `rejected/` with a JSON file beside it saying why
and when. `spanmeter rejected list` shows them; `spanmeter rejected retry` moves them to `retry/`,
where the exporter picks them up (a running collector within a second, else at the next start) and
inserts them again; rows refused again come back to `rejected/`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

__all__ = ["DeadLetter", "DeadLetters"]


@dataclass(frozen=True)
class DeadLetter:
    id: str
    rows: int
    error: str
    rejected_at: str
    span_ids: list[str]


class DeadLetters:
    def __init__(self, directory: Path) -> None:
        self.rejected = directory / "rejected"
        self.retry = directory / "retry"

    def put(self, table: pa.Table, letter_id: str, error: str) -> DeadLetter:
        """Keep `table` with the error; durable when this returns."""
        self.rejected.mkdir(parents=True, exist_ok=True)
        span_ids = [str(s) for s in table.column("span_id").to_pylist()[:20]] if "span_id" in table.column_names else []
        letter = DeadLetter(letter_id, table.num_rows, error, datetime.now(UTC).isoformat(), span_ids)
        _write_durably(self.rejected / f"{letter_id}.arrow", _arrow_file(table))
        _write_durably(self.rejected / f"{letter_id}.json", json.dumps(letter.__dict__, indent=1).encode())
        return letter

    def letters(self) -> list[DeadLetter]:
        letters = []
        for path in sorted(self.rejected.glob("*.json")):
            data = json.loads(path.read_text())
            letters.append(DeadLetter(**data))
        return letters

    def requeue(self, letter_id: str) -> bool:
        """Move one dead letter to `retry/`; False when there is none by that id."""
        source = self.rejected / f"{letter_id}.arrow"
        if not source.exists():
            return False
        self.retry.mkdir(parents=True, exist_ok=True)
        os.replace(source, self.retry / source.name)
        (self.rejected / f"{letter_id}.json").unlink(missing_ok=True)
        return True

    def retries(self) -> list[tuple[str, pa.Table]]:
        """Dead letters a user asked to retry, oldest first: (id, rows)."""
        if not self.retry.is_dir():
            return []
        found = []
        for path in sorted(self.retry.glob("*.arrow"), key=lambda p: p.stat().st_mtime):
            with pa.memory_map(str(path)) as source:
                found.append((path.stem, pa.ipc.open_file(source).read_all()))
        return found

    def retried(self, letter_id: str) -> None:
        (self.retry / f"{letter_id}.arrow").unlink(missing_ok=True)


def _arrow_file(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _write_durably(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
