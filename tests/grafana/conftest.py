"""Fixtures for the Grafana tests: the provisioned files, loaded; chDB databases seeded with clean data and with
each kind of trouble; and a runner that expands a query the way Grafana and the ClickHouse plugin do, then runs it.

The chDB store is the collector tests' session store (one data directory per process, see tests/conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import clickhouse_connect
import pytest
import yaml
from clickhouse_connect.driver.client import Client

from spanmeter.store import apply_schema

from .plugin_macros import QueryContext, expand
from .seed import TROUBLES, seed

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
PROVISIONING = GRAFANA / "provisioning"


def load_build() -> ModuleType:
    """grafana/build.py, which writes the dashboards and rules (not a package: loaded from its path, with its
    folder on sys.path for the modules beside it, as when it runs as a script)."""
    if str(GRAFANA) not in sys.path:
        sys.path.insert(0, str(GRAFANA))
    spec = importlib.util.spec_from_file_location("spanmeter_grafana_build", GRAFANA / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_queries() -> ModuleType:
    """grafana/queries.py, the SQL build.py's dashboards and rules are made of."""
    load_build()
    module = sys.modules["queries"]
    assert Path(module.__file__ or "") == GRAFANA / "queries.py", module.__file__
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted((GRAFANA / "dashboards").glob("*.json"))}


def provisioning(kind: str) -> dict[str, Any]:
    """Every YAML file of grafana/provisioning/<kind>/, merged by top-level key (lists concatenated)."""
    merged: dict[str, Any] = {}
    for path in sorted((PROVISIONING / kind).glob("*.yaml")):
        for key, value in yaml.safe_load(path.read_text()).items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            else:
                merged[key] = value
    return merged


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in provisioning("alerting")["groups"] for rule in group["rules"]]


@dataclass
class Result:
    sql: str
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


class Runner:
    """Runs expanded queries against one seeded database, read-only (readonly=2, as the Grafana user)."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def run(self, sql: str, variables: dict[str, Any], ctx: QueryContext) -> Result:
        expanded = expand(sql, variables, ctx)
        try:
            result = self.client.query(expanded, settings={"readonly": 2})
        except Exception as exc:
            raise AssertionError(f"query failed: {exc}\n{expanded}") from exc
        columns, types = list(result.column_names), [t.name for t in result.column_types]
        if not columns:  # chDB names no columns when no row comes back: ask ClickHouse for the result's shape
            described = self.client.query(f"DESCRIBE TABLE ({expanded})", settings={"readonly": 2}).result_rows
            columns, types = [row[0] for row in described], [row[1] for row in described]
        return Result(expanded, columns, types, list(result.result_rows))


@pytest.fixture(scope="session")
def seeded_now() -> datetime:
    """Now, for the seeded data. The rules read ClickHouse's now(): the daily ones today's spend (since 00:00 UTC),
    the spike one whole minutes before the current one. Seeded in the last minutes of a UTC day, the spike would be
    yesterday's when the rules run; in its first minute, no whole minute of today is over: those minutes are
    waited out (the seed puts the spike after midnight, `seed.trouble_spans`)."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if now > midnight + timedelta(hours=23, minutes=55) or now < midnight + timedelta(minutes=1):
        ahead = midnight + timedelta(days=1 if now.hour else 0, minutes=1, seconds=1)
        time.sleep((ahead - now).total_seconds())
        now = datetime.now(UTC)
    return now


@pytest.fixture(scope="session")
def seeded(store: Client, chdb_path: Path, seeded_now: datetime) -> Iterator[dict[str, Runner]]:
    """Databases by name: `clean`, one per trouble, and `all` (every trouble at once)."""
    datasets = {"clean": (), **{trouble: (trouble,) for trouble in TROUBLES}, "all": TROUBLES}
    runners: dict[str, Runner] = {}
    clients = []
    for name, troubles in datasets.items():
        database = f"g_{name}_{uuid.uuid4().hex[:8]}"
        apply_schema(store, database)
        seed(store, database, seeded_now, troubles)
        client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_path}", database=database)
        clients.append(client)
        runners[name] = Runner(client, database)
    yield runners
    for client in clients:
        client.close()
