"""`genai_spans` matches the column contract exactly; the schema applies idempotently; the
hourly rollup agrees with the raw rows."""

from __future__ import annotations

from collections.abc import Callable

from clickhouse_connect.driver.client import Client

from spanmeter.config import Config
from spanmeter.records import COLUMNS
from spanmeter.service import Collector
from spanmeter.store import apply_schema

from .conftest import emit, tracer_provider, wait_for_rows
from .test_pricing_e2e import AT_NS, genai_attributes

# The table contract (README.md, "The genai_spans table"): names and types that SQL users, Grafana and the CLI rely on.
CONTRACT = {
    "timestamp": "DateTime64(9, 'UTC')",
    "trace_id": "String",
    "span_id": "String",
    "parent_span_id": "String",
    "project": "LowCardinality(String)",
    "service_name": "LowCardinality(String)",
    "environment": "LowCardinality(String)",
    "operation": "LowCardinality(String)",
    "provider": "LowCardinality(String)",
    "request_model": "LowCardinality(String)",
    "response_model": "LowCardinality(String)",
    "input_tokens": "UInt64",
    "output_tokens": "UInt64",
    "cache_read_tokens": "UInt64",
    "cache_write_tokens": "UInt64",
    "reasoning_tokens": "UInt64",
    "input_cost": "Decimal(18, 12)",
    "cache_read_cost": "Decimal(18, 12)",
    "cache_write_cost": "Decimal(18, 12)",
    "output_cost": "Decimal(18, 12)",
    "total_cost": "Decimal(18, 12)",
    "price_status": "LowCardinality(String)",
    "price_source": "LowCardinality(String)",
    "duration_ns": "UInt64",
    "status_code": "LowCardinality(String)",
    "error_type": "LowCardinality(String)",
    "finish_reasons": "Array(LowCardinality(String))",
    "user_id": "String",
    "session_id": "String",
    "conversation_id": "String",
    "feature": "LowCardinality(String)",
    "tags": "Map(LowCardinality(String), String)",
    "convention": "LowCardinality(String)",
    "span_attributes": "Map(LowCardinality(String), String)",
    "resource_attributes": "Map(LowCardinality(String), String)",
    "content": "Map(LowCardinality(String), String)",
    "sampling_threshold": "UInt64",
    "sample_weight": "Float64",
    "prompt_prefix_hash": "String",
    "ingested_at": "DateTime64(3, 'UTC')",
}


def test_genai_spans_matches_the_contract_and_schema_reapplies(
    make_config: Callable[..., Config], store: Client, database: str, start_collector: Callable[..., Collector]
) -> None:
    start_collector()
    apply_schema(store, database)  # a second time: every migration is recorded, none runs again
    columns = store.query(
        "SELECT name, type FROM system.columns"
        " WHERE database = {db:String} AND table = 'genai_spans' ORDER BY position",
        parameters={"db": database},
    ).result_rows
    assert dict(columns) == CONTRACT
    assert [name for name, _ in columns][: len(COLUMNS)] == list(COLUMNS)
    tables = {
        row[0] for row in store.query("SHOW TABLES FROM {db:Identifier}", parameters={"db": database}).result_rows
    }
    assert {"genai_spans", "genai_spans_hourly", "genai_spans_hourly_mv"} <= tables


def test_hourly_rollup_sums_match_raw_rows(collector: Collector, store: Client, database: str) -> None:
    provider = tracer_provider(collector)
    hour = 3_600_000_000_000
    for index in range(6):
        attributes = genai_attributes(
            "anthropic",
            "claude-sonnet-4-5",
            {"input": 1000 + index, "output": 10, "cache_read": 500, "cache_write": 100},
            **{"spanmeter.tag.feature": "chat" if index % 2 else "search"},
        )
        emit(provider, "chat", attributes, AT_NS + (index % 3) * hour)
    wait_for_rows(collector, 6)
    raw = store.query(
        "SELECT toStartOfHour(timestamp) AS h, feature, count(), sum(input_tokens), sum(total_cost)"
        " FROM {db:Identifier}.genai_spans GROUP BY h, feature ORDER BY h, feature",
        parameters={"db": database},
    ).result_rows
    rolled = store.query(
        "SELECT hour, feature, sum(requests), sum(input_tokens), sum(total_cost)"
        " FROM {db:Identifier}.genai_spans_hourly GROUP BY hour, feature ORDER BY hour, feature",
        parameters={"db": database},
    ).result_rows
    assert len(raw) == 6
    assert rolled == raw


def test_genai_spans_merges_at_base_20_and_the_rollups_at_the_default(store: Client, database: str) -> None:
    """032: genai_spans, whose parts are large and costly to rewrite, merges about 20 parts at a time; every rollup
    its views write, through any cascade (031), keeps ClickHouse's default so the dashboards read few parts."""
    apply_schema(store, database)

    def reached(table: str) -> set[str]:
        views = store.query(
            "SELECT dependencies_table FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": database, "t": table},
        ).first_row[0]
        targets = {
            row[0]
            for row in store.query(
                "SELECT arrayJoin(extractAll(create_table_query, ' TO [\\w`]+\\.`?(\\w+)')) FROM system.tables"
                " WHERE database = {db:String} AND has({views:Array(String)}, name)",
                parameters={"db": database, "views": views},
            ).result_rows
        }
        return {table}.union(*(reached(target) for target in targets))

    written = reached("genai_spans")
    assert len(written) == 15, written
    settings = table_settings(store, database, "merge_selector_base", written)
    assert settings == dict.fromkeys(written, "") | {"genai_spans": "20"}


def table_settings(store: Client, database: str, setting: str, tables: set[str]) -> dict[str, str]:
    """Each table's value of a MergeTree `setting` as its definition sets it; "" where it keeps the default."""
    return dict(
        store.query(
            "SELECT name, extract(engine_full, concat({setting:String}, ' = (\\d+)')) FROM system.tables"
            " WHERE database = {db:String} AND has({tables:Array(String)}, name)",
            parameters={"db": database, "setting": setting, "tables": sorted(tables)},
        ).result_rows
    )


def test_inserts_make_compact_parts_and_merges_past_the_threshold_wide(
    collector: Collector, store: Client, database: str
) -> None:
    """033: an insert's part is compact (one data file, not one per column stream); a merge whose result is
    larger than min_bytes_for_wide_part writes a wide part, so large parts are read column by column."""
    provider = tracer_provider(collector)
    for index in range(3):
        emit(provider, "chat", genai_attributes("openai", "gpt-4o", {"input": 10 + index, "output": 5}), AT_NS)
        wait_for_rows(collector, index + 1)  # one insert each: three parts to merge

    def parts() -> list[tuple[str, int]]:
        return store.query(
            "SELECT part_type, rows FROM system.parts"
            " WHERE database = {db:String} AND table = 'genai_spans' AND active ORDER BY name",
            parameters={"db": database},
        ).result_rows

    settings = table_settings(store, database, "min_bytes_for_wide_part", {"genai_spans", "genai_spans_hourly"})
    assert settings == {"genai_spans": str(256 * 1024 * 1024), "genai_spans_hourly": ""}
    assert [part_type for part_type, _ in parts()] == ["Compact"] * 3
    # A merge decides the part type from the merged size; a threshold below it stands for a part past 256 MiB.
    store.command(
        "ALTER TABLE {db:Identifier}.genai_spans MODIFY SETTING min_bytes_for_wide_part = 1",
        parameters={"db": database},
    )
    store.command("OPTIMIZE TABLE {db:Identifier}.genai_spans FINAL", parameters={"db": database})
    assert parts() == [("Wide", 3)]
