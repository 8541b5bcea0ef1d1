"""Retention: the TTLs `exporters.clickhouse.retention` asks for, set on the tables at start when they differ.

Not a numbered migration: the value is the operator's and may change at any start, so the tables' own TTLs
are read and compared each time (a store is only altered when they differ; several collectors starting
with the same setting at once may each issue the same ALTER, which is harmless). ClickHouse applies a new
TTL to existing parts with a background mutation, and expired rows (or content) disappear as parts merge.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from .config import RetentionConfig

__all__ = ["TableTtls", "apply_retention", "current_ttls"]

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

# (setting, table, time column) of each table-level TTL.
_TABLES = (("rows", "genai_spans", "timestamp"), ("rollups", "genai_spans_hourly", "hour"))


@dataclass(frozen=True)
class TableTtls:
    """The TTLs the tables have, in days; None: none (or one spanmeter did not set, which is replaced)."""

    rows: int | None
    content: int | None
    rollups: int | None
    has_ttl: frozenset[str]
    """Settings whose object has some TTL, even one not in spanmeter's form."""


def current_ttls(client: Client, database: str) -> TableTtls:
    tables = {
        name: (engine, query.rsplit(") ENGINE = ", 1)[0])  # (table clauses, column list)
        for name, engine, query in client.query(
            "SELECT name, engine_full, create_table_query FROM system.tables"
            " WHERE database = {database:String} AND name IN ('genai_spans', 'genai_spans_hourly')",
            parameters={"database": database},
        ).result_rows
    }
    spans, columns = tables.get("genai_spans", ("", ""))
    hourly, _ = tables.get("genai_spans_hourly", ("", ""))
    content = re.search(r"`content` [^`]*", columns)
    content_clause = content[0] if content else ""
    texts = {"rows": spans, "rollups": hourly, "content": content_clause}
    return TableTtls(
        rows=_days(_TTL.search(spans), "timestamp"),
        content=_days(_TTL.search(content_clause), "timestamp"),
        rollups=_days(_TTL.search(hourly), "hour"),
        has_ttl=frozenset(name for name, text in texts.items() if " TTL " in text),
    )


def apply_retention(client: Client, database: str, retention: RetentionConfig) -> list[str]:
    """Set each TTL that differs from `retention`; returns the settings changed."""
    current = current_ttls(client, database)
    changed: list[str] = []
    for setting, table, column in _TABLES:
        days = getattr(retention, setting)
        parameters = {"database": database, "table": table, "column": column, "days": days}
        if days and getattr(current, setting) != days:
            client.command(_MODIFY_TTL, parameters=parameters)
        elif not days and setting in current.has_ttl:
            client.command(_REMOVE_TTL, parameters=parameters)
        else:
            continue
        changed.append(setting)
    days = retention.content
    if days and current.content != days:
        client.command(_MODIFY_CONTENT_TTL, parameters={"database": database, "days": days})
        changed.append("content")
    elif not days and "content" in current.has_ttl:
        client.command(_REMOVE_CONTENT_TTL, parameters={"database": database})
        changed.append("content")
    for setting in changed:
        was, now = getattr(current, setting), getattr(retention, setting)
        logger.info("retention of %s in database %s set to %s (was %s)", setting, database, _kept(now), _kept(was))
    return changed


def _days(match: re.Match[str] | None, column: str) -> int | None:
    return int(match[2]) if match is not None and match[1] == column else None


def _kept(days: int | None) -> str:
    return f"{days} days" if days else "forever"
