"""The same collector against a ClickHouse server over HTTP (what docker-compose and production use).

Needs a server: set CLICKHOUSE_URL (e.g. http://default:@127.0.0.1:8123). None can be installed on this
project's build machines, so without it these tests skip and say so.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.sdk.trace.export import SpanExportResult

from spanmeter.service import Collector
from spanmeter.store import connect

from .conftest import span_exporter, wait_for_rows
from .test_durability import count_rows, make_spans

CLICKHOUSE_URL = os.environ.get("CLICKHOUSE_URL", "")
pytestmark = pytest.mark.skipif(not CLICKHOUSE_URL, reason="no ClickHouse server: set CLICKHOUSE_URL to run these")


@pytest.fixture
def server_database() -> Iterator[tuple[Client, str]]:
    client = connect(CLICKHOUSE_URL)
    name = f"spanmeter_test_{uuid.uuid4().hex[:10]}"
    yield client, name
    client.command("DROP DATABASE IF EXISTS {db:Identifier}", parameters={"db": name})
    client.close()


class LateProxy:
    """A TCP port that refuses connections until `open()`, then forwards them to the server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()  # nothing listens here until open()
        self._listener: socket.socket | None = None

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        sink.close()


def test_server_down_at_start_then_up_stores_every_acknowledged_span_once(
    start_collector: Callable[..., Collector], server_database: tuple[Client, str]
) -> None:
    client, database = server_database
    url = urlsplit(CLICKHOUSE_URL)
    proxy = LateProxy((url.hostname or "127.0.0.1", url.port or 8123))
    endpoint = f"{url.scheme}://127.0.0.1:{proxy.port}"
    collector = start_collector(
        {
            "exporters": {
                "clickhouse": {
                    "endpoint": endpoint,
                    "database": database,
                    "username": url.username or "default",
                    "password": url.password or "",
                    "batch": {"max_age": "100ms"},
                    "retry": {"initial_interval": "100ms", "max_interval": "500ms"},
                }
            }
        }
    )
    exporter = span_exporter(collector, "grpc")
    try:
        assert exporter.export(make_spans(20)) is SpanExportResult.SUCCESS  # accepted while the store is down
        proxy.open()
        wait_for_rows(collector, 20, timeout=60)
    finally:
        proxy.close()
    count, distinct = client.query(
        "SELECT count(), uniqExact(span_id) FROM {db:Identifier}.genai_spans", parameters={"db": database}
    ).result_rows[0]
    assert (count, distinct) == (20, 20)


CLICKHOUSE_CLUSTER = os.environ.get("CLICKHOUSE_CLUSTER", "")


@pytest.mark.skipif(
    not CLICKHOUSE_CLUSTER, reason="no ClickHouse cluster: set CLICKHOUSE_CLUSTER (a remote_servers name) to run this"
)
def test_cluster_schema_stores_through_distributed_tables(
    start_collector: Callable[..., Collector], server_database: tuple[Client, str]
) -> None:
    client, database = server_database
    url = urlsplit(CLICKHOUSE_URL)
    try:
        collector = start_collector(
            {
                "exporters": {
                    "clickhouse": {
                        "endpoint": f"{url.scheme}://{url.hostname}:{url.port or 8123}",
                        "database": database,
                        "username": url.username or "default",
                        "password": url.password or "",
                        "cluster": CLICKHOUSE_CLUSTER,
                        "batch": {"max_age": "100ms"},
                        "retention": {"rows": 3650},
                    }
                }
            }
        )
        assert span_exporter(collector, "grpc").export(make_spans(20)) is SpanExportResult.SUCCESS
        wait_for_rows(collector, 20, timeout=60)
        engines = {
            name: engine
            for name, engine in client.query(
                "SELECT name, engine FROM system.tables WHERE database = {db:String}", parameters={"db": database}
            ).result_rows
        }
        assert engines["genai_spans"] == "Distributed"
        assert engines["genai_spans_local"] == "ReplicatedMergeTree"
        assert engines["genai_spans_hourly_local"] == "ReplicatedSummingMergeTree"
        assert engines["schema_migrations"] == "ReplicatedMergeTree"
        ttl = client.command(
            "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'genai_spans_local'",
            parameters={"db": database},
        )
        assert "toIntervalDay(3650)" in str(ttl)
        # Read through the Distributed tables; the rollup is the sum of the shards' rollups.
        assert count_rows(client, database) == (20, 20, 20)
    finally:
        client.command(
            "DROP DATABASE IF EXISTS {db:Identifier} ON CLUSTER {cluster:Identifier} SYNC",
            parameters={"db": database, "cluster": CLICKHOUSE_CLUSTER},
        )
