"""Retention: the TTLs `exporters.clickhouse.retention` asks for, set on the tables at start when they differ.

Not a numbered migration: the value is the operator's and may change at any start, so the tables' own TTLs
are read and compared each time (a store is only altered when they differ; several collectors starting
with the same setting at once may each issue the same ALTER, which is harmless). ClickHouse applies a new
TTL to existing parts with a background mutation, and expired rows (or content) disappear as parts merge.

On a cluster the TTLs are the local tables' (they hold the rows; cluster.py), read on the node connected to
and set ON CLUSTER, the values written out in the statement.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clickhouse_connect.driver.client import Client

from .cluster import bind, cluster_statements, local_name

if TYPE_CHECKING:
    from .exporters.config import RetentionConfig

__all__ = [
    "DAILY_ROLLUPS",
    "ROLLUP_TABLES",
    "TableTtls",
    "apply_retention",
    "current_ttls",
    "time_column",
]

logger = logging.getLogger(__name__)

# How ClickHouse prints `TTL toDateTime(col) + INTERVAL n DAY` back (a bound parameter shows as _CAST(n, ...)).
_TTL = re.compile(r" TTL toDateTime\((\w+)\) \+ toIntervalDay\((?:_CAST\()?(\d+)")

_MODIFY_TTL = (
    "ALTER TABLE {database:Identifier}.{table:Identifier}"
    " MODIFY TTL toDateTime({column:Identifier}) + INTERVAL {days:UInt32} DAY"
)
_REMOVE_TTL = "ALTER TABLE {database:Identifier}.{table:Identifier} REMOVE TTL"
# A column's name cannot be a parameter in MODIFY COLUMN: it is fixed here, not built.
_MODIFY_CONTENT_TTL = (
    "ALTER TABLE {database:Identifier}.genai_spans"
    " MODIFY COLUMN content TTL toDateTime(timestamp) + INTERVAL {days:UInt32} DAY"
)
_REMOVE_CONTENT_TTL = "ALTER TABLE {database:Identifier}.genai_spans MODIFY COLUMN content REMOVE TTL"

# The rollups (002, 012-015, 023-029): `rollups` sets the TTL of each; the daily ones are keyed by `day`, the
# minutely one by `minute`.
ROLLUP_TABLES = (
    "genai_spans_hourly",
    "genai_spans_hourly_stats",
    "genai_sessions_hourly",
    "genai_tags_hourly",
    "genai_spans_ingested_hourly",
    "genai_latency_hourly",
    "genai_latency_daily",
    "genai_input_tokens_hourly",
    "genai_input_tokens_daily",
    "genai_lag_hourly",
    "genai_sessions_daily",
    "genai_spend_minutely",
    "genai_latency_3h",
    "genai_input_tokens_3h",
)
DAILY_ROLLUPS = frozenset({"genai_latency_daily", "genai_input_tokens_daily", "genai_sessions_daily"})
MINUTELY_ROLLUPS = frozenset({"genai_spend_minutely"})


def time_column(table: str) -> str:
    """The column a rollup's TTL counts from."""
    return "day" if table in DAILY_ROLLUPS else "minute" if table in MINUTELY_ROLLUPS else "hour"


# (setting, table, time column) of each table-level TTL.
_TABLES = (
    ("rows", "genai_spans", "timestamp"),
    *(("rollups", table, time_column(table)) for table in ROLLUP_TABLES),
)


@dataclass(frozen=True)
class TableTtls:
    """The TTLs the tables have, in days; None: none (or one spanmeter did not set, which is replaced)."""

    rows: int | None
    content: int | None
    rollups: int | None
    """The rollups' TTL when they all have the same (a rollup added since the last start has none yet)."""
    has_ttl: frozenset[str]
    """Settings whose object has some TTL, even one not in spanmeter's form."""
    tables: dict[str, int | None] = field(default_factory=dict)
    """Each table's TTL in days."""
    tables_with_ttl: frozenset[str] = frozenset()
    """Tables with some TTL, even one not in spanmeter's form."""


def current_ttls(client: Client, database: str, cluster: str | None = None) -> TableTtls:
    names = {_stored(name, cluster): name for _, name, _ in _TABLES}
    tables = {
        names[name]: (engine, query.rsplit(") ENGINE = ", 1)[0])  # (table clauses, column list)
        for name, engine, query in client.query(
            "SELECT name, engine_full, create_table_query FROM system.tables"
            " WHERE database = {database:String} AND name IN {names:Array(String)}",
            parameters={"database": database, "names": list(names)},
        ).result_rows
    }
    clauses = {table: tables.get(table, ("", ""))[0] for _, table, _ in _TABLES}
    days = {table: _days(_TTL.search(clauses[table]), column) for _, table, column in _TABLES}
    content = re.search(r"`content` [^`]*", tables.get("genai_spans", ("", ""))[1])
    content_clause = content[0] if content else ""
    with_ttl = frozenset(table for table, text in clauses.items() if " TTL " in text)
    rollups = {days[table] for table in ROLLUP_TABLES}
    has_ttl = {setting for setting, table, _ in _TABLES if table in with_ttl}
    return TableTtls(
        rows=days["genai_spans"],
        content=_days(_TTL.search(content_clause), "timestamp"),
        rollups=rollups.pop() if len(rollups) == 1 else None,
        has_ttl=frozenset(has_ttl | ({"content"} if " TTL " in content_clause else set())),
        tables=days,
        tables_with_ttl=with_ttl,
    )


def apply_retention(client: Client, database: str, retention: RetentionConfig, cluster: str | None = None) -> list[str]:
    """Set each TTL that differs from `retention`; returns the settings changed."""
    current = current_ttls(client, database, cluster)
    changed: list[str] = []

    def alter(sql: str, **parameters: str | int) -> None:
        if cluster is None:
            client.command(sql, parameters={"database": database, **parameters})
            return
        for statement in cluster_statements(bind(sql, parameters), cluster, database):
            client.command(statement)

    for setting, table, column in _TABLES:
        days = getattr(retention, setting)
        if days and current.tables.get(table) != days:
            alter(_MODIFY_TTL, table=table, column=column, days=days)
        elif not days and table in current.tables_with_ttl:
            alter(_REMOVE_TTL, table=table)
        else:
            continue
        if setting not in changed:
            changed.append(setting)
    days = retention.content
    if days and current.content != days:
        alter(_MODIFY_CONTENT_TTL, days=days)
        changed.append("content")
    elif not days and "content" in current.has_ttl:
        alter(_REMOVE_CONTENT_TTL)
        changed.append("content")
    for setting in changed:
        was, now = getattr(current, setting), getattr(retention, setting)
        logger.info("retention of %s in database %s set to %s (was %s)", setting, database, _kept(now), _kept(was))
    return changed


def _stored(table: str, cluster: str | None) -> str:
    """The table holding `table`'s rows: itself, or on a cluster its local table."""
    return table if cluster is None else local_name(table)


def _days(match: re.Match[str] | None, column: str) -> int | None:
    return int(match[2]) if match is not None and match[1] == column else None


def _kept(days: int | None) -> str:
    return f"{days} days" if days else "forever"
