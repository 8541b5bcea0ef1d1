"""Connecting to ClickHouse (embedded chDB or a server) and applying the schema.

One code path for both: clickhouse-connect's `chdb://PATH` DSN runs the ClickHouse engine in-process.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import re
import threading
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from . import native

if TYPE_CHECKING:
    from .exporters.config import RetentionConfig


__all__ = [
    "InsertSpool",
    "StoreBusy",
    "StoreError",
    "apply_schema",
    "caused_by_data",
    "connect",
    "database_exists",
    "describe_endpoint",
    "embedded_path",
    "first_line",
    "insert_arrow",
    "schema_files",
    "statements",
    "sync_embedded",
]

logger = logging.getLogger(__name__)

# Embedded stores this process has open: its own lock on them is not another process's.
_opened_here: set[str] = set()
_libc = ctypes.CDLL(None, use_errno=True)


class StoreError(Exception):
    """The store cannot be reached or used; the message says which and why."""


class StoreBusy(StoreError):
    """Another process (a running collector) holds the embedded store: ClickHouse allows one per directory."""


def connect(endpoint: str, username: str = "default", password: str = "") -> Client:
    """Open a client; an embedded store's directory is created if missing."""
    try:
        path = embedded_path(endpoint)
        if path is not None:
            if path not in _opened_here and _held_by_another_process(path):
                raise StoreBusy(f"the embedded store at {path} is in use by another process (a running collector?)")
            os.makedirs(path, exist_ok=True)
            client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
            _opened_here.add(path)
            return client
        if urlsplit(endpoint).username:  # credentials in the URL win over the configured ones
            return clickhouse_connect.get_client(dsn=endpoint)
        return clickhouse_connect.get_client(dsn=endpoint, username=username, password=password)
    except StoreBusy:
        raise
    except Exception as exc:  # the driver raises many kinds; all mean "no store"
        raise StoreError(f"cannot open ClickHouse at {describe_endpoint(endpoint)}: {first_line(exc)}") from exc


def embedded_path(endpoint: str) -> str | None:
    """An embedded store's directory; None for a server."""
    return os.path.abspath(endpoint.removeprefix("chdb://")) if endpoint.startswith("chdb://") else None


def sync_embedded(path: str) -> None:
    """Everything written to the filesystem holding an embedded store, on its disk when this returns (`syncfs`).

    ClickHouse writes parts, and the schema's and migrations' tables, through the page cache without fsync (a
    server relies on its replicas), so a power loss would lose what the WAL let go of after its insert. One
    `syncfs` a batch (not an fsync a file: a part is a dozen files, and an insert writes one in each of fifteen
    tables) flushes them all with one journal commit."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
    finally:
        os.close(fd)


class InsertSpool:
    """Where an embedded store reads its inserts from: files in a scratch directory, which the engine reads in place.

    clickhouse-connect's `insert_arrow` would serialise the rows into one buffer, copy that into a bytes object and
    write it to a new temporary file, and fresh memory is expensive where every new page faults in (virtual
    machines: ~7 ms a MiB). Here the rows are written straight into a file kept and overwritten by the thread's
    next insert, so its pages in the page cache are reused too: as a Native file typed as the table is
    (native.py: the engine converts nothing), else as an Arrow file. The insert and its errors are the same.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._types: dict[str, dict[str, str]] = {}  # per table: its columns' ClickHouse types, read once

    def insert(self, client: Client, table: str, rows: pa.Table, settings: Mapping[str, int | str]) -> bool:
        """Insert `rows` into `table` from a file here; False when no file could be written (its disk is full:
        it may share the WAL's, which only inserts can empty): the caller inserts through the driver."""
        thread = threading.get_ident()
        try:
            if native.available():
                types = self._types.get(table)
                if types is None:
                    types = self._types[table] = native.table_types(client, table)
                path = self.directory / f"insert-{thread}.native"
                if native.write(path, rows, types):
                    columns = ", ".join(quote_identifier(name) for name in rows.schema.names)
                    self._insert(client, f"INSERT INTO {table} ({columns}) FROM INFILE %(path)s FORMAT Native", path,
                                 settings)  # fmt: skip
                    return True
            path = self.directory / f"insert-{thread}.arrow"
            _write_arrow(path, rows)
        except OSError as exc:
            logger.warning("cannot write the insert file in %s, inserting through the driver: %s", self.directory, exc)
            return False
        self._insert(client, f"INSERT INTO {table} FROM INFILE %(path)s FORMAT Arrow", path, settings)
        return True

    def _insert(self, client: Client, statement: str, path: Path, settings: Mapping[str, int | str]) -> None:
        try:
            client.command(statement, parameters={"path": str(path)}, settings=dict(settings))
        except Exception:
            self._types.clear()  # the schema may have changed under us: read it again
            raise


def insert_arrow(
    client: Client, table: str, rows: pa.Table, settings: Mapping[str, int | str], spool: InsertSpool | None = None
) -> None:
    """Insert `rows` into `table` (`database.name`): from a file of `spool` (an embedded store), else through the
    driver (a server, or a spool that cannot write its file)."""
    if spool is None or not spool.insert(client, table, rows, settings):
        client.insert_arrow(table, rows, settings=dict(settings))


def _write_arrow(path: Path, rows: pa.Table) -> None:
    """Write `rows` over the Arrow file at `path` (not truncated first, to reuse its pages)."""
    file = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+b")
    with pa.PythonFile(file, mode="w") as sink:  # closes `file`
        with pa.ipc.new_file(sink, rows.schema) as writer:
            writer.write_table(rows)
        written = sink.tell()
    os.truncate(path, written)


def schema_files() -> list[tuple[str, str]]:
    """The numbered `.sql` files of clickhouse/schema/, in order, as (name, text)."""
    package = resources.files("spanmeter.schema")
    files = sorted(
        (entry.name, entry.read_text(encoding="utf-8")) for entry in package.iterdir() if entry.name.endswith(".sql")
    )
    if not files:
        raise StoreError("no schema files found in package spanmeter.schema")
    return files


def apply_schema(
    client: Client, database: str, retention: RetentionConfig | None = None, cluster: str | None = None
) -> None:
    """Bring `database` to the newest schema (migrations.py: each numbered file applied once, recorded),
    then set the TTLs `retention` asks for (retention.py) when given; on `cluster`, in its cluster form."""
    from .migrations import Migrator  # migrations reads the schema files through this module
    from .retention import apply_retention

    try:
        Migrator(client, database, cluster=cluster).migrate()
        if retention is not None:
            apply_retention(client, database, retention, cluster)
    except StoreError:
        raise
    except Exception as exc:  # the driver raises many kinds; all mean the schema could not be applied
        raise StoreError(f"cannot apply the schema to database {database}: {first_line(exc)}") from exc


def database_exists(client: Client, database: str) -> bool:
    return bool(int(str(client.command("EXISTS DATABASE {database:Identifier}", parameters={"database": database}))))


def _held_by_another_process(path: str) -> bool:
    """ClickHouse flock()s `status` in its data directory while it runs; probe that lock without taking it."""
    status = os.path.join(path, "status")
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def describe_endpoint(endpoint: str) -> str:
    """The endpoint without credentials, for logs."""
    if "@" in endpoint and "://" in endpoint:
        scheme, rest = endpoint.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return endpoint


def statements(text: str) -> list[str]:
    """A schema file's statements, without comment lines."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


# ClickHouse error codes an insert gets because of the rows themselves: retrying the same rows cannot
# help, so the batch is split to set those rows aside. Every other failure (connection refused,
# timeouts, memory limits, too many parts, a table being recreated...) is retried as it is.
_DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        41,  # CANNOT_PARSE_DATETIME
        43,  # ILLEGAL_TYPE_OF_ARGUMENT
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        128,  # TOO_LARGE_ARRAY_SIZE
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        407,  # DECIMAL_OVERFLOW
        469,  # VIOLATED_CONSTRAINT (a CHECK constraint a user added to the table)
    }
)
_CODE = re.compile(r"Code: (\d+)\.")


def caused_by_data(exc: BaseException) -> bool:
    """Whether an insert failed because of what the rows hold (not the store's state)."""
    if isinstance(exc, (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError)):
        return True  # the client could not even encode the rows
    match = _CODE.search(str(exc))
    return match is not None and int(match.group(1)) in _DATA_ERROR_CODES


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
