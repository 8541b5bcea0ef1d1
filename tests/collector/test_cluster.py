"""The schema's cluster form (cluster.py), without a cluster: every schema file's statements rewritten as
expected, and every generated statement parsed by the real engine (chDB's `EXPLAIN AST` parses a statement
without running it, ON CLUSTER and Replicated engines included). The same against a cluster:
test_clickhouse_server.py, with CLICKHOUSE_URL and CLICKHOUSE_CLUSTER set."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from spanmeter.budgets.store import BudgetStore
from spanmeter.cluster import (
    CLUSTER_INSERT_SETTINGS,
    SHARDING_KEYS,
    bind,
    cluster_statements,
    migrations_table_statements,
)
from spanmeter.config import ClickHouseExporterConfig, ConfigError, RetentionConfig, load_config
from spanmeter.exporters.clickhouse import INSERT_SETTINGS, ClickHouseExporter
from spanmeter.migrations import Migrator, migrations
from spanmeter.retention import ROLLUP_TABLES, apply_retention, time_column
from spanmeter.store import schema_files, statements
from spanmeter.telemetry import CollectorMetrics

from .test_config import write_config

CLUSTER = "spanmeter_cluster"
DATABASE = "spanmeter_db"
ON = f"ON CLUSTER `{CLUSTER}`"
MIGRATIONS_TABLE = resources.files("spanmeter.queries").joinpath("schema_migrations.sql").read_text(encoding="utf-8")
_CREATE = re.compile(r"^CREATE TABLE IF NOT EXISTS \{database:Identifier\}\.(\w+)", re.IGNORECASE)
_ENGINE = re.compile(r"\bENGINE = (\w+)(?:\((.*?)\))?\s*$", re.MULTILINE)


def every_statement() -> list[tuple[str, str]]:
    """(file, statement) for each statement of each schema file."""
    return [(name, statement) for name, text in schema_files() for statement in statements(text)]


def generated() -> list[str]:
    return [sql for _, statement in every_statement() for sql in cluster_statements(statement, CLUSTER, DATABASE)]


def created_tables() -> dict[str, tuple[str, str]]:
    """Each table the schema files create: name -> (engine, engine arguments)."""
    tables = {}
    for _, statement in every_statement():
        if (create := _CREATE.match(statement)) and (engine := _ENGINE.search(statement)):
            tables[create[1]] = (engine[1], engine[2] or "")
    return tables


def formatted(store: Client, sql: str) -> str:
    """The statement as the engine parses it (one line): a statement it cannot parse raises."""
    store.command(f"EXPLAIN AST {sql}")
    text = store.query("SELECT formatQuerySingleLine({sql:String})", parameters={"sql": sql}).result_rows[0][0]
    return str(text)


# --- every generated statement ----------------------------------------------------------------


def test_every_generated_statement_parses_and_runs_on_the_cluster(store: Client) -> None:
    sqls = generated()
    assert len(sqls) > len(every_statement())  # tables come as a local and a Distributed table
    for sql in sqls:
        text = formatted(store, sql)
        assert f"ON CLUSTER {CLUSTER} " in text or text.startswith("INSERT INTO"), text  # a backfill: not DDL
        assert "{database:Identifier}" not in sql  # written out: a distributed DDL travels as text
        assert "non_replicated_deduplication_window" not in sql


def test_explain_ast_refuses_what_does_not_parse(store: Client) -> None:
    with pytest.raises(Exception, match="SYNTAX_ERROR"):
        formatted(store, f"CREATE TABLE db.t {ON} (a UInt8 ENGINE = MergeTree ORDER BY a")


def test_each_merge_tree_table_is_replicated_locally_behind_a_distributed_table(store: Client) -> None:
    tables = created_tables()
    assert {"genai_spans", "genai_spans_hourly", "budget_events", "api_keys"} <= set(tables)
    for table, (engine, args) in tables.items():
        statement = next(s for _, s in every_statement() if (m := _CREATE.match(s)) and m[1] == table)
        local, distributed = (formatted(store, sql) for sql in cluster_statements(statement, CLUSTER, DATABASE))
        path = f"'/clickhouse/tables/{{shard}}/{{database}}/{table}_local', '{{replica}}'"
        extra = f", {args}" if args else ""
        assert local.startswith(f"CREATE TABLE IF NOT EXISTS {DATABASE}.{table}_local {ON.replace('`', '')} (")
        assert f"ENGINE = Replicated{engine}({path}{extra})" in local
        key = SHARDING_KEYS.get(table, "cityHash64(")
        assert distributed.startswith(
            f"CREATE TABLE IF NOT EXISTS {DATABASE}.{table} ON CLUSTER {CLUSTER} AS {DATABASE}.{table}_local"
            f" ENGINE = Distributed('{CLUSTER}', '{DATABASE}', '{table}_local', {key}"
        )
        assert "rand()" not in distributed  # a retried insert must split the same way: see cluster.py


def test_sharding_keys_keep_a_trace_and_a_replacing_key_on_one_shard() -> None:
    def key(table: str) -> str:
        statement = next(s for _, s in every_statement() if (m := _CREATE.match(s)) and m[1] == table)
        return cluster_statements(statement, CLUSTER, DATABASE)[1].rsplit("_local', ", 1)[1]

    assert key("genai_spans") == "cityHash64(trace_id))"
    assert key("budget_events") == "cityHash64(budget, scope_value, window_start, threshold_percent))"
    assert key("budget_status") == "cityHash64(budget, scope_value, window_start))"
    assert key("api_keys") == "cityHash64(key_id))"


def test_the_local_table_keeps_columns_indexes_clauses_and_ttls(store: Client) -> None:
    spans = next(
        s
        for _, s in every_statement()
        if s.startswith("CREATE TABLE IF NOT EXISTS {database:Identifier}.genai_spans\n")
    )
    single = formatted(store, spans.replace("{database:Identifier}", DATABASE))
    local = formatted(store, cluster_statements(spans, CLUSTER, DATABASE)[0])
    columns = single.split(" ENGINE = ")[0].split(" (", 1)[1]
    assert local.split(" ENGINE = ")[0].split(" (", 1)[1] == columns  # columns, codecs and indexes as they are
    assert "INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1" in local
    assert "PARTITION BY toYYYYMM(timestamp) ORDER BY (project, service_name, toStartOfHour(timestamp)" in local
    assert "replicated_deduplication_window = 10000, replicated_deduplication_window_seconds = " in local
    assert "index_granularity = 8192" in local
    rejections = next(s for _, s in every_statement() if ".ingest_rejections\n" in s)
    assert "TTL toDateTime(rejected_at) + toIntervalDay(90)" in formatted(
        store, cluster_statements(rejections, CLUSTER, DATABASE)[0]
    )


def test_materialized_views_read_and_write_the_local_tables(store: Client) -> None:
    views = [s for _, s in every_statement() if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views
    names = re.compile(
        r"^CREATE MATERIALIZED VIEW IF NOT EXISTS \{database:Identifier\}\.(\w+)\s+TO \{database:Identifier\}\.(\w+)"
    )
    for view in views:
        match = names.match(view)
        assert match, view[:100]
        name, target = match[1], match[2]
        (sql,) = cluster_statements(view, CLUSTER, DATABASE)
        text = formatted(store, sql)
        assert text.startswith(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.{name} {ON.replace('`', '')}")
        assert f" TO {DATABASE}.{target}_local " in text
        assert f" FROM {DATABASE}.genai_spans_local " in text
        assert re.findall(rf"{DATABASE}\.(\w+)", text) == [name, f"{target}_local", "genai_spans_local"]


def test_a_views_new_query_reads_the_local_tables(store: Client) -> None:
    """`ALTER TABLE view MODIFY QUERY` (030, 031, 034): the view keeps its name on every node, its SELECT reads the
    local table it names (genai_spans, or a rollup another cascades from) as the view's CREATE does."""
    modified = [s for _, s in every_statement() if " MODIFY QUERY" in s]
    assert len(modified) >= 6
    for statement in modified:
        view = re.match(r"^ALTER TABLE \{database:Identifier\}\.(\w+)\s+MODIFY QUERY", statement)
        assert view, statement[:100]
        (sql,) = cluster_statements(statement, CLUSTER, DATABASE)
        text = formatted(store, sql)
        # formatQuerySingleLine writes an ALTER's commands in parentheses
        assert text.startswith(f"ALTER TABLE {DATABASE}.{view[1]} {ON.replace('`', '')} (MODIFY QUERY SELECT "), text
        (source,) = re.findall(r"\bFROM \{database:Identifier\}\.(\w+)", statement)
        assert source == "genai_spans" or source.endswith(("_hourly", "_hourly_stats")), statement[:100]
        assert re.findall(rf"{DATABASE}\.(\w+)", text) == [view[1], f"{source}_local"]


def test_a_backfill_runs_once_through_the_distributed_tables_and_waits_for_the_shards(store: Client) -> None:
    """A new rollup's INSERT ... SELECT reads every shard's rows and sends each rolled-up row to its shard."""
    backfills = [s for _, s in every_statement() if s.startswith("INSERT INTO")]
    assert len(backfills) >= 4
    for backfill in backfills:
        (sql,) = cluster_statements(backfill, CLUSTER, DATABASE)
        text = formatted(store, sql)
        assert text.startswith(f"INSERT INTO {DATABASE}.") and " SETTINGS insert_distributed_sync = 1 " in text, text
        assert "_local" not in text and "ON CLUSTER" not in text
        assert f" FROM {DATABASE}.genai_spans " in text or f" FROM {DATABASE}.genai_spans AS span " in text


def test_alters_apply_to_the_local_tables_and_column_changes_to_the_distributed_ones_too(store: Client) -> None:
    alters = {
        (name, s): cluster_statements(s, CLUSTER, DATABASE) for name, s in every_statement() if s.startswith("ALTER")
    }
    assert alters
    for (name, statement), sqls in alters.items():
        if " MODIFY QUERY" in statement:  # a view's: test_a_views_new_query_reads_the_local_tables
            continue
        texts = [formatted(store, sql) for sql in sqls]
        assert texts[0].startswith("ALTER TABLE ") and "_local ON CLUSTER" in texts[0], name
        if "ADD COLUMN" in statement:  # content (009), the rollups' estimates (030)...: the Distributed table's follow
            table = re.match(r"^ALTER TABLE \{database:Identifier\}\.(\w+)", statement)
            assert table, statement[:100]
            assert [t.split(" ON CLUSTER")[0] for t in texts] == [
                f"ALTER TABLE {DATABASE}.{table[1]}_local",
                f"ALTER TABLE {DATABASE}.{table[1]}",
            ]
            assert texts[0].split(ON.replace("`", ""))[1] == texts[1].split(ON.replace("`", ""))[1]
        else:  # settings and TTLs are the data's
            assert len(texts) == 1, name
    dedup = next(sqls for (name, _), sqls in alters.items() if name.startswith("006_"))
    assert "MODIFY SETTING replicated_deduplication_window = 100000, replicated_deduplication_window_seconds" in (
        formatted(store, dedup[0])
    )


def test_migrations_table_is_one_replicated_table_on_every_node(store: Client) -> None:
    (statement,) = statements(MIGRATIONS_TABLE)
    (sql,) = migrations_table_statements(statement, CLUSTER, DATABASE)
    text = formatted(store, sql)
    assert text.startswith(f"CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations {ON.replace('`', '')} (")
    # No {shard} in the path: every node is a replica of one table, so a claim's dedup is cluster-wide.
    assert (
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{database}/schema_migrations', '{shard}-{replica}')" in text
    )
    assert "replicated_deduplication_window = 10000" in text
    assert "Distributed" not in text


def test_the_schema_files_stay_single_server_and_every_statement_has_a_cluster_form() -> None:
    for name, text in schema_files():
        assert "ON CLUSTER" not in text and "Replicated" not in text, name  # one source: the cluster form is made
    assert len(migrations()) == len(schema_files())


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE VIEW IF NOT EXISTS {database:Identifier}.v AS SELECT 1",
        "DROP TABLE {database:Identifier}.genai_spans",
        "CREATE TABLE IF NOT EXISTS {database:Identifier}.t (a UInt8) ENGINE = ReplicatedMergeTree ORDER BY a",
        "CREATE TABLE IF NOT EXISTS {database:Identifier}.t (a UInt8) ENGINE = MergeTree ORDER BY tuple()",
        "ALTER TABLE {database:Identifier}.t MOVE PARTITION 1 TO TABLE {database:Identifier}.u",
    ],
)
def test_a_statement_without_a_cluster_form_is_refused(statement: str) -> None:
    with pytest.raises(ValueError):
        cluster_statements(statement, CLUSTER, DATABASE)


def test_other_engines_are_created_on_the_cluster_as_they_are(store: Client) -> None:
    sql = "CREATE TABLE IF NOT EXISTS {database:Identifier}.m (a UInt8) ENGINE = Memory"
    (text,) = cluster_statements(sql, CLUSTER, DATABASE)
    assert (
        formatted(store, text)
        == f"CREATE TABLE IF NOT EXISTS {DATABASE}.m {ON.replace('`', '')} (`a` UInt8) ENGINE = Memory"
    )


def test_bind_writes_out_names_and_numbers_only() -> None:
    sql = (
        "ALTER TABLE {database:Identifier}.{table:Identifier}"
        " MODIFY TTL toDateTime({column:Identifier}) + INTERVAL {days:UInt32} DAY"
    )
    assert bind(sql, {"table": "genai_spans", "column": "timestamp", "days": 30}) == (
        "ALTER TABLE {database:Identifier}.genai_spans MODIFY TTL toDateTime(timestamp) + INTERVAL 30 DAY"
    )
    for bad in ({"table": "x; DROP"}, {"days": -1}, {"days": "30"}):
        with pytest.raises(ValueError):
            bind(sql, bad)


# --- retention and migrations on a cluster ----------------------------------------------------------------


class RecordingClient:
    """Records commands; its tables have no TTL."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        assert not parameters  # written out
        self.commands.append(sql)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        names = ["genai_spans_local", *(f"{table}_local" for table in ROLLUP_TABLES)]
        assert parameters is not None and parameters["names"] == names
        return type("Result", (), {"result_rows": []})()


def test_retention_sets_the_local_tables_ttls_on_the_cluster(store: Client) -> None:
    client = RecordingClient()
    changed = apply_retention(client, DATABASE, RetentionConfig(rows=400, content=30, rollups=800), CLUSTER)  # type: ignore[arg-type]
    assert changed == ["rows", "rollups", "content"]
    texts = [formatted(store, sql) for sql in client.commands]
    spans, on = f"{DATABASE}.genai_spans_local", f"ON CLUSTER {CLUSTER}"
    assert texts == [
        f"ALTER TABLE {spans} {on} (MODIFY TTL toDateTime(timestamp) + toIntervalDay(400))",
        *(
            f"ALTER TABLE {DATABASE}.{table}_local {on}"
            f" (MODIFY TTL toDateTime({time_column(table)}) + toIntervalDay(800))"
            for table in ROLLUP_TABLES
        ),
        f"ALTER TABLE {spans} {on} (MODIFY COLUMN `content` TTL toDateTime(timestamp) + toIntervalDay(30))",
    ]


def test_a_kept_claim_seen_late_is_applied_by_its_collector(store: Client, database: str) -> None:
    """A node may show a claim only after the claimer's first read (a replica fetching, another node behind a
    balancer): the claimer applies the migration when it sees its claim, rather than waiting for itself."""
    migrator = Migrator(store, database, claim_timeout=7200, poll_interval=0.02)
    store.command("CREATE DATABASE IF NOT EXISTS {db:Identifier}", parameters={"db": database})
    store.command(statements(MIGRATIONS_TABLE)[0], parameters={"database": database})
    first = migrations()[0]
    row = (first.version, first.name, first.checksum, "claimed", 1, datetime.now(UTC), migrator.collector, "")
    columns = ("version", "name", "checksum", "state", "attempt", "applied_at", "collector", "detail")
    store.insert(f"{database}.schema_migrations", [row], column_names=columns)
    done: list[list[int]] = []
    runner = threading.Thread(target=lambda: done.append(migrator.migrate()), daemon=True)
    runner.start()
    runner.join(timeout=60)  # before: it waited for its own claim's outcome, for ever
    assert done == [[m.version for m in migrations()]]


# --- configuration -----------------------------------------------------------------------------------------


def test_cluster_is_a_server_setting_named_in_errors(tmp_path: Path) -> None:
    server = {"endpoint": "http://ch.example:8123", "cluster": "main-1"}
    config = load_config(write_config(tmp_path, {"exporters": {"clickhouse": server}}))
    assert config.exporters["clickhouse"].cluster == "main-1"
    with pytest.raises(
        ConfigError, match=r"exporters\.clickhouse\.cluster: the embedded chdb:// engine is one process"
    ):
        load_config(write_config(tmp_path, {"exporters": {"clickhouse": {"cluster": "main"}}}))
    with pytest.raises(ConfigError, match=r"exporters\.clickhouse\.cluster: String should match pattern"):
        load_config(write_config(tmp_path, {"exporters": {"clickhouse": {**server, "cluster": "main; DROP"}}}))


def test_an_empty_cluster_is_one_server(tmp_path: Path) -> None:
    """pipelines.yaml sets `cluster: ${env:SPANMETER_CLICKHOUSE_CLUSTER:-}`: unset, the store is one server."""
    assert load_config(write_config(tmp_path), env={}).exporters["clickhouse"].cluster is None
    assert ClickHouseExporterConfig(endpoint="http://ch:8123", cluster="").cluster is None


def test_inserts_wait_for_the_shards_only_on_a_cluster(tmp_path: Path) -> None:
    def settings(**cluster: str) -> dict[str, Any]:
        config = ClickHouseExporterConfig(
            endpoint="http://ch.example:8123", queue={"directory": str(tmp_path / str(cluster))}, **cluster
        )
        return ClickHouseExporter(config, CollectorMetrics())._insert_settings

    assert settings() == INSERT_SETTINGS
    assert settings(cluster="main") == INSERT_SETTINGS | {"insert_distributed_sync": 1}
    assert CLUSTER_INSERT_SETTINGS == {"insert_distributed_sync": 1}  # distributed_foreground_insert's old name


def test_budget_claims_wait_for_their_shard_only_on_a_cluster() -> None:
    """A crossing is claimed through the Distributed budget_events table, then read back: it must be there."""
    assert BudgetStore(None, DATABASE)._claim_settings == {}  # type: ignore[arg-type]
    assert BudgetStore(None, DATABASE, CLUSTER)._claim_settings == {"insert_distributed_sync": 1}  # type: ignore[arg-type]
