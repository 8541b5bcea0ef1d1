"""Retention on the real engine (chDB): `exporters.clickhouse.retention` becomes the tables' TTLs at start and
follows the setting when it changes; rows past their TTL are gone after a merge, and captured content past its
TTL is emptied while the row (and its cost) stays."""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter.config import Config, ConfigError, GenAIProcessorConfig
from spanmeter.exporters.clickhouse import to_arrow
from spanmeter.exporters.wal import MAGIC_V1, RECORD_HEADER, SEGMENT_HEADER, encode_table
from spanmeter.processors import GenAIProcessor
from spanmeter.retention import ROLLUP_TABLES, current_ttls
from spanmeter.service import Collector, CollectorThread

from .conftest import emit, http_request, refused, rows, span_exporter, tracer_provider, wait_for_rows
from .test_durability import make_spans
from .test_pricing_e2e import genai_attributes
from .test_wal import HOLD

DAY_NS = 86_400 * 10**9
RECORD_HEADER_V1 = struct.Struct("<II")  # a record's length and crc32 in the first layout (wal.py)
PROMPT = '[{"role": "user", "parts": [{"type": "text", "content": "what is my balance?"}]}]'
ANSWER = '[{"role": "assistant", "parts": [{"type": "text", "content": "USD 12"}]}]'


def retention(**values: Any) -> dict[str, Any]:
    return {"exporters": {"clickhouse": {"retention": values, "batch": {"max_age": "100ms"}}}}


def send_old_and_new(collector: Collector) -> tuple[str, str]:
    """One call from three days ago and one from now, both with captured prompt and answer."""
    provider = tracer_provider(collector)
    attributes = genai_attributes(
        "openai",
        "gpt-4o",
        {"input": 100, "output": 20},
        **{"gen_ai.input.messages": PROMPT, "gen_ai.output.messages": ANSWER},
    )
    now = time.time_ns()
    old = emit(provider, "chat", attributes, now - 3 * DAY_NS)
    new = emit(provider, "chat", attributes, now - 60 * 10**9)
    wait_for_rows(collector, 2)
    return old, new


def merge(store: Client, database: str) -> None:
    store.command("OPTIMIZE TABLE {db:Identifier}.genai_spans FINAL", parameters={"db": database})


def test_retention_settings_parse_as_days(make_config: Callable[..., Config]) -> None:
    config = make_config(retention(rows="2w", content="72h", rollups=1095))
    settings = config.exporters["clickhouse"].retention  # type: ignore[union-attr]
    assert (settings.rows, settings.content, settings.rollups) == (14, 3, 1095)
    defaults = make_config().exporters["clickhouse"].retention  # type: ignore[union-attr]
    assert (defaults.rows, defaults.content, defaults.rollups) == (0, 30, 0)  # rows: kept unless asked
    for bad in ("5h", "ten days", "-1d"):
        with pytest.raises(ConfigError, match=r"exporters\.clickhouse\.retention\.rows"):
            make_config(retention(rows=bad))


def test_a_changed_retention_setting_alters_the_tables(
    make_config: Callable[..., Config], store: Client, database: str
) -> None:
    with CollectorThread(make_config(retention(rows="400d"))):
        pass
    ttls = current_ttls(store, database)
    assert (ttls.rows, ttls.content, ttls.rollups) == (400, 30, None)

    with CollectorThread(make_config(retention(rows="200d", content="7d", rollups="1095d"))):
        pass
    ttls = current_ttls(store, database)
    assert (ttls.rows, ttls.content, ttls.rollups) == (200, 7, 1095)
    assert {ttls.tables[table] for table in ROLLUP_TABLES} == {1095} and len(ROLLUP_TABLES) == 14

    # A rollup without the TTL (as one added by a newer migration is) gets it at the next start.
    store.command("ALTER TABLE {db:Identifier}.genai_sessions_hourly REMOVE TTL", parameters={"db": database})
    assert current_ttls(store, database).rollups is None
    with CollectorThread(make_config(retention(rows="200d", content="7d", rollups="1095d"))):
        pass
    assert current_ttls(store, database).tables["genai_sessions_hourly"] == 1095

    with CollectorThread(make_config(retention(rows=0, content=0, rollups=0))):
        pass
    ttls = current_ttls(store, database)
    assert (ttls.rows, ttls.content, ttls.rollups, ttls.has_ttl) == (None, None, None, frozenset())


def test_rows_past_their_ttl_are_gone_after_a_merge(
    make_config: Callable[..., Config], store: Client, database: str
) -> None:
    with CollectorThread(make_config(retention(rows="400d"))) as collector:
        old, new = send_old_and_new(collector)
    assert [row["span_id"] for row in rows(store, database)] == [old, new]

    # The setting changes to one day (an insert drops rows already past a TTL: these were stored before).
    with CollectorThread(make_config(retention(rows="1d"))):
        pass
    merge(store, database)

    assert [row["span_id"] for row in rows(store, database)] == [new]
    # The hourly rollup keeps the expired hour (rollups: kept forever by default).
    hours = store.query(
        "SELECT sum(requests) FROM {db:Identifier}.genai_spans_hourly", parameters={"db": database}
    ).result_rows
    assert hours == [(2,)]


def test_content_past_its_ttl_is_removed_and_the_row_stays(
    make_config: Callable[..., Config], store: Client, database: str
) -> None:
    capture = {"processors": {"genai": {"capture_content": True}}}
    with CollectorThread(make_config(retention(content="30d") | capture)) as collector:
        old, new = send_old_and_new(collector)
    captured = {"gen_ai.input.messages": PROMPT, "gen_ai.output.messages": ANSWER}
    before = {row["span_id"]: row for row in rows(store, database)}
    assert before[old]["content"] == captured == before[new]["content"]
    assert not set(captured) & set(before[old]["span_attributes"])  # content is in its own column only

    with CollectorThread(make_config(retention(content="1d") | capture)):
        pass
    merge(store, database)

    after = {row["span_id"]: row for row in rows(store, database)}
    assert set(after) == {old, new}
    assert after[old]["content"] == {}
    assert after[new]["content"] == captured
    for column in ("total_cost", "input_tokens", "span_attributes", "request_model"):
        assert after[old][column] == before[old][column]


def test_rows_an_older_version_left_in_the_wal_are_stored_after_the_upgrade(
    make_config: Callable[..., Config], store: Client, database: str, tmp_path: Path
) -> None:
    """Segments an older version wrote (the WAL's first layout; rows, read before the acknowledgement, from before
    the `content` column existed) are stored (content empty), not quarantined."""
    first = CollectorThread(make_config(HOLD))
    collector = first.start()
    store.command("DETACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    try:  # the store is away: the rows stay in the WAL at the stop
        assert span_exporter(collector, "grpc").export(make_spans(4)) is SpanExportResult.SUCCESS
        assert first.stop() == 4
    finally:
        store.command("ATTACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    [segment] = (tmp_path / "wal" / database).glob("*.wal")
    data = segment.read_bytes()
    offset, older = SEGMENT_HEADER, bytearray(MAGIC_V1)
    reader = GenAIProcessor(GenAIProcessorConfig())
    while offset < len(data):  # each request's record rewritten as its rows, as older versions wrote them
        _, length, _ = RECORD_HEADER.unpack_from(data, offset)
        payload = data[offset + RECORD_HEADER.size : offset + RECORD_HEADER.size + length]
        [body] = pa.ipc.open_stream(payload).read_all().column("body").to_pylist()
        records = reader.decode(ExportTraceServiceRequest.FromString(body)).records
        rewritten = encode_table(to_arrow(records).drop_columns(["content", "sampling_threshold"])).to_pybytes()
        older += RECORD_HEADER_V1.pack(len(rewritten), zlib.crc32(rewritten)) + rewritten
        offset += RECORD_HEADER.size + length
    segment.write_bytes(bytes(older))

    with CollectorThread(make_config(HOLD)) as restarted:
        deadline = time.monotonic() + 20
        while restarted.exporter.replayed_rows < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert restarted.exporter.wal.quarantined == 0
    assert [(row["content"], row["sampling_threshold"]) for row in rows(store, database)] == [({}, 0)] * 4


def test_a_span_older_than_the_row_ttl_is_rejected_not_acknowledged_and_lost(
    make_config: Callable[..., Config], store: Client, database: str
) -> None:
    """ClickHouse deletes a row already past its TTL as it is inserted: acknowledging it would lose it."""
    with CollectorThread(make_config(retention(rows="1d"))) as collector:
        provider = TracerProvider()
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        attributes = genai_attributes("openai", "gpt-4o", {"input": 100, "output": 20})
        now = time.time_ns()
        old = emit(provider, "chat", attributes, now - 3 * DAY_NS)
        new = emit(provider, "chat", attributes, now - 60 * 10**9)
        status, _, body = http_request(
            collector,
            "/v1/traces",
            encode_spans(memory.get_finished_spans()).SerializeToString(),
            {"Content-Type": "application/x-protobuf"},
        )
        assert status == 200, body
        refusal = refused(store, database, 1)
        assert old in refusal and "retention.rows" in refusal
        wait_for_rows(collector, 1)
    assert [row["span_id"] for row in rows(store, database)] == [new]
