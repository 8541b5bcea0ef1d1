"""Recent calls: `GET /v1/calls`, `spanmeter calls`, `spanmeter tail` and `spanmeter top` against a
running collector on the embedded store, with spans sent through the real OTel SDK and OTLP exporters."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from spanmeter.calls import CallRow, parse_calls_query, run_calls
from spanmeter.cli import main
from spanmeter.cli.tail import Follower
from spanmeter.exporters.clickhouse import FOLLOWED_AGE
from spanmeter.keys import create_key
from spanmeter.service import Collector

from .conftest import REPO, deep_merge, http_request, tracer_provider, wait_for_rows
from .test_auth import AUTH, BOOTSTRAP
from .test_durability import ServeProcess, spanmeter_command
from .test_pricing_e2e import genai_attributes, reference_price

# (service, model, feature, user, session, failed, usage); started 1..8 minutes ago, the first the latest.
CALLS: list[tuple[str, str, str, str, str, bool, dict[str, int]]] = [
    ("svc-a", "gpt-4o-2024-08-06", "chat", "u-1", "s-1", False, {"input": 1000, "output": 100, "cache_read": 256}),
    ("svc-a", "gpt-4o-mini", "chat", "u-2", "s-2", False, {"input": 2000, "output": 200}),
    ("svc-b", "o3-mini", "agent", "u-1", "s-1", True, {"input": 500, "output": 900}),
    ("svc-b", "acme-1", "agent", "u-2", "s-3", False, {"input": 10, "output": 10}),
    ("svc-a", "gpt-4o-2024-08-06", "chat", "u-1", "s-3", False, {"input": 100_000, "output": 5000}),
    ("svc-b", "gpt-4o-mini", "search", "u-3", "s-4", False, {"input": 300, "output": 30}),
    ("svc-a", "o3-mini", "agent", "u-3", "s-4", True, {"input": 700, "output": 70}),
]


def send_call(
    provider: TracerProvider,
    model: str,
    usage: dict[str, int],
    start: datetime | None = None,
    failed: bool = False,
    **tags: str,
) -> str:
    """One GenAI span through the provider's exporter; its span id (hex)."""
    attributes = genai_attributes("acme" if model.startswith("acme") else "openai", model, usage)
    attributes.update({f"spanmeter.tag.{name}": value for name, value in tags.items()})
    if failed:
        attributes["error.type"] = "rate_limited"
    start_ns = int(start.timestamp() * 1e9) if start else None
    span = provider.get_tracer("spanmeter.tests").start_span(
        f"chat {model}", attributes=attributes, start_time=start_ns
    )
    if failed:
        span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=start_ns + 1_200_000_000 if start_ns else None)
    return format(span.get_span_context().span_id, "016x")


@pytest.fixture(scope="module")
def collector(start_module_collector: Callable[..., Collector]) -> Collector:
    """One collector for the module's tests that read CALLS (each start costs seconds). The tests that store
    more calls come after those that only read, in file order, and each also passes alone."""
    return start_module_collector({"exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}}})


@pytest.fixture(scope="module")
def seeded(collector: Collector) -> dict[str, Any]:
    """CALLS stored, from two services; returns when, and their span ids in CALLS' order."""
    now = datetime.now(UTC).replace(microsecond=0)
    providers = {name: tracer_provider(collector, resource={"service.name": name}) for name in ("svc-a", "svc-b")}
    ids = []
    for index, (service, model, feature, user, session, failed, usage) in enumerate(CALLS):
        start = now - timedelta(minutes=index + 1)
        ids.append(
            send_call(
                providers[service], model, usage, start, failed, feature=feature, user_id=user, session_id=session
            )
        )
    wait_for_rows(collector, len(CALLS))
    return {"now": now, "ids": ids}


def api(collector: Collector, **parameters: Any) -> tuple[int, Any]:
    status, _, body = http_request(collector, f"/v1/calls?{urllib.parse.urlencode(parameters)}")
    return status, json.loads(body)


def listed(collector: Collector, **parameters: Any) -> list[str]:
    status, page = api(collector, **parameters)
    assert status == 200, page
    return [call["span_id"] for call in page["calls"]]


def check_filters_select_the_matching_calls_newest_first(collector: Collector, seeded: dict[str, Any]) -> None:
    ids = seeded["ids"]

    def expected(match: Callable[[tuple[Any, ...]], bool]) -> list[str]:
        return [span for span, call in zip(ids, CALLS, strict=True) if match(call)]

    assert listed(collector) == ids  # newest first
    assert listed(collector, service="svc-b") == expected(lambda c: c[0] == "svc-b")
    assert listed(collector, model="gpt-4o-mini") == expected(lambda c: c[1] == "gpt-4o-mini")
    assert listed(collector, feature="agent") == expected(lambda c: c[2] == "agent")
    assert listed(collector, user="u-1") == expected(lambda c: c[3] == "u-1")
    assert listed(collector, session="s-4") == expected(lambda c: c[4] == "s-4")
    assert listed(collector, status="error") == expected(lambda c: c[5])
    assert listed(collector, status="ok") == expected(lambda c: not c[5])
    assert listed(collector, service="svc-a", user="u-1", status="ok") == [ids[0], ids[4]]
    assert listed(collector, since="3m") == ids[:2]
    start = (seeded["now"] - timedelta(minutes=5, seconds=30)).isoformat()
    end = (seeded["now"] - timedelta(minutes=2, seconds=30)).isoformat()
    assert listed(collector, **{"from": start, "to": end}) == ids[2:5]
    assert listed(collector, project="no-such-project") == []

    # min_cost compares exact costs: the call that costs exactly the threshold is in, a cheaper one out.
    status, page = api(collector)
    assert status == 200
    costs = {call["span_id"]: Decimal(call["total_cost"]) for call in page["calls"]}
    threshold = costs[ids[1]]
    assert listed(collector, min_cost=format(threshold, "f")) == [s for s in ids if costs[s] >= threshold]
    assert ids[1] in listed(collector, min_cost=format(threshold, "f"))
    assert ids[1] not in listed(collector, min_cost=format(threshold + Decimal("1e-12"), "f"))

    first = page["calls"][0]
    assert (first["service"], first["model"], first["feature"], first["user"], first["session"]) == (
        "svc-a",
        "gpt-4o-2024-08-06",
        "chat",
        "u-1",
        "s-1",
    )
    assert (first["input_tokens"], first["output_tokens"], first["cache_read_tokens"]) == (1000, 100, 256)
    usage = CALLS[0][6]
    at = datetime.fromisoformat(first["time"])
    assert Decimal(first["total_cost"]) == reference_price("gpt-4o-2024-08-06", "openai", usage, at).total_price
    assert first["duration_ns"] == 1_200_000_000 and first["status"] == "ok" and len(first["trace_id"]) == 32
    failed = next(c for c in page["calls"] if c["span_id"] == ids[2])
    assert (failed["status"], failed["error_type"]) == ("error", "rate_limited")
    unpriced = next(c for c in page["calls"] if c["span_id"] == ids[3])
    assert unpriced["price_status"] == "unpriced"


def check_pages_are_stable_while_calls_arrive(collector: Collector, seeded: dict[str, Any]) -> None:
    """Paging by cursor gives every call once, in order, though newer and older calls are stored meanwhile."""
    ids = seeded["ids"]
    status, page = api(collector, limit=3)
    assert status == 200 and [c["span_id"] for c in page["calls"]] == ids[:3]
    got = [c["span_id"] for c in page["calls"]]

    before = collector.exporter.stored_rows
    provider = tracer_provider(collector, resource={"service.name": "svc-a"})
    newest = send_call(provider, "gpt-4o-mini", {"input": 1, "output": 1})  # starts now: before every page
    late = send_call(provider, "gpt-4o-mini", {"input": 1, "output": 1}, seeded["now"] - timedelta(minutes=30))
    wait_for_rows(collector, before + 2)

    while page["cursor"]:
        status, page = api(collector, limit=3, cursor=page["cursor"])
        assert status == 200, page
        got += [c["span_id"] for c in page["calls"]]
    assert got == [*ids, late]  # nothing shifted, skipped or repeated; the late call in its place
    assert listed(collector)[0] == newest

    # Following by `after`: the calls stored after a position, in the order they were stored.
    status, first = api(collector, limit=2, after="0:")
    assert status == 200 and len(first["calls"]) == 2
    status, rest = api(collector, after=first["after"])
    following = [c["span_id"] for c in first["calls"] + rest["calls"]]
    # Stored last (in one insert or two: by span id within an insert), whenever they started.
    assert sorted(following) == sorted([*ids, newest, late]) and set(following[-2:]) == {newest, late}
    status, none = api(collector, after=rest["after"])
    assert (none["calls"], none["after"]) == ([], rest["after"])


BAD_PARAMETERS = [
    ({"limit": "0"}, "limit must be a whole number from 1 to 1000"),
    ({"limit": "many"}, "limit must be a whole number"),
    ({"status": "failed"}, "status must be ok or error"),
    ({"min_cost": "cheap"}, "min_cost must be a decimal amount"),
    ({"min_cost": "-1"}, "min_cost must be between 0"),
    ({"since": "yesterday"}, "since expects a number and a unit"),
    ({"from": "noon"}, "from is not an ISO 8601 time"),
    ({"to": "2026-01-01T00:00:00"}, "to goes with from"),
    ({"cursor": "12:zz"}, "cursor must be TIME:SPANID"),
    ({"cursor": "1:", "after": "1:"}, "give cursor (page back) or after (follow), not both"),
    ({"servce": "x"}, "unknown parameter servce"),
]


def check_bad_parameters_are_400_naming_the_parameter(collector: Collector) -> None:
    for parameters, message in BAD_PARAMETERS:
        status, body = api(collector, **parameters)
        assert status == 400 and message in body["error"], (parameters, body)


def test_calls_api_filters_and_refuses_bad_parameters(collector: Collector, seeded: dict[str, Any]) -> None:
    check_filters_select_the_matching_calls_newest_first(collector, seeded)
    check_bad_parameters_are_400_naming_the_parameter(collector)


def test_a_project_key_lists_its_own_project_only(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector(AUTH)
    keys = {p: create_key(store, database, p, "app", "ingest")[0] for p in ("team-a", "team-b")}
    for project, key in keys.items():
        provider = TracerProvider(resource=Resource.create({"service.name": f"app-{project}"}))
        exporter = HttpSpanExporter(
            endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces", headers={"Authorization": f"Bearer {key}"}
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        send_call(provider, "gpt-4o-mini", {"input": 10, "output": 1})
    wait_for_rows(collector, 2)
    reader_a, _ = create_key(store, database, "team-a", "dashboards", "read")

    def get(key: str, query: str) -> tuple[int, Any]:
        status, _, body = http_request(collector, f"/v1/calls?{query}", headers={"Authorization": f"Bearer {key}"})
        return status, json.loads(body)

    # A key unknown to the collector makes it read the keys again, at most once a second (auth._MISS_REFRESH):
    # one created within a second of the ingest keys' first use may be refused until then.
    deadline = time.monotonic() + 10
    while (answer := get(reader_a, ""))[0] == 401 and time.monotonic() < deadline:
        time.sleep(0.2)
    status, page = answer
    assert status == 200 and [c["project"] for c in page["calls"]] == ["team-a"], page
    assert get(reader_a, "project=team-b")[0] == 403
    assert get(keys["team-a"], "")[0] == 403  # an ingest key reads no calls
    status, page = get(BOOTSTRAP, "")
    assert sorted(c["project"] for c in page["calls"]) == ["team-a", "team-b"]


def check_follower_shows_each_call_once_as_it_is_stored(
    collector: Collector, seeded: dict[str, Any], store: Client
) -> None:
    """`tail` reading the store itself: the latest calls first, then each new call once, however often polled.
    It follows svc-b, to which only CALLS and this check send (the paging check sends to svc-a)."""
    database = collector.store_config.database
    follower = Follower(lambda q: run_calls(store, database, q), parse_calls_query({"service": "svc-b"}))
    assert [c.span_id for c in follower.start(2)] == [seeded["ids"][3], seeded["ids"][2]]  # oldest first
    assert follower.poll() == []
    before = collector.exporter.stored_rows
    provider = tracer_provider(collector, resource={"service.name": "svc-b"})
    other = tracer_provider(collector, resource={"service.name": "svc-a"})
    new = [send_call(provider, "gpt-4o-mini", {"input": n, "output": 1}) for n in (1, 2)]
    send_call(other, "gpt-4o-mini", {"input": 3, "output": 1})
    wait_for_rows(collector, before + 3)
    assert sorted(c.span_id for c in follower.poll()) == sorted(new)  # one insert: in span id order
    assert follower.poll() == []


# --- the command line ------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_args(collector: Collector, seeded: dict[str, Any], chdb_path: Path, tmp_path: Path) -> list[str]:
    config = tmp_path / "pipelines.yaml"
    config.write_text((REPO / "pipelines.yaml").read_text())
    return ["--config", str(config), "--store", f"chdb://{chdb_path}", "--database", collector.store_config.database]


def check_calls_command_formats_filters_and_pages(
    seeded: dict[str, Any], cli_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = seeded["ids"]
    assert main(["calls", *cli_args, "--format", "json", "--service", "svc-b", "--limit", "2"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert [c["span_id"] for c in page["calls"]] == ids[2:4] and page["cursor"]
    assert main(["calls", *cli_args, "--format", "json", "--service", "svc-b", "--cursor", page["cursor"]]) == 0
    assert [c["span_id"] for c in json.loads(capsys.readouterr().out)["calls"]] == [ids[5]]

    assert main(["calls", *cli_args, "--min-cost", "0.01", "--limit", "1"]) == 0
    out = capsys.readouterr()
    assert "more: --cursor" in out.err
    lines = out.out.splitlines()
    assert lines[0].split()[:3] == ["time", "(UTC)", "service"] and len(lines) == 2
    assert "svc-a" in lines[1] and "100,000/5,000/0" in lines[1]

    assert main(["calls", *cli_args, "--feature", "agent"]) == 0
    table = capsys.readouterr().out
    unpriced_line = next(line for line in table.splitlines() if "acme-1" in line)
    assert "unpriced" in unpriced_line and "0.000000" not in unpriced_line  # never $0
    assert "error: rate_limited" in table

    assert main(["calls", *cli_args, "--format", "csv", "--user", "u-3"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["span_id"] for r in rows] == [ids[5], ids[6]] and Decimal(rows[0]["total_cost"]) > 0
    assert datetime.fromisoformat(rows[0]["time"]) == seeded["now"] - timedelta(minutes=6)

    assert main(["calls", *cli_args, "--min-cost", "a lot"]) == 2
    assert "--min-cost must be a decimal amount" in capsys.readouterr().err


def check_top_once_shows_spend_per_service_model_and_user(
    seeded: dict[str, Any], cli_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["top", *cli_args, "--once", "--minutes", "10"]) == 0
    frame = capsys.readouterr().out
    assert frame.startswith("spanmeter top: last 10 min") and "calls 7" in frame and "unpriced calls 1" in frame
    sections = frame.split("\n\n")[1:]
    assert [section.split()[0] for section in sections] == ["service", "model", "user"]
    services = {line.split()[0]: line.split() for line in sections[0].splitlines()[1:]}
    assert services["svc-a"][1] == "4" and services["svc-b"][1] == "3"
    acme = next(line for line in sections[1].splitlines() if line.startswith("acme-1"))
    assert "unpriced" in acme and "0.000000" not in acme  # its only call has no price: never $0
    assert main(["top", *cli_args, "--once", "--minutes", "2"]) == 0
    assert "calls 1 " in capsys.readouterr().out


def test_calls_and_top_reading_the_store(
    seeded: dict[str, Any], cli_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands reading the store themselves (in this process, beside the collector)."""
    check_calls_command_formats_filters_and_pages(seeded, cli_args, capsys)
    check_top_once_shows_spend_per_service_model_and_user(seeded, cli_args, capsys)


# --- the tests that store more calls beside CALLS: after those that only read them ------------------------------------


def test_calls_api_pages_are_stable_while_calls_arrive(collector: Collector, seeded: dict[str, Any]) -> None:
    check_pages_are_stable_while_calls_arrive(collector, seeded)


def test_tail_reading_the_store_shows_each_call_once(
    collector: Collector, seeded: dict[str, Any], store: Client
) -> None:
    check_follower_shows_each_call_once_as_it_is_stored(collector, seeded, store)


# --- against `spanmeter serve`, which holds its embedded store ----------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServeProcess, Path]]:
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    # Rows visible soon after their span arrives: segments sealed at 100 ms of age instead of the default 5 s,
    # and small segments read by the Python reader as shipped (the suite's SPANMETER_ENGINE_MIN_SPANS=0 sends
    # every segment through the engine, whose planning alone took 1-2 s a segment on this busy 2-core host).
    overrides = {
        "exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}},
        "processors": {"genai": {"engine_min_spans": 5000}},
    }
    raw = deep_merge(raw, overrides)
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(raw))
    serve = ServeProcess(config, tmp_path / "store")
    yield serve, config
    code, log = serve.terminate()
    assert code == 0, log


def start_tail(
    config: Path, store: list[str], *flags: str
) -> tuple[subprocess.Popen[str], queue.Queue[tuple[float, str]]]:
    """`spanmeter tail --format json` running, once it says it follows; its lines as (when read, line)."""
    command = [spanmeter_command(), "tail", "--config", str(config), *store, "--format", "json", *flags]
    tail = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    threading.Thread(target=lambda: [lines.put((time.monotonic(), line)) for line in tail.stdout], daemon=True).start()  # type: ignore[union-attr]
    assert tail.stderr is not None
    started = tail.stderr.readline()
    if "following calls" not in started:
        tail.kill()
        raise AssertionError(started + tail.stderr.read())
    return tail, lines


def test_tail_sees_a_call_within_two_seconds_of_its_span_being_sent(
    served: tuple[ServeProcess, Path], tmp_path: Path
) -> None:
    serve, config = served
    base = f"http://127.0.0.1:{serve.http_port}"
    provider = TracerProvider(resource=Resource.create({"service.name": "live-app"}))
    provider.add_span_processor(SimpleSpanProcessor(HttpSpanExporter(endpoint=f"{base}/v1/traces")))
    before = send_call(provider, "gpt-4o-mini", {"input": 5, "output": 5}, feature="warmup")

    store = ["--store", f"chdb://{tmp_path / 'store'}", "--collector", base]
    tail, lines = start_tail(config, store, "--interval", "0.2", "--feature", "live")
    try:
        latencies = []
        for _ in range(3):
            sent = time.monotonic()
            span_id = send_call(provider, "gpt-4o-mini", {"input": 7, "output": 3}, feature="live")
            seen_at, line = lines.get(timeout=10)
            call = json.loads(line)
            assert (call["span_id"], call["feature"], call["input_tokens"]) == (span_id, "live", 7)
            latencies.append(seen_at - sent)
        print(f"tail latency, span sent -> line printed: {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}")
        assert max(latencies) < 2.0, latencies
        assert lines.empty()  # the warm-up call (another feature) and each live call once
    finally:
        tail.terminate()
        tail.wait(10)

    # `calls` and `top` beside the same collector go through its API and find all four calls.
    out = subprocess.run(
        [spanmeter_command(), "calls", "--config", str(config), *store, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    found = [c["span_id"] for c in json.loads(out.stdout)["calls"]]
    assert len(found) == 4 and found[-1] == before
    top = subprocess.run(
        [spanmeter_command(), "top", "--config", str(config), *store, "--once", "--minutes", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert top.returncode == 0, top.stderr
    assert "calls 4 " in top.stdout and "live-app" in top.stdout and "gpt-4o-mini" in top.stdout


def test_a_followed_collector_stores_calls_sooner_than_its_segment_age(tmp_path: Path) -> None:
    """Segments sealed at a long age cost less CPU; while `tail` follows the calls through the collector's API,
    segments are sealed at FOLLOWED_AGE instead, so each call still shows within seconds (not the 60 s here)."""
    raw = deep_merge(
        yaml.safe_load((REPO / "pipelines.yaml").read_text()),
        {
            "exporters": {"clickhouse": {"batch": {"max_age": "60s"}}},
            "processors": {"genai": {"engine_min_spans": 5000}},
        },
    )
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(raw))
    serve = ServeProcess(config, tmp_path / "store")
    base = f"http://127.0.0.1:{serve.http_port}"
    store = ["--store", f"chdb://{tmp_path / 'store'}", "--collector", base]
    tail, lines = start_tail(config, store, "--interval", "0.5")
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "followed-app"}))
        provider.add_span_processor(SimpleSpanProcessor(HttpSpanExporter(endpoint=f"{base}/v1/traces")))
        latencies = []
        for _ in range(2):
            sent = time.monotonic()
            span_id = send_call(provider, "gpt-4o-mini", {"input": 7, "output": 3}, feature="followed")
            seen_at, line = lines.get(timeout=15)
            assert json.loads(line)["span_id"] == span_id
            latencies.append(seen_at - sent)
        print(f"followed tail latency, span sent -> line printed: {', '.join(f'{s:.2f} s' for s in latencies)}")
        assert max(latencies) < FOLLOWED_AGE + 5.0, latencies
    finally:
        tail.terminate()
        tail.wait(10)
        code, log = serve.terminate()
    assert code == 0, log


def test_a_calls_time_is_its_start_to_the_microsecond_below() -> None:
    """Through nanoseconds as integers: as a float, 20.999999999 s would show as the next second."""
    blank = {f.name: Decimal(0) if f.name == "total_cost" else 0 if f.type == "int" else "" for f in fields(CallRow)}
    call = CallRow(**{**blank, "time_unix_nano": 1_764_590_000_999_999_999})
    assert call.time == datetime(2025, 12, 1, 11, 53, 20, 999_999, tzinfo=UTC)
    assert CallRow.from_json(call.to_json()) == call and call.to_json()["time"].endswith("20.999999+00:00")


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--interval", "0"], "--interval must be above 0 seconds; got 0"), (["-n", "-1"], "--lines must be 0 or more")],
)
def test_tail_refuses_a_bad_flag_naming_it(flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", *flags]) == 2
    assert message in capsys.readouterr().err
