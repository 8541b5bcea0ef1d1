"""Suite-wide fixtures. chDB allows ONE data directory per process (a second path fails with
"EmbeddedServer already initialized with path ..."), so the embedded store is a session fixture
defined once, here, for every test directory; each test works in a database of its own.

The collector is imported only when a test asks for the store: the instrumentation's tests run with
``pip install -e './instrumentation[test]'`` alone, without the collector's dependencies."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


# Every segment is read by the engine in tests, however small (the shipped default leaves small ones to the
# Python reader): the suite runs through the engine, and the reference is compared with it in its own tests.
os.environ.setdefault("SPANMETER_ENGINE_MIN_SPANS", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`), one worker runs a whole module, whose tests
    may share a module-scoped collector, and one runs all of tests/grafana/, whose tests share the session's
    seeded databases (seeding them on two workers would cost more than it saves), and one all of
    tests/conventions/, whose two modules compare with the same reference rows, made once a session."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    root = Path(__file__).parent
    for item in items:
        relative = item.path.relative_to(root)
        group = relative.parts[0] if relative.parts[0] in ("grafana", "conventions") else relative.as_posix()
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb-store")


@pytest.fixture(scope="session")
def store(chdb_path: Path) -> Iterator[Client]:
    from spanmeter.store import connect

    client = connect(f"chdb://{chdb_path}")
    yield client
    client.close()
