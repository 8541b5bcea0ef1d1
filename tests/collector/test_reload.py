"""SIGHUP reloads pipelines.yaml in a running `spanmeter serve`: a changed tag rule applies to the spans sent after
the reload while a sender keeps sending, and no request is dropped (every acknowledged span is stored); a change
that needs a restart is logged as ignored; a file that does not load is refused naming the key, the old one kept."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from spanmeter.config import load_config
from spanmeter.reload import reloadable, restart_changes

from .conftest import REPO, deep_merge
from .test_durability import ServeProcess, query_store

TEAM_RULE = {"tag": "team", "from": "resource.team"}
SQUAD_RULE = {"tag": "team", "from": "resource.squad"}  # the changed rule: the same tag from another attribute


class CountingExporter(SpanExporter):
    """OTLP/HTTP to the collector, counting the spans it acknowledged."""

    def __init__(self, endpoint: str) -> None:
        self._inner = HttpSpanExporter(endpoint=endpoint)
        self.acknowledged = 0

    def export(self, spans: Any) -> SpanExportResult:
        result = self._inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.acknowledged += len(spans)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()


class Sender(threading.Thread):
    """Sends one chat span at a time until stopped; each span names its sequence number (`seq`)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.exporter = CountingExporter(f"http://127.0.0.1:{port}/v1/traces")
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": "reload-app", "team": "old-team", "squad": "new-squad"})
        )
        self.sent = 0
        self.failed = 0
        self.stop_event = threading.Event()
        self.paused = threading.Event()

    def run(self) -> None:
        tracer = self.provider.get_tracer("reload-test")
        while not self.stop_event.is_set():
            if self.paused.is_set():
                time.sleep(0.01)
                continue
            span = tracer.start_span(
                "chat gpt-4o-mini",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 10,
                    "gen_ai.usage.output_tokens": 5,
                    "seq": self.sent,
                },
            )
            span.end()
            if self.exporter.export([span]) is not SpanExportResult.SUCCESS:  # type: ignore[list-item]
                self.failed += 1
            self.sent += 1
            time.sleep(0.02)  # ~40 requests a second: steady traffic a loaded CI machine still keeps up with


class LoggedServe(ServeProcess):
    """ServeProcess whose log is read on as it runs, so a test can wait for a line."""

    def __init__(self, config: Path, data: Path) -> None:
        super().__init__(config, data)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def wait_for(self, text: str, after: int = 0, timeout: float = 30.0) -> int:
        """The index of the first log line from `after` on containing `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index in range(after, len(self.log)):
                if text in self.log[index]:
                    return index
            time.sleep(0.02)
        raise AssertionError(f"no log line with {text!r} after {timeout}s:\n" + "".join(self.log[after:]))

    def terminate(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(10)
        return self.process.returncode, "".join(self.log)


def wait_stored(port: int, timeout: float = 120.0) -> int:
    """Waits until the collector has stored every row it accepted (a loaded machine may take a while); what is
    left queued."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            queued = int(json.load(response)["queued_rows"])
        if queued == 0 or time.monotonic() > deadline:
            return queued
        time.sleep(0.1)


def write(path: Path, raw: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(raw))
    temporary.replace(path)  # the collector never reads half a file


def test_sighup_applies_a_changed_tag_rule_without_dropping_a_request(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    # One span a request: the Python reader reads such small segments (the engine plans ~0.3 s a segment); a reload
    # swaps the engine's stages and the Python reader alike.
    raw = deep_merge(raw, {"processors": {"tags": {"rules": [TEAM_RULE]}, "genai": {"engine_min_spans": 5000}}})
    raw["exporters"]["clickhouse"]["batch"] = {"max_rows": 50000, "max_age": "100ms"}
    config = tmp_path / "pipelines.yaml"
    write(config, raw)
    data = tmp_path / "store"
    serve = LoggedServe(config, data)
    sender = Sender(serve.http_port)
    try:
        sender.start()
        while sender.exporter.acknowledged < 20:
            time.sleep(0.02)
        # These first spans are read (tagged) under the old rule: a span is tagged when read, after it was answered,
        # so one acknowledged just before the reload may be read after it, with the new rule.
        sender.paused.set()
        first = sender.sent
        assert wait_stored(serve.http_port) == 0
        sender.paused.clear()
        while sender.sent < first + 10:
            time.sleep(0.02)

        # The changed rule, and a change that needs a restart (the batch age), in one reload.
        changed = deep_merge(raw, {"processors": {"tags": {"rules": [SQUAD_RULE]}}})
        changed["exporters"]["clickhouse"]["batch"]["max_age"] = "200ms"
        write(config, changed)
        mark = len(serve.log)
        serve.process.send_signal(signal.SIGHUP)
        done = serve.wait_for("reloaded", mark)
        sent_after = sender.sent  # every span from here on is read with the new rule
        assert any(
            "exporters.clickhouse.batch.max_age changed but needs a restart" in line for line in serve.log[mark:done]
        )
        while sender.sent < sent_after + 20:
            time.sleep(0.02)

        # A file that does not load is refused, naming the key; the running rule stays.
        broken = deep_merge(changed, {"processors": {"tags": {"rules": [{"tag": "team", "from": "nowhere.team"}]}}})
        write(config, broken)
        mark = len(serve.log)
        serve.process.send_signal(signal.SIGHUP)
        refused = serve.wait_for("reload of", mark)
        assert "refused, the running configuration is kept" in serve.log[refused]
        assert "processors.tags.rules[0].from" in "".join(serve.log[refused : refused + 3])
        resumed = sender.sent
        while sender.sent < resumed + 10:
            time.sleep(0.02)
        sender.stop_event.set()
        sender.join(30)
        queued = wait_stored(serve.http_port)
    finally:
        sender.stop_event.set()
        sender.join(30)
        code, log = serve.terminate()
    assert queued == 0, log
    assert code == 0, log
    assert sender.failed == 0 and sender.exporter.acknowledged == sender.sent, (sender.failed, sender.sent)

    rows = query_store(data, "SELECT toInt64(span_attributes['seq']), tags['team'] FROM spanmeter.genai_spans")
    seqs = sorted(int(seq) for seq, _ in rows)
    assert seqs == list(range(sender.sent)), f"{len(seqs)} rows stored for {sender.sent} spans acknowledged"
    team = {int(seq): value for seq, value in rows}
    assert all(team[seq] == "old-team" for seq in range(first))  # read before the reload
    assert all(team[seq] == "new-squad" for seq in range(sent_after, sender.sent))  # sent after it
    assert any(value == "old-team" for value in team.values()) and any(v == "new-squad" for v in team.values())


def test_what_a_reload_applies_and_what_needs_a_restart(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    env = {"SPANMETER_DATA": str(tmp_path / "a")}
    path = tmp_path / "a.yaml"
    write(path, raw)
    running = load_config(path, env=env)
    changed = deep_merge(
        raw,
        {
            "processors": {"tags": {"rules": [TEAM_RULE]}, "pricing": {"overrides": []}},
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:9999"}}}},
            "service": {"telemetry": {"log_level": "debug"}},
        },
    )
    changed["exporters"]["clickhouse"]["queue"]["directory"] = str(tmp_path / "elsewhere")
    write(path, changed)
    env["SPANMETER_DATA"] = str(tmp_path / "b")  # the store moves: a restart's business
    loaded = load_config(path, env=env)

    assert restart_changes(running, loaded) == [
        "receivers.otlp.protocols.http.endpoint",
        "exporters.clickhouse.endpoint",
        "exporters.clickhouse.queue.directory",
    ]
    applied = reloadable(running, loaded)
    assert applied.processors["tags"].rules[0].tag == "team"
    assert applied.service.telemetry.log_level == "debug"
    assert applied.exporters == running.exporters and applied.receivers == running.receivers
