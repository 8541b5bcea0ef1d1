"""kill -9 under load: every acknowledged span is stored after a restart, and no span twice.

A real `spanmeter serve` child process on its own embedded store takes OTLP/gRPC and OTLP/HTTP
requests from two senders going as fast as it answers; at a random moment it is killed with
SIGKILL (no handler runs, nothing is flushed), then started again on the same store and WAL.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from itertools import count
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .conftest import REPO
from .test_durability import make_spans, query_store, spanmeter_command

SPANS_PER_REQUEST = 50


class ServeChild:
    """`spanmeter serve` in a child process; its log goes to a file (a full pipe would block it)."""

    def __init__(self, config: Path, data: Path, log: Path) -> None:
        env = {
            **os.environ,
            "SPANMETER_DATA": str(data),
            "SPANMETER_WAL": f"{data}-wal",
            "SPANMETER_GRPC_ENDPOINT": "127.0.0.1:0",
            "SPANMETER_HTTP_ENDPOINT": "127.0.0.1:0",
        }
        self.log = log
        with open(log, "w") as sink:
            self.process = subprocess.Popen(
                [spanmeter_command(), "serve", "--config", str(config)], env=env, stderr=sink
            )
        self.grpc_port, self.http_port = self._ports()

    def _ports(self) -> tuple[int, int]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.log.read_text()
            grpc_port = re.findall(r"OTLP/gRPC receiver listening on [\d.]+:(\d+)", text)
            http_port = re.findall(r"OTLP/HTTP receiver listening on [\d.]+:(\d+)", text)
            if grpc_port and http_port and "collector running" in text:
                return int(grpc_port[-1]), int(http_port[-1])
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("collector did not start:\n" + self.log.read_text())

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)


class Sender(threading.Thread):
    """Sends requests of fresh spans until the collector stops answering; keeps the acknowledged ids."""

    def __init__(self, transport: str, port: int, ids: count[int]) -> None:
        super().__init__(daemon=True)
        self.transport = transport
        self.port = port
        self.ids = ids
        self.acknowledged: set[str] = set()
        self.sent: set[str] = set()
        self.template = encode_spans(make_spans(SPANS_PER_REQUEST)).SerializeToString()

    def request(self) -> tuple[bytes, list[str]]:
        message = ExportTraceServiceRequest.FromString(self.template)
        span_ids = []
        for span in message.resource_spans[0].scope_spans[0].spans:
            n = next(self.ids)
            span.trace_id = struct.pack(">QQ", 1, n)
            span.span_id = struct.pack(">Q", n)
            span_ids.append(format(n, "016x"))
        return message.SerializeToString(), span_ids

    def run(self) -> None:
        if self.transport == "grpc":
            channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        url = f"http://127.0.0.1:{self.port}/v1/traces"
        while True:
            body, span_ids = self.request()
            self.sent.update(span_ids)
            try:
                if self.transport == "grpc":
                    export(body, timeout=10)
                else:
                    headers = {"Content-Type": "application/x-protobuf"}
                    urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10)
            except (grpc.RpcError, urllib.error.URLError, ConnectionError, OSError):
                return  # killed (or refusing): stop, as a sender whose collector died would
            self.acknowledged.update(span_ids)


@pytest.mark.parametrize("run", [1, 2, 3])
def test_kill_9_under_load_loses_no_acknowledged_span_and_stores_none_twice(tmp_path: Path, run: int) -> None:
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    # Segments waiting behind an insert go in together, 3 at most: a kill may come amid a group's insert.
    raw["exporters"]["clickhouse"]["batch"] = {"max_rows": 2000, "max_age": "200ms", "max_insert_rows": 6000}
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(raw))
    data, log = tmp_path / "store", tmp_path / "restarted.log"

    child = ServeChild(config, data, tmp_path / "killed.log")
    ids = count(1)
    senders = [Sender("grpc", child.grpc_port, ids), Sender("http", child.http_port, ids)]
    for sender in senders:
        sender.start()
    time.sleep(random.uniform(1.0, 3.0))
    child.process.send_signal(signal.SIGKILL)
    child.process.wait(30)
    for sender in senders:
        sender.join(30)
    acknowledged = set().union(*(sender.acknowledged for sender in senders))
    sent = set().union(*(sender.sent for sender in senders))
    assert len(acknowledged) >= 1000, "the senders barely ran: the test would prove nothing"

    restarted = ServeChild(config, data, log)
    deadline = time.monotonic() + 60
    while restarted.health()["queued_rows"] and time.monotonic() < deadline:
        time.sleep(0.1)
    restarted.process.send_signal(signal.SIGTERM)
    assert restarted.process.wait(60) == 0, log.read_text()[-3000:]

    stored = query_store(data, "SELECT span_id, count() FROM spanmeter.genai_spans GROUP BY span_id")
    counts = {span_id: int(n) for span_id, n in stored}
    missing = acknowledged - counts.keys()
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged spans lost, e.g. {sorted(missing)[:3]}"
    assert max(counts.values()) == 1, "a span stored twice"
    assert counts.keys() <= sent
    print(f"run {run}: {len(acknowledged)} acknowledged, {len(counts)} stored, {len(sent)} sent")
