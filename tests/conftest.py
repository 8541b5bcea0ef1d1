"""Suite-wide fixtures. chDB allows ONE data directory per process (a second path fails with
"EmbeddedServer already initialized with path ..."), so the embedded store is a session fixture
defined once, here, for every test directory; each test works in a database of its own.

The collector is imported only when a test asks for the store: the instrumentation's tests run with
``pip install -e './instrumentation[test]'`` alone, without the collector's dependencies."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


# Every segment is read by the engine in tests, however small (the shipped default leaves small ones to the
# Python reader): the suite runs through the engine, and the reference is compared with it in its own tests.
os.environ.setdefault("SPANMETER_ENGINE_MIN_SPANS", "0")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist's `--dist loadgroup` (`make test` runs `-n 2 --dist loadgroup`), tests go to the workers
    in groups: a whole module to one worker, whose tests may share a module-scoped collector; all of
    tests/grafana/ to one, whose tests share the session's seeded databases (seeding them on two workers would cost
    more than it saves); all of tests/conventions/ to one, whose two modules compare with the same reference rows,
    made once a session. xdist's own loadgroup scheduler finds a test's group in a suffix its workers add to the
    node id, which pytest 9.2's structured node ids no longer keep (pytest-xdist#1386): every test went alone."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return ByGroup(config, log)


def xdist_group(nodeid: str) -> str:
    """The group of the test `tests/DIR/test_x.py::test_y[...]`: its directory for grafana and conventions, else
    its module."""
    module = nodeid.split("::", 1)[0]
    parts = module.split("/")
    return parts[1] if parts[:1] == ["tests"] and parts[1:2] in (["grafana"], ["conventions"]) else module


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb-store")


@pytest.fixture(scope="session")
def store(chdb_path: Path) -> Iterator[Client]:
    from spanmeter.store import connect

    client = connect(f"chdb://{chdb_path}")
    yield client
    client.close()
