"""Schema migrations: each numbered file of clickhouse/schema/ is applied once per database and recorded in
its `schema_migrations` table, also when several collectors start together against one store.

ClickHouse has no transactions, so a migration is claimed rather than locked: a collector inserts a
`claimed` row under `insert_deduplication_token = migration-VERSION-ATTEMPT` into a MergeTree that keeps a
deduplication window. Of collectors racing, the store keeps one row, so exactly one finds its own name on it
and applies the migration, then records `applied`; the others poll until they see that row. A claimer that
dies mid-way leaves a claim that goes stale after `claim_timeout`; the next collector claims the next attempt
and runs the migration again. Hence the rule for migration files: each statement must be safe to run twice
(`IF NOT EXISTS`, `ADD COLUMN IF NOT EXISTS`, `MODIFY TTL` / `MODIFY SETTING`; a new rollup's backfill, an
`INSERT ... SELECT`, reads only the rows stored before the first row its view wrote, 012-015), since a claimer can
die between two statements; the claim makes a migration run once in the normal case, not at most once.

The files up to BASELINE (001-007) predate the table. A store an older spanmeter created has their tables
but no records: it is adopted, the baseline recorded as `adopted`. Their statements are only
`CREATE ... IF NOT EXISTS` and `ALTER ... MODIFY SETTING` (a test holds them to it), so running them on
such a store changes nothing that exists and creates what an even older version did not have.

On a cluster (`exporters.clickhouse.cluster`) each statement runs in its cluster form (cluster.py), and the
bookkeeping table is one replicated table on every node, so a claim is deduplicated cluster-wide. A node can
show a claim late (replicas fetch in the background, and a load balancer may send each query to another
node), so a collector whose claim is the kept one applies the migration whenever it finds it so, not only
right after claiming.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from clickhouse_connect.driver.client import Client

from .cluster import cluster_statements, migrations_table_statements
from .store import StoreError, first_line, schema_files, statements

__all__ = ["BASELINE", "Migration", "Migrator", "default_collector_name", "migrations"]

logger = logging.getLogger(__name__)

BASELINE = 7
"""The highest version an older spanmeter applied at every start without recording it."""

_FILE_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")
_TABLE_SQL = resources.files("spanmeter.queries").joinpath("schema_migrations.sql").read_text(encoding="utf-8")
_COLUMNS = ("version", "name", "checksum", "state", "attempt", "applied_at", "collector", "detail")
# schema_migrations.sql's types, given with each insert: without them the driver asks the store for the table's
# columns (a DESCRIBE) before every insert, two of the five queries a migration's records cost.
_TYPES = ("UInt32", "String", "String", "LowCardinality(String)", "UInt32", "DateTime64(3, 'UTC')", "String", "String")
_DONE = ("applied", "adopted")
_FIRST_POLL = 0.01
"""Seconds before the first look at a migration another collector is applying: most take tens of milliseconds, so
a collector starting beside another would otherwise wait a whole poll_interval at each of them. Each look waits
twice as long as the one before, up to poll_interval."""
_MIGRATOR_NUMBERS = itertools.count(1)
"""Numbers the Migrators of this process, each a claimant of its own."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        """sha256 of the file's statements (comments may change freely): a recorded migration whose statements
        changed since is logged."""
        return hashlib.sha256(";\n".join(statements(self.text)).encode()).hexdigest()


@dataclass(frozen=True)
class _Row:
    state: str
    attempt: int
    applied_at: datetime
    collector: str
    checksum: str


def migrations() -> list[Migration]:
    """The numbered files, in order; a badly named file or a version used twice is an error of the package."""
    found: list[Migration] = []
    for name, text in schema_files():
        match = _FILE_NAME.match(name)
        if match is None:
            raise StoreError(f"schema file {name} is not named NNN_name.sql")
        found.append(Migration(int(match.group(1)), name, text))
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two schema files share a version: {sorted(versions)}")
    return found


def default_collector_name() -> str:
    """Who applied a migration, as recorded: host and process."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Migrator:
    """Brings one database to the newest schema; see the module docstring for the protocol."""

    def __init__(
        self,
        client: Client,
        database: str,
        collector: str | None = None,
        claim_timeout: float = 900.0,
        poll_interval: float = 0.2,
        *,
        cluster: str | None = None,
    ) -> None:
        self._client = client
        self._database = database
        self._cluster = cluster
        # Unique per Migrator even within one process: two collectors in one process are two claimants. Not id(self):
        # a Migrator made after another was freed may get its address, and would take that one's claim for its own.
        self.collector = collector or f"{default_collector_name()}-{next(_MIGRATOR_NUMBERS)}"
        self._claim_timeout = claim_timeout
        self._poll = poll_interval
        self.applied: list[int] = []
        """Versions this Migrator applied (or adopted) itself."""

    def migrate(self) -> list[int]:
        """Apply every migration the database has not recorded; returns the versions applied here."""
        self._ddl("CREATE DATABASE IF NOT EXISTS {database:Identifier}")
        legacy = self._table_exists("genai_spans") and not self._table_exists("schema_migrations")
        for statement in statements(_TABLE_SQL):
            self._ddl(statement, migrations_table_statements)
        recorded = self._all_rows()  # one read for all: on a migrated database, the only one
        done = {version for version, rows in recorded.items() if any(row.state in _DONE for row in rows)}
        legacy = legacy or (not done and self._table_exists("genai_spans"))
        known = migrations()
        self._warn_unknown(done - {m.version for m in known})
        for migration in known:
            self._bring(migration, legacy and migration.version <= BASELINE, recorded.get(migration.version, []))
        return self.applied

    # --- one migration -----------------------------------------------------------------------

    def _bring(self, migration: Migration, adopt: bool, rows: list[_Row]) -> None:
        """Return once `migration` is recorded done, by this collector or another. `rows`: its rows as read at
        the start of this run; read again on each later round."""
        waited_since = None
        pause = min(_FIRST_POLL, self._poll)
        while True:
            if waited_since is not None:
                rows = self._rows(migration.version)
            done = [row for row in rows if row.state in _DONE]
            if done:
                if done[0].checksum != migration.checksum:
                    logger.warning(
                        "schema migration %s changed since it was %s by %s; it is not applied again",
                        migration.name,
                        done[0].state,
                        done[0].collector,
                    )
                return
            attempt = max((row.attempt for row in rows), default=0)
            current = [row for row in rows if row.attempt == attempt]
            if attempt == 0 or any(row.state == "failed" for row in current) or self._stale(current):
                attempt += 1
                self._insert(migration, "claimed", attempt, token=f"migration-{migration.version}-{attempt}")
                current = [row for row in self._rows(migration.version) if row.attempt == attempt]
            if [row.collector for row in current if row.state == "claimed"] == [self.collector]:
                self._run(migration, attempt, adopt)  # the kept claim is this collector's (maybe seen late)
                return
            if waited_since is None:
                waited_since = time.monotonic()
                logger.info("waiting for another collector to apply schema migration %s", migration.name)
            time.sleep(pause)
            pause = min(pause * 2, self._poll)

    def _run(self, migration: Migration, attempt: int, adopt: bool) -> None:
        state = "adopted" if adopt else "applied"
        try:
            for statement in statements(migration.text):
                self._ddl(statement)
        except Exception as exc:
            detail = first_line(exc)
            self._insert(migration, "failed", attempt, detail=detail)
            raise StoreError(f"schema migration {migration.name} failed: {detail}") from exc
        self._insert(migration, state, attempt, token=f"migration-{migration.version}-{attempt}-{self.collector}")
        self.applied.append(migration.version)
        logger.info("schema migration %s %s in database %s", migration.name, state, self._database)

    def _stale(self, claims: list[_Row]) -> bool:
        """A claim older than claim_timeout without an outcome: its collector stopped mid-way."""
        if not claims:
            return False
        age = (datetime.now(UTC) - claims[0].applied_at).total_seconds()
        return age > self._claim_timeout

    # --- the store ---------------------------------------------------------------------------

    def _command(self, sql: str) -> None:
        self._client.command(sql, parameters={"database": self._database})

    def _ddl(self, statement: str, on_cluster: Callable[[str, str, str], list[str]] = cluster_statements) -> None:
        """A schema statement, in its cluster form when there is a cluster (written out: no parameters)."""
        if self._cluster is None:
            self._command(statement)
            return
        for sql in on_cluster(statement, self._cluster, self._database):
            self._client.command(sql)

    def _table_exists(self, table: str) -> bool:
        result = self._client.command(
            "EXISTS TABLE {database:Identifier}.{table:Identifier}",
            parameters={"database": self._database, "table": table},
        )
        return bool(int(str(result)))

    def _rows(self, version: int) -> list[_Row]:
        """This version's rows, first written first (the kept claim of an attempt is its only claim)."""
        return self._all_rows().get(version, [])

    def _all_rows(self) -> dict[int, list[_Row]]:
        """Every version's rows (a few per migration), each version's first written first."""
        result = self._client.query(
            "SELECT version, state, attempt, applied_at, collector, checksum"
            " FROM {database:Identifier}.schema_migrations ORDER BY version, attempt, applied_at",
            parameters={"database": self._database},
        )
        rows: dict[int, list[_Row]] = {}
        for version, state, attempt, at, collector, checksum in result.result_rows:
            rows.setdefault(version, []).append(_Row(state, attempt, _utc(at), collector, checksum))
        return rows

    def _warn_unknown(self, newer: set[int]) -> None:
        """`newer`: versions recorded done that this spanmeter has no file for."""
        if newer:
            logger.warning(
                "database %s has schema migrations %s that this spanmeter does not know: a newer version applied them",
                self._database,
                sorted(newer),
            )

    def _insert(self, migration: Migration, state: str, attempt: int, token: str = "", detail: str = "") -> None:
        row = (
            migration.version,
            migration.name,
            migration.checksum,
            state,
            attempt,
            datetime.now(UTC),
            self.collector,
            detail,
        )
        # A failure row carries no token: each failure is worth keeping.
        settings = {"insert_deduplication_token": token} if token else None
        self._client.insert(
            f"{self._database}.schema_migrations",
            [row],
            column_names=_COLUMNS,
            column_type_names=_TYPES,
            settings=settings,
        )


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
