"""The schema on a ClickHouse cluster (`exporters.clickhouse.cluster`), generated from the same schema files.

Each statement of clickhouse/schema/ is rewritten, never copied:

- every CREATE and ALTER runs `ON CLUSTER`, so each node gets it (the database name is written out: a
  distributed DDL query is queued as text for the other nodes);
- a MergeTree-family table `name` becomes a `Replicated*MergeTree` table `name_local` on every node (Keeper
  path `/clickhouse/tables/{shard}/{database}/name_local`, replica `{replica}`: the server's macros) and a
  `Distributed` table under the original name over those, so reports, Grafana and every insert keep using
  the names they know;
- a materialized view reads the local source table and writes the local target: each shard rolls up its own
  rows, and the rollup's sums through the Distributed target are the sums of the shards' sums (a view's
  `ALTER TABLE ... MODIFY QUERY` reads the local tables too);
- ALTERs of settings and TTLs apply to the local tables (which hold the data); a column added or changed is
  changed on the local table, then on the Distributed one (its column list is its own);
- `non_replicated_deduplication_window` becomes `replicated_deduplication_window` (and a time window long
  enough that the count is what limits it, as without a cluster);
- an `INSERT ... SELECT` (a new rollup's backfill) is no DDL: it runs once, on the node the migrator talks to,
  reading and writing the Distributed tables, so every shard's rows are read and each rolled-up row is sent to
  the shard its table's sharding key names, before the statement returns.

The sharding key is deterministic, never `rand()`: an insert through a Distributed table is split by it, and
a retried insert (same rows, same `insert_deduplication_token`) must send each shard the very rows it sent
the first time, or the shard drops the retry's rows as a duplicate of different ones. genai_spans is sharded
by `cityHash64(trace_id)`, so a trace's calls stay on one shard; every other table by a hash of its ORDER BY
key, so the rows a Replacing/SummingMergeTree collapses (and a budget crossing claimed twice under one token)
land on one shard.

The migrations bookkeeping table is not sharded (migrations_table_statements): it is one ReplicatedMergeTree
whose Keeper path has no `{shard}`, so every node of the cluster holds a replica of the same table and its
insert deduplication is cluster-wide: of two collectors claiming a migration through any two nodes, Keeper
keeps one claim. A node may see another's claim late; a collector that does not find its own claim waits,
which is what the claim protocol does anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "CLUSTER_INSERT_SETTINGS",
    "DEDUP_WINDOW_SECONDS",
    "LOCAL_SUFFIX",
    "SHARDING_KEYS",
    "bind",
    "cluster_statements",
    "database_statement",
    "local_name",
    "migrations_table_statements",
]

LOCAL_SUFFIX = "_local"

SHARDING_KEYS: Mapping[str, str] = {"genai_spans": "cityHash64(trace_id)"}
"""Sharding keys chosen per table; any other table is sharded by a hash of its ORDER BY key."""

DEDUP_WINDOW_SECONDS = 400 * 86400
"""`replicated_deduplication_window_seconds`: a replicated table also forgets a block after this long (a week by
default); without a cluster only the count limits it, so this is set past the longest budget window's history."""

CLUSTER_INSERT_SETTINGS: Mapping[str, int] = {"insert_distributed_sync": 1}
"""For an insert through a Distributed table: sent to the shards before it returns (`distributed_foreground_insert`,
under the name every server version knows), each shard's part carrying the insert's `insert_deduplication_token`
and settings. In the background mode the insert returns once queued on the node, so a retry could not be known
to be needed, a claim could not be read back, and queued blocks may be sent batched under other blocks' hashes."""

_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS \{database:Identifier\}\.(\w+)\s*\(", re.IGNORECASE)
_CREATE_MV = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS \{database:Identifier\}\.(\w+)\s+TO\s+", re.IGNORECASE
)
_ALTER = re.compile(r"^ALTER TABLE \{database:Identifier\}\.(\w+)\s+", re.IGNORECASE)
_INSERT_SELECT = re.compile(
    r"^INSERT INTO \{database:Identifier\}\.(\w+)\s*(\([\w\s,]*\))?\s*(?=SELECT\b)", re.IGNORECASE
)
_CREATE_DATABASE = re.compile(r"^CREATE DATABASE IF NOT EXISTS \{database:Identifier\}$", re.IGNORECASE)
_ENGINE = re.compile(r"^ENGINE\s*=\s*(\w+)", re.IGNORECASE)
_CLAUSE = re.compile(r"\b(PARTITION BY|ORDER BY|PRIMARY KEY|SAMPLE BY|TTL|SETTINGS)\b", re.IGNORECASE)
_DEDUP_WINDOW = re.compile(r"\bnon_replicated_deduplication_window\s*=\s*(\d+)", re.IGNORECASE)
_TABLE_REF = re.compile(r"\{database:Identifier\}\.(\w+)")
_MODIFY_QUERY = re.compile(r"^MODIFY QUERY\b", re.IGNORECASE)
_COLUMN_COMMAND = re.compile(r"\b(ADD|DROP|MODIFY|RENAME|COMMENT) COLUMN\b", re.IGNORECASE)
_PARAMETER = re.compile(r"\{(\w+):(\w+)\}")
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def local_name(table: str) -> str:
    """The replicated table on each node behind the Distributed table `table`."""
    return table + LOCAL_SUFFIX


def database_statement(cluster: str, database: str) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {_identifier(database)} ON CLUSTER {_identifier(cluster)}"


def cluster_statements(statement: str, cluster: str, database: str) -> list[str]:
    """One schema statement (`{database:Identifier}` placeholders, as the schema files hold it) as the statements
    that make it on `cluster`, in order; ValueError for a statement with no cluster form here."""
    statement = statement.strip()
    if _CREATE_DATABASE.match(statement):
        return [database_statement(cluster, database)]
    if match := _CREATE_TABLE.match(statement):
        return _create_table(match, statement, cluster, database)
    if match := _CREATE_MV.match(statement):
        return [_materialized_view(match, statement, cluster, database)]
    if match := _ALTER.match(statement):
        return _alter(match, statement, cluster, database)
    if match := _INSERT_SELECT.match(statement):
        return [_insert_select(match, statement, database)]
    raise ValueError(f"no cluster form for this statement: {statement[:80]!r}")


def migrations_table_statements(statement: str, cluster: str, database: str) -> list[str]:
    """The migrations bookkeeping table as one replicated table on every node (no `{shard}` in its Keeper path,
    so a claim's deduplication is cluster-wide; the replica name holds `{shard}` too, to be unique across
    shards); see the module docstring."""
    match = _CREATE_TABLE.match(statement.strip())
    if match is None:
        raise ValueError(f"not a CREATE TABLE statement: {statement[:80]!r}")
    table = match[1]
    columns, engine, args, clauses = _split_create(statement.strip(), match.end() - 1)
    if not engine.endswith("MergeTree") or engine.startswith("Replicated"):
        raise ValueError(f"{table}: expected a MergeTree-family table, got ENGINE = {engine}")
    path = f"'/clickhouse/tables/{{database}}/{table}'"
    replicated = _replicated_engine(engine, path, "'{shard}-{replica}'", args)
    return [_table_sql(database, table, cluster, columns, replicated, clauses)]


def bind(statement: str, parameters: Mapping[str, str | int]) -> str:
    """`statement` with the given `{name:Type}` parameters written out (identifiers and unsigned integers only):
    a distributed DDL query is sent to the other nodes as text. Others (`{database:Identifier}`) are left."""

    def value(match: re.Match[str]) -> str:
        name, kind = match[1], match[2]
        if name not in parameters:
            return match[0]
        given = parameters[name]
        if kind == "Identifier" and isinstance(given, str) and _PLAIN_NAME.match(given):
            return given
        if kind.startswith("UInt") and isinstance(given, int) and given >= 0:
            return str(given)
        raise ValueError(f"cannot write out parameter {name} ({kind}) = {given!r}")

    return _PARAMETER.sub(value, statement)


# --- the rewrites ---------------------------------------------------------------------------


def _create_table(match: re.Match[str], statement: str, cluster: str, database: str) -> list[str]:
    table = match[1]
    columns, engine, args, clauses = _split_create(statement, match.end() - 1)
    if not engine.endswith("MergeTree"):
        return [_table_sql(database, table, cluster, columns, f"{engine}{args}", clauses)]
    if engine.startswith("Replicated"):
        raise ValueError(f"{table}: already replicated ({engine}); the schema files hold the single-server form")
    local = local_name(table)
    path = f"'/clickhouse/tables/{{shard}}/{{database}}/{local}'"
    replicated = _replicated_engine(engine, path, "'{replica}'", args)
    key = SHARDING_KEYS.get(table) or _hash_of_order_by(table, clauses)
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {_qualified(database, table)} ON CLUSTER {_identifier(cluster)}"
        f" AS {_qualified(database, local)}"
        f" ENGINE = Distributed({_literal(cluster)}, {_literal(database)}, {_literal(local)}, {key})"
    )
    return [_table_sql(database, local, cluster, columns, replicated, clauses), distributed]


def _materialized_view(match: re.Match[str], statement: str, cluster: str, database: str) -> str:
    view = match[1]
    rest = statement[match.end() :]
    rest = _TABLE_REF.sub(lambda ref: _qualified(database, local_name(ref[1])), rest)
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {_qualified(database, view)} ON CLUSTER {_identifier(cluster)}"
        f"\nTO {rest}"
    )


def _alter(match: re.Match[str], statement: str, cluster: str, database: str) -> list[str]:
    table = match[1]
    commands = _settings(statement[match.end() :])
    on = f"ON CLUSTER {_identifier(cluster)}"
    if _MODIFY_QUERY.match(commands):  # a view's new SELECT reads the local tables, as its CREATE does
        select = _TABLE_REF.sub(lambda ref: _qualified(database, local_name(ref[1])), commands)
        return [f"ALTER TABLE {_qualified(database, table)} {on}\n{select}"]
    if _TABLE_REF.search(commands):
        raise ValueError(f"ALTER of {table} names another table: no cluster form here")
    altered = [f"ALTER TABLE {_qualified(database, local_name(table))} {on}\n    {commands}"]
    # The Distributed table's columns follow the local table's; its settings and TTLs are not the data's.
    if _COLUMN_COMMAND.search(commands) and not re.search(r"\bTTL\b", commands, re.IGNORECASE):
        altered.append(f"ALTER TABLE {_qualified(database, table)} {on}\n    {commands}")
    return altered


def _insert_select(match: re.Match[str], statement: str, database: str) -> str:
    settings = ", ".join(f"{name} = {value}" for name, value in CLUSTER_INSERT_SETTINGS.items())
    select = _TABLE_REF.sub(lambda ref: _qualified(database, ref[1]), statement[match.end() :])
    columns = f" {' '.join(match[2].split())}" if match[2] else ""  # the columns it writes, the others' DEFAULT
    return f"INSERT INTO {_qualified(database, match[1])}{columns} SETTINGS {settings}\n{select}"


# --- pieces ---------------------------------------------------------------------------------


def _split_create(statement: str, open_paren: int) -> tuple[str, str, str, list[tuple[str, str]]]:
    """(column list with its parentheses, engine name, engine arguments with parentheses or "", clauses)."""
    close = _matching_paren(statement, open_paren)
    columns = statement[open_paren : close + 1]
    rest = statement[close + 1 :].strip()
    engine_match = _ENGINE.match(rest)
    if engine_match is None:
        raise ValueError(f"expected ENGINE = ... after the column list, got {rest[:40]!r}")
    engine = engine_match[1]
    after = rest[engine_match.end() :]
    args = ""
    if after.startswith("("):
        end = _matching_paren(after, 0)
        args, after = after[: end + 1], after[end + 1 :]
    return columns, engine, args, _clauses(after)


def _clauses(text: str) -> list[tuple[str, str]]:
    """The table clauses after the engine, as (keyword, body), split at top-level keywords only."""
    starts = [m for m in _CLAUSE.finditer(text) if _depth(text, m.start()) == 0]
    if text[: starts[0].start() if starts else len(text)].strip():
        raise ValueError(f"unexpected text after the engine: {text.strip()[:40]!r}")
    bounds = [m.start() for m in starts] + [len(text)]
    return [
        (m[1].upper(), text[m.end() : bounds[index + 1]].strip().rstrip(";").strip()) for index, m in enumerate(starts)
    ]


def _table_sql(
    database: str, table: str, cluster: str, columns: str, engine: str, clauses: list[tuple[str, str]]
) -> str:
    body = "\n".join(f"{keyword} {_settings(text) if keyword == 'SETTINGS' else text}" for keyword, text in clauses)
    return (
        f"CREATE TABLE IF NOT EXISTS {_qualified(database, table)} ON CLUSTER {_identifier(cluster)}\n{columns}\n"
        f"ENGINE = {engine}\n{body}"
    ).rstrip()


def _replicated_engine(engine: str, path: str, replica: str, args: str) -> str:
    inner = args[1:-1].strip()
    return f"Replicated{engine}({path}, {replica}{', ' + inner if inner else ''})"


def _settings(text: str) -> str:
    return _DEDUP_WINDOW.sub(
        lambda m: (
            f"replicated_deduplication_window = {m[1]},"
            f" replicated_deduplication_window_seconds = {DEDUP_WINDOW_SECONDS}"
        ),
        text,
    )


def _hash_of_order_by(table: str, clauses: list[tuple[str, str]]) -> str:
    order_by = dict(clauses).get("ORDER BY")
    if not order_by or order_by in ("tuple()", "()"):
        raise ValueError(f"{table}: no ORDER BY key to shard by; add it to SHARDING_KEYS")
    inner = (
        order_by[1:-1] if order_by.startswith("(") and _matching_paren(order_by, 0) == len(order_by) - 1 else order_by
    )
    return f"cityHash64({inner})"


def _matching_paren(text: str, open_at: int) -> int:
    depth = 0
    quote = ""
    for index in range(open_at, len(text)):
        char = text[index]
        if quote:
            if char == quote and text[index - 1] != "\\":
                quote = ""
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced parentheses in {text[open_at : open_at + 40]!r}")


def _depth(text: str, position: int) -> int:
    """Parenthesis depth at `position` (the clauses after the engine hold no quoted parentheses)."""
    return text.count("(", 0, position) - text.count(")", 0, position)


def _qualified(database: str, table: str) -> str:
    return f"{_identifier(database)}.{table}"


def _identifier(name: str) -> str:
    if not _PLAIN_NAME.match(name.replace("-", "_")):
        raise ValueError(f"not a name: {name!r}")
    return f"`{name}`"


def _literal(name: str) -> str:
    return f"'{name}'"
