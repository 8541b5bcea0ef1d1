"""Nothing acknowledged is lost, nothing is stored twice: across SIGTERM and restart, while the
store fails for a while, and when the queue is full (the sender is told to retry)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter.config import GenAIProcessorConfig, PricingProcessorConfig
from spanmeter.exporters.accepted import request_record
from spanmeter.exporters.clickhouse import INSERT_SETTINGS, to_arrow
from spanmeter.exporters.wal import RECORD_HEADER, SEGMENT_HEADER, encode_table
from spanmeter.processors import GenAIProcessor, PricingProcessor
from spanmeter.service import Collector, CollectorThread
from spanmeter.store import InsertSpool, insert_arrow

from .conftest import REPO, emit, span_exporter, wait_for_rows
from .test_pricing_e2e import AT_NS, genai_attributes

USAGE = {"input": 100, "output": 20}


def make_spans(count: int, model: str = "gpt-4o-mini") -> list[ReadableSpan]:
    """Finished SDK spans, to hand to a real OTLP exporter or encoder directly."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "durability"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for _ in range(count):
        emit(provider, "chat", genai_attributes("openai", model, USAGE), AT_NS)
    return list(memory.get_finished_spans())


def count_rows(store: Client, database: str) -> tuple[int, int, int]:
    """(rows, distinct span ids, requests in the hourly rollup)."""
    raw = store.query(
        "SELECT count(), uniqExact(span_id) FROM {db:Identifier}.genai_spans", parameters={"db": database}
    ).result_rows[0]
    hourly = store.query(
        "SELECT sum(requests) FROM {db:Identifier}.genai_spans_hourly", parameters={"db": database}
    ).result_rows[0][0]
    return int(raw[0]), int(raw[1]), int(hourly or 0)


# --- the store fails for a while ---------------------------------------------------------------

FAST_RETRY = {
    "exporters": {
        "clickhouse": {"batch": {"max_age": "50ms"}, "retry": {"initial_interval": "50ms", "max_interval": "200ms"}}
    }
}


def test_store_outage_loses_nothing_acknowledged_and_stores_nothing_twice(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector(FAST_RETRY)
    exporter = span_exporter(collector, "grpc")
    store.command("DETACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    try:
        for _ in range(5):
            assert exporter.export(make_spans(10)) is SpanExportResult.SUCCESS
        deadline = time.monotonic() + 10
        while collector.metrics.store_errors._value.get() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{collector.http_port}/healthz"))
        assert health["store"] == "unavailable"
        assert health["queued_rows"] == 50
        assert collector.exporter.stored_rows == 0
    finally:
        store.command("ATTACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    wait_for_rows(collector, 50)
    assert count_rows(store, database) == (50, 50, 50)


def test_full_queue_answers_retryable_statuses_and_keeps_what_it_accepted(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    body, more, later = (encode_spans(make_spans(3)).SerializeToString() for _ in range(3))
    # Room for two requests in the WAL, not three.
    room = SEGMENT_HEADER + 2 * (RECORD_HEADER.size + encoded_request(body)) + 100
    collector = start_collector(
        {"exporters": {"clickhouse": {**FAST_RETRY["exporters"]["clickhouse"], "queue": {"max_bytes": room}}}}
    )
    url = f"http://127.0.0.1:{collector.http_port}/v1/traces"
    store.command("DETACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    try:
        assert post(url, body).status == 200
        assert post(url, body).status == 200  # the same spans again: a resend, kept, stored once
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(url, more)
        assert refused.value.code == 503
        assert refused.value.headers["Retry-After"] == "1"

        channel = grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}")
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as unavailable:
            export(more, timeout=5)
        assert unavailable.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "write-ahead log is full" in (unavailable.value.details() or "")
        channel.close()
    finally:
        store.command("ATTACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    wait_for_rows(collector, 3)
    assert count_rows(store, database) == (3, 3, 3)
    # And once drained, the collector takes data again. A segment is released just after its rows are counted
    # stored (once its parts are synced), so the test waits for the log to be empty, not for the rows alone.
    deadline = time.monotonic() + 20
    while collector.exporter.wal.rows and time.monotonic() < deadline:
        time.sleep(0.02)
    assert collector.exporter.wal.rows == 0
    assert post(url, later).status == 200
    wait_for_rows(collector, 6)


def encoded_request(body: bytes) -> int:
    """Bytes an accepted OTLP request takes in the WAL."""
    spans = len(ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans)
    return encode_table(request_record(body, None, spans, 0)).size


def post(url: str, body: bytes) -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
    return urllib.request.urlopen(request, timeout=10)


def test_a_retried_batch_is_stored_once(store: Client, database: str, make_config: Callable[..., Any]) -> None:
    """The exporter retries a batch under one insert_deduplication_token; the table keeps one copy even
    when the first attempt did land (e.g. its answer was lost)."""
    with CollectorThread(make_config()):  # a collector applies the schema at start
        pass
    decoded = GenAIProcessor(GenAIProcessorConfig()).decode(encode_spans(make_spans(4)))
    PricingProcessor(PricingProcessorConfig()).process(decoded.records)
    table = to_arrow(decoded.records)
    for _ in range(3):
        settings = INSERT_SETTINGS | {"insert_deduplication_token": "batch-1"}
        store.insert_arrow(f"{database}.genai_spans", table, settings=settings)
    assert count_rows(store, database) == (4, 4, 4)


def test_an_insert_read_from_a_spool_file_stores_what_insert_arrow_stores(
    store: Client, database: str, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    """An embedded store's inserts go through a Native file kept in a spool directory and overwritten by the
    next one (store.InsertSpool): the rows are those the driver's own insert stores, a retried token is stored
    once, and a smaller insert over a larger file stores its own rows only."""
    with CollectorThread(make_config()):  # a collector applies the schema at start
        pass
    decoded = GenAIProcessor(GenAIProcessorConfig()).decode(encode_spans(make_spans(40)))
    PricingProcessor(PricingProcessorConfig()).process(decoded.records)
    table = to_arrow(decoded.records)
    copy = f"{database}.genai_spans_driver"
    store.command(f"CREATE TABLE {copy} AS {database}.genai_spans")
    store.insert_arrow(copy, table, settings=INSERT_SETTINGS | {"insert_deduplication_token": "driver"})
    spans, spool = f"{database}.genai_spans", InsertSpool(tmp_path / "spool")
    spool.directory.mkdir()
    for _ in range(2):
        insert_arrow(store, spans, table, INSERT_SETTINGS | {"insert_deduplication_token": "a"}, spool)
    small = table.slice(3, 2)
    insert_arrow(store, spans, small, INSERT_SETTINGS | {"insert_deduplication_token": "b"}, spool)

    columns = ", ".join(table.column_names)  # those the rows carry (not the store's defaults: ingested_at)

    def rows(name: str) -> list[tuple[Any, ...]]:
        return sorted(set(map(repr, store.query(f"SELECT {columns} FROM {name}").result_rows)))

    assert count_rows(store, database) == (42, 40, 42)
    twice = store.query(
        f"SELECT span_id FROM {database}.genai_spans GROUP BY span_id HAVING count() = 2 ORDER BY span_id"
    ).result_rows
    assert [row[0] for row in twice] == sorted(small.column("span_id").to_pylist())
    assert rows(f"{database}.genai_spans") == rows(copy)
    assert [path.name for path in spool.directory.iterdir()] == [f"insert-{threading.get_ident()}.native"]


# --- SIGTERM and restart -----------------------------------------------------------------------


class ServeProcess:
    """`spanmeter serve` in a child process with its own embedded store."""

    def __init__(self, config: Path, data: Path) -> None:
        env = {
            **os.environ,
            "SPANMETER_DATA": str(data),
            "SPANMETER_WAL": f"{data}-wal",
            "SPANMETER_GRPC_ENDPOINT": "127.0.0.1:0",
            "SPANMETER_HTTP_ENDPOINT": "127.0.0.1:0",
        }
        self.process = subprocess.Popen(
            [spanmeter_command(), "serve", "--config", str(config)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self.http_port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        assert self.process.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.log.append(line)
            found = re.search(r"OTLP/HTTP receiver listening on [\d.]+:(\d+)", line)
            if found:
                return int(found.group(1))
        raise AssertionError("collector did not start:\n" + "".join(self.log))

    def terminate(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _, rest = self.process.communicate(timeout=60)
        return self.process.returncode, "".join(self.log) + rest


def spanmeter_command() -> str:
    script = Path(sys.executable).with_name("spanmeter")
    assert script.exists(), f"console script missing next to {sys.executable}: install the project first"
    return str(script)


def query_store(data: Path, sql: str) -> list[Any]:
    """Read another process's embedded store the only way chDB allows: from another process."""
    code = (
        "import json, sys; from spanmeter.store import connect;"
        f"c = connect('chdb://{data}'); print(json.dumps(c.query(sys.argv[1]).result_rows, default=str))"
    )
    out = subprocess.run([sys.executable, "-c", code, sql], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_sigterm_flushes_and_a_restart_keeps_every_row(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    # Batches far bigger and older than the test: rows are stored only because SIGTERM flushes them.
    raw["exporters"]["clickhouse"]["batch"] = {"max_rows": 100_000, "max_age": "10m"}
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(raw))
    data = tmp_path / "store"

    sent = 0
    for round_size in (30, 20):
        serve = ServeProcess(config, data)
        exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{serve.http_port}/v1/traces")
        assert exporter.export(make_spans(round_size)) is SpanExportResult.SUCCESS
        sent += round_size
        code, log = serve.terminate()
        assert code == 0, log
        assert "stopped cleanly" in log
        assert f"storing {round_size} accepted rows" in log

    [[total, distinct]] = query_store(data, "SELECT count(), uniqExact(span_id) FROM spanmeter.genai_spans")
    assert (int(total), int(distinct)) == (sent, sent)


def test_rows_the_store_cannot_take_by_shutdown_stay_in_the_wal_and_are_stored_at_the_next_start(
    make_config: Callable[..., Any], store: Client, database: str, tmp_path: Path
) -> None:
    wal = tmp_path / "wal"
    overrides = {
        "exporters": {
            "clickhouse": {
                **FAST_RETRY["exporters"]["clickhouse"],
                "shutdown_timeout": "300ms",
                "queue": {"directory": str(wal)},
            }
        }
    }
    first = CollectorThread(make_config(overrides))
    collector = first.start()
    store.command("DETACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    try:
        exporter = span_exporter(collector, "grpc")
        for _ in range(3):
            assert exporter.export(make_spans(7)) is SpanExportResult.SUCCESS
        assert first.stop() == 21  # left in the WAL, on disk
    finally:
        store.command("ATTACH TABLE {db:Identifier}.genai_spans", parameters={"db": database})
    assert list((wal / database).glob("*.wal"))
    assert count_rows(store, database) == (0, 0, 0)

    with CollectorThread(make_config(overrides)) as restarted:
        deadline = time.monotonic() + 20
        while restarted.exporter.replayed_rows < 21 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert count_rows(store, database) == (21, 21, 21)
    assert list((wal / database).glob("*.wal")) == []


def test_a_stop_with_the_store_unreachable_keeps_its_backoff_and_logs_a_line_per_attempt(tmp_path: Path) -> None:
    """The store down at SIGTERM: the exporter keeps retrying until `shutdown_timeout`, with its backoff,
    one log line per attempt (it once logged 17,264 lines in 10 s), and the rows stay in the WAL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    raw["exporters"]["clickhouse"].update(
        endpoint=f"http://127.0.0.1:{closed_port}",
        batch={"max_rows": 100, "max_age": "50ms"},
        retry={"initial_interval": "500ms", "max_interval": "30s"},
        shutdown_timeout="3s",
    )
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(raw))
    serve = ServeProcess(config, tmp_path / "store")
    exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{serve.http_port}/v1/traces")
    assert exporter.export(make_spans(2)) is SpanExportResult.SUCCESS
    time.sleep(0.5)
    started = time.monotonic()
    code, log = serve.terminate()
    took = time.monotonic() - started
    attempts = [line for line in log.splitlines() if "insert of 2 rows failed" in line]
    assert 1 <= len(attempts) <= 8, "\n".join(attempts[:20])
    assert len(log.splitlines()) < 40, log[-3000:]
    assert "urllib3" not in log
    assert 2.5 <= took < 15
    assert code == 1 and "2 rows in the write-ahead log" in log
    assert list((tmp_path / "store-wal" / "spanmeter").glob("*.wal"))
