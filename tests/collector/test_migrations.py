"""Schema migrations on the real engine (chDB): each numbered file applied once per database and recorded,
with several collectors starting together; a store an older spanmeter created adopted as it is."""

from __future__ import annotations

import re
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clickhouse_connect.driver.client import Client

from spanmeter.config import Config
from spanmeter.migrations import BASELINE, Migrator, migrations
from spanmeter.service import CollectorThread
from spanmeter.store import apply_schema, statements

from .conftest import emit, tracer_provider, wait_for_rows
from .test_pricing_e2e import genai_attributes


def recorded(store: Client, database: str) -> list[tuple[int, str, int]]:
    """(version, state, attempt) of every row of schema_migrations, in order."""
    return [
        (version, state, attempt)
        for version, state, attempt in store.query(
            "SELECT version, state, attempt FROM {db:Identifier}.schema_migrations ORDER BY version, applied_at",
            parameters={"db": database},
        ).result_rows
    ]


def done_versions(store: Client, database: str) -> list[int]:
    return [version for version, state, _ in recorded(store, database) if state in ("applied", "adopted")]


def test_two_collectors_starting_together_apply_each_migration_once(
    make_config: Callable[..., Config], store: Client, database: str, tmp_path: Path
) -> None:
    # Each collector has a write-ahead log of its own (one collector locks a WAL directory).
    configs = [
        make_config({"exporters": {"clickhouse": {"queue": {"directory": str(tmp_path / f"wal-{i}")}}}})
        for i in range(2)
    ]
    threads = [CollectorThread(config) for config in configs]
    started: list[BaseException | None] = [None, None]
    gate = threading.Barrier(2)

    def start(index: int) -> None:
        gate.wait()
        try:
            threads[index].start()
        except BaseException as exc:  # reported below, with the other thread's outcome
            started[index] = exc

    runners = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(60)
    try:
        assert started == [None, None], "".join(
            line for exc in started if exc is not None for line in traceback.format_exception(exc)
        )
        versions = [migration.version for migration in migrations()]
        assert done_versions(store, database) == versions  # each once, in order
        claims = [version for version, state, _ in recorded(store, database) if state == "claimed"]
        assert claims == versions  # of two racing claims per version, the store kept one
        # Both collectors work on the migrated schema.
        collector = threads[0].collector
        emit(tracer_provider(collector), "chat", genai_attributes("openai", "gpt-4o", {"input": 10, "output": 2}))
        wait_for_rows(collector, 1)
    finally:
        for thread in threads:
            thread.stop()


def test_many_migrators_racing_in_threads_record_each_version_once(store: Client, database: str) -> None:
    """More claimants than collectors usually are, without the collectors' start-up around them."""
    migrators = [Migrator(store, database, poll_interval=0.02) for _ in range(4)]
    gate = threading.Barrier(len(migrators))
    errors: list[BaseException] = []

    def run(migrator: Migrator) -> None:
        gate.wait()
        try:
            migrator.migrate()
        except BaseException as exc:
            errors.append(exc)

    runners = [threading.Thread(target=run, args=(m,)) for m in migrators]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(60)
    assert errors == []
    versions = [migration.version for migration in migrations()]
    assert done_versions(store, database) == versions
    assert sorted(v for m in migrators for v in m.applied) == versions  # each applied by exactly one


def test_a_recorded_store_is_not_migrated_again(store: Client, database: str) -> None:
    first = Migrator(store, database)
    before = datetime.now(UTC)
    assert first.migrate() == [migration.version for migration in migrations()]
    rows = recorded(store, database)
    # Each record holds what was written (the migrator gives the driver the table's column types itself).
    latest = migrations()[-1]
    [applied] = store.query(
        "SELECT name, checksum, applied_at, collector, detail FROM {db:Identifier}.schema_migrations"
        " WHERE version = {v:UInt32} AND state = 'applied'",
        parameters={"db": database, "v": latest.version},
    ).result_rows
    name, checksum, applied_at, collector, detail = applied
    assert (name, checksum, collector, detail) == (latest.name, latest.checksum, first.collector, "")
    assert before - timedelta(seconds=1) <= applied_at.replace(tzinfo=UTC) <= datetime.now(UTC)
    assert Migrator(store, database).migrate() == []
    apply_schema(store, database)
    assert recorded(store, database) == rows


def test_an_older_store_without_records_is_adopted_with_its_rows(store: Client, database: str) -> None:
    # What spanmeter did before migrations were recorded: every statement of 001-007 at each start.
    store.command("CREATE DATABASE {db:Identifier}", parameters={"db": database})
    baseline = [m for m in migrations() if m.version <= BASELINE]
    assert [m.version for m in baseline] == list(range(1, BASELINE + 1))
    for migration in baseline:
        for statement in statements(migration.text):
            store.command(statement, parameters={"database": database})
    row = {"timestamp": datetime(2026, 1, 5, tzinfo=UTC), "trace_id": "t", "span_id": "s", "total_cost": 1}
    store.insert(f"{database}.genai_spans", [list(row.values())], column_names=list(row))
    # A setting an operator changed by hand on the old store stays.
    store.command(
        "ALTER TABLE {db:Identifier}.ingest_rejections MODIFY TTL toDateTime(rejected_at) + INTERVAL 7 DAY",
        parameters={"db": database},
    )

    migrator = Migrator(store, database)
    migrator.migrate()

    states = {version: state for version, state, _ in recorded(store, database) if state != "claimed"}
    assert states == {m.version: ("adopted" if m.version <= BASELINE else "applied") for m in migrations()}
    assert store.query(
        "SELECT span_id, total_cost, content FROM {db:Identifier}.genai_spans", parameters={"db": database}
    ).result_rows == [("s", 1, {})]
    ttl = store.command(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'ingest_rejections'",
        parameters={"db": database},
    )
    assert "toIntervalDay(7)" in str(ttl)


def test_baseline_files_only_hold_statements_safe_to_run_on_an_existing_store() -> None:
    """Adoption runs 001-007 on a store that has their tables: nothing in them may replace or drop anything."""
    safe = re.compile(r"^(CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS|ALTER TABLE \S+ MODIFY SETTING) ", re.I)
    for migration in migrations():
        if migration.version <= BASELINE:
            for statement in statements(migration.text):
                assert safe.match(statement), (migration.name, statement[:80])


def test_each_migrator_claims_under_its_own_name_even_after_another_is_freed(store: Client, database: str) -> None:
    """A Migrator made after another was freed (CPython may give it the same address) is another claimant: were it
    named as the freed one, it would take that one's claim for its own and apply the migration at once."""
    names = [Migrator(store, database).collector for _ in range(20)]
    assert len(set(names)) == len(names)


def test_a_stale_claim_is_taken_over_and_a_live_one_waited_for(store: Client, database: str) -> None:
    Migrator(store, database).migrate()
    newest = migrations()[-1]
    # Make the newest migration look claimed by a collector that died before recording its outcome.
    store.command(
        "DELETE FROM {db:Identifier}.schema_migrations WHERE version = {v:UInt32} AND state != 'claimed'",
        parameters={"db": database, "v": newest.version},
    )
    store.command(
        "ALTER TABLE {db:Identifier}.schema_migrations UPDATE applied_at = {at:DateTime64(3)}"
        " WHERE version = {v:UInt32} SETTINGS mutations_sync = 1",
        parameters={"db": database, "v": newest.version, "at": datetime.now(UTC) - timedelta(hours=1)},
    )
    waiting = Migrator(store, database, claim_timeout=7200, poll_interval=0.02)
    waiter = threading.Thread(target=waiting.migrate, daemon=True)
    waiter.start()
    waiter.join(1.0)
    assert waiter.is_alive()  # a claim younger than claim_timeout: its collector may still be at work

    taker = Migrator(store, database, claim_timeout=60)
    assert taker.migrate() == [newest.version]
    waiter.join(10)
    assert not waiter.is_alive() and waiting.applied == []
    mine = [(state, attempt) for version, state, attempt in recorded(store, database) if version == newest.version]
    assert mine == [("claimed", 1), ("claimed", 2), ("applied", 2)]
