"""Connecting to ClickHouse (embedded chDB or a server) and applying the schema.

One code path for both: clickhouse-connect's `chdb://PATH` DSN runs the ClickHouse engine in-process.
"""

from __future__ import annotations

import logging
import os
from importlib import resources

import clickhouse_connect
from clickhouse_connect.driver.client import Client

__all__ = ["StoreError", "apply_schema", "connect", "describe_endpoint", "first_line", "schema_files"]

logger = logging.getLogger(__name__)


class StoreError(Exception):
    """The store cannot be reached or used; the message says which and why."""


def connect(endpoint: str, username: str = "default", password: str = "") -> Client:
    """Open a client; an embedded store's directory is created if missing."""
    try:
        if endpoint.startswith("chdb://"):
            path = os.path.abspath(endpoint.removeprefix("chdb://"))
            os.makedirs(path, exist_ok=True)
            return clickhouse_connect.get_client(dsn=f"chdb://{path}")
        return clickhouse_connect.get_client(dsn=endpoint, username=username, password=password)
    except Exception as exc:  # the driver raises many kinds; all mean "no store"
        raise StoreError(f"cannot open ClickHouse at {describe_endpoint(endpoint)}: {first_line(exc)}") from exc


def schema_files() -> list[tuple[str, str]]:
    """The numbered `.sql` files of clickhouse/schema/, in order, as (name, text)."""
    package = resources.files("spanmeter.schema")
    files = sorted(
        (entry.name, entry.read_text(encoding="utf-8")) for entry in package.iterdir() if entry.name.endswith(".sql")
    )
    if not files:
        raise StoreError("no schema files found in package spanmeter.schema")
    return files


def apply_schema(client: Client, database: str) -> None:
    """Create the database and every table and view; each statement is `IF NOT EXISTS`."""
    client.command("CREATE DATABASE IF NOT EXISTS {database:Identifier}", parameters={"database": database})
    for name, text in schema_files():
        for statement in _statements(text):
            try:
                client.command(statement, parameters={"database": database})
            except Exception as exc:
                raise StoreError(f"schema file {name} failed: {first_line(exc)}") from exc


def describe_endpoint(endpoint: str) -> str:
    """The endpoint without credentials, for logs."""
    if "@" in endpoint and "://" in endpoint:
        scheme, rest = endpoint.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return endpoint


def _statements(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
