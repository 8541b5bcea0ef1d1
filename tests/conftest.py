"""Suite-wide fixtures. chDB allows ONE data directory per process (a second path fails with
"EmbeddedServer already initialized with path ..."), so the embedded store is a session fixture
defined once, here, for every test directory; each test works in a database of its own.

The collector is imported only when a test asks for the store: the instrumentation's tests run with
``pip install -e './instrumentation[test]'`` alone, without the collector's dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb-store")


@pytest.fixture(scope="session")
def store(chdb_path: Path) -> Iterator[Client]:
    from spanmeter.store import connect

    client = connect(f"chdb://{chdb_path}")
    yield client
    client.close()
