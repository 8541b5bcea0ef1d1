"""`POST /v1/calls` and `record_call`: a call reported by hand is stored and priced exactly as the same call
instrumented (the real openai and anthropic SDKs against the fake provider server, spans through the real OTel SDK
and OTLP exporter, a real collector on chDB); bad bodies are refused whole, naming the call and the field."""

from __future__ import annotations

import gzip
import json
import re
import shlex
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import yaml
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanmeter.keys import create_key
from spanmeter.service import Collector
from spanmeter_instrumentation import record_call, tags
from spanmeter_instrumentation.anthropic import AnthropicInstrumentor
from spanmeter_instrumentation.openai import OpenAIInstrumentor
from tests.fakes.provider_server import ANTHROPIC_USAGE, OPENAI_CHAT_USAGE, FakeProviderServer, provider_server

from .conftest import REPO, http_request, metric_value, rows, tracer_provider, wait_for_rows
from .test_auth import AUTH
from .test_durability import ServeProcess, query_store

COSTS = ("input_cost", "cache_read_cost", "cache_write_cost", "output_cost", "total_cost")
SAME = (
    *COSTS,
    "price_status",
    "price_source",
    "provider",
    "operation",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "feature",
    "user_id",
    "session_id",
    "tags",
    "project",
    "service_name",
    "status_code",
)
# The fake server's usage in OTel's meaning (Anthropic's input_tokens leaves out the cached ones).
CALLS = {
    "openai": {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "input_tokens": OPENAI_CHAT_USAGE["prompt_tokens"],
        "output_tokens": OPENAI_CHAT_USAGE["completion_tokens"],
        "cache_read_tokens": OPENAI_CHAT_USAGE["prompt_tokens_details"]["cached_tokens"],
        "reasoning_tokens": OPENAI_CHAT_USAGE["completion_tokens_details"]["reasoning_tokens"],
    },
    "anthropic": {
        "provider": "anthropic",
        "model": "claude-sonnet-4-6",
        "response_model": "claude-sonnet-4-6",
        "input_tokens": ANTHROPIC_USAGE["input_tokens"]
        + ANTHROPIC_USAGE["cache_read_input_tokens"]
        + ANTHROPIC_USAGE["cache_creation_input_tokens"],
        "output_tokens": ANTHROPIC_USAGE["output_tokens"],
        "cache_read_tokens": ANTHROPIC_USAGE["cache_read_input_tokens"],
        "cache_write_tokens": ANTHROPIC_USAGE["cache_creation_input_tokens"],
    },
}
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with provider_server() as server:
        yield server


def post_calls(collector: Collector, body: Any, key: str | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    status, _, answer = http_request(
        collector, "/v1/calls", raw if raw is not None else json.dumps(body).encode(), headers
    )
    return status, json.loads(answer)


@pytest.fixture(scope="module")
def collector(start_module_collector: Callable[..., Collector]) -> Collector:
    """One collector for the tests below (each start costs seconds); each test waits for and reads its own rows."""
    return start_module_collector({"exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}}})


def by_feature(store: Client, database: str, service: str) -> dict[str, dict[str, Any]]:
    found = rows(store, database, "service_name = {service:String}", service=service)
    assert len({row["feature"] for row in found}) == len(found), [row["feature"] for row in found]
    return {row["feature"]: row for row in found}


def test_recorded_and_posted_calls_are_priced_exactly_like_instrumented_ones(
    collector: Collector, store: Client, fake: FakeProviderServer
) -> None:
    before = collector.exporter.stored_rows
    provider = tracer_provider(collector, "http-protobuf", {"service.name": "shop"})
    instrumentors = (OpenAIInstrumentor(), AnthropicInstrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
    try:
        with tags(feature="openai-instrumented", user_id="u-1"):
            openai.OpenAI(base_url=fake.url("openai"), api_key="k", max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
        with tags(feature="anthropic-instrumented", user_id="u-1"):
            # open_telemetry=False: the SDK makes no span of its own (it would use the global provider), ours does.
            client = anthropic.Anthropic(
                base_url=fake.url("anthropic"), api_key="k", max_retries=0, open_telemetry=False
            )
            client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=MESSAGES)
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
    for name, call in CALLS.items():
        with tags(feature=f"{name}-recorded", user_id="u-1"):
            record_call(tracer_provider=provider, **call)
        with (
            tags(feature=f"{name}-timed", user_id="u-1"),
            record_call(provider=call["provider"], model=call["model"], tracer_provider=provider) as timed,
        ):
            timed.set_usage(**{k: v for k, v in call.items() if k.endswith("_tokens")})
            timed.set_response(model=call["response_model"])
    body = [
        {**call, "service": "shop", "tags": {"feature": f"{name}-posted", "user_id": "u-1"}}
        for name, call in CALLS.items()
    ]
    status, answer = post_calls(collector, body)
    assert status == 200, answer
    assert answer["accepted"] == 2 and len(answer["calls"]) == 2
    wait_for_rows(collector, before + 8)

    stored = by_feature(store, collector.store_config.database, "shop")
    for name in CALLS:
        instrumented = stored[f"{name}-instrumented"]
        assert instrumented["total_cost"] > 0 and instrumented["price_status"] == "priced", name
        assert sum(instrumented[c] for c in COSTS[:4]) == instrumented["total_cost"]
        for way in ("recorded", "timed", "posted"):
            row = stored[f"{name}-{way}"]
            expected = {k: instrumented[k] for k in SAME} | {
                "feature": f"{name}-{way}",
                "tags": {"feature": f"{name}-{way}"},
            }
            assert {k: row[k] for k in SAME} == expected, f"{name} {way}"
    posted = stored["openai-posted"]
    assert answer["calls"][0] == {"trace_id": posted["trace_id"], "span_id": posted["span_id"]}
    assert isinstance(posted["total_cost"], Decimal)


BAD_BODIES: list[tuple[Any, str]] = [
    ({"model": "gpt-4o"}, "provider: Field required"),
    ({"provider": "openai", "model": "gpt-4o", "input_tokens": -3}, "input_tokens: Input should be greater than"),
    ({"provider": "openai", "model": "gpt-4o", "input_tokens": "12"}, "input_tokens: Input should be a valid integer"),
    ({"provider": "openai", "model": "gpt-4o", "input_token": 12}, "input_token: Extra inputs are not permitted"),
    (
        {"provider": "openai", "model": "gpt-4o", "start_time": "yesterday"},
        "start_time: Input should be a valid datetime",
    ),
    ({"provider": "openai", "model": "gpt-4o", "tags": {"feature": 3}}, "tags.feature: Input should be a valid string"),
    (
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 5, "cache_read_tokens": 6},
        r"cache_read_tokens \+ cache_write_tokens \(6\) exceed input_tokens \(5\)",
    ),
    (
        {
            "provider": "openai",
            "model": "gpt-4o",
            "start_time": "2026-11-01T10:00+02:00",
            "end_time": "2026-11-01T07:59",
        },
        "end_time is before start_time",  # an offset and none (UTC) compared
    ),
    ({"provider": "openai", "model": "gpt-4o", "end_time": "2300-01-01T00:00:00"}, "end_time is not between"),
    ({"provider": "openai", "model": "gpt-4o", "duration_ms": 1e300}, "duration_ms: Input should be less than"),
    (
        {"provider": "openai", "model": "gpt-4o", "trace_id": "xyz"},
        "trace_id: String should have at least 32 characters",
    ),
    ("a string", "expected a call object or a list of them"),
]


def test_a_bad_body_is_answered_400_naming_the_field(collector: Collector) -> None:
    for body, message in BAD_BODIES:
        status, answer = post_calls(collector, body)
        assert status == 400, body
        assert re.search(message, answer["error"]), answer


def test_a_list_with_one_bad_call_is_refused_whole_naming_its_index(collector: Collector, store: Client) -> None:
    before = collector.exporter.stored_rows
    good = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "tags": {"feature": "good"}}
    status, answer = post_calls(collector, [good, good, {**good, "output_tokens": -1}])
    assert status == 400
    assert answer["error"].startswith("call 2: output_tokens: Input should be greater than or equal to 0")
    assert answer["errors"] == [
        {"index": 2, "field": "output_tokens", "message": "Input should be greater than or equal to 0"}
    ]
    status, answer = post_calls(collector, [], raw=b"[{")
    assert (status, answer["error"].split(":")[0]) == (400, "the body is not JSON")
    status, _, _ = http_request(collector, "/v1/calls", b"{}", {"Content-Type": "text/plain"})
    assert status == 415
    gzip_headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    status, _, answer = http_request(collector, "/v1/calls", b"not gzip", gzip_headers)
    assert (status, json.loads(answer)["error"].split(":")[0]) == (
        400,
        "Content-Encoding is gzip but the body is not valid gzip",
    )
    status, _, answer = http_request(collector, "/v1/calls", gzip.compress(json.dumps(good).encode()), gzip_headers)
    assert status == 200, answer  # gzip as for OTLP/HTTP

    # Nothing of the refused list was stored: the gzipped call is the only row of theirs (feature good).
    wait_for_rows(collector, before + 1)
    assert [row["feature"] for row in rows(store, collector.store_config.database, "feature = 'good'")] == ["good"]


def test_a_call_sent_again_with_its_id_is_stored_once(collector: Collector, store: Client) -> None:
    before = collector.exporter.stored_rows
    call = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "id": "job-7", "duration_ms": 250}
    call["service"] = "resent"
    first = post_calls(collector, call)
    again = post_calls(collector, [call, {**call, "id": "job-8"}])
    assert first[0] == again[0] == 200
    assert again[1]["calls"][0] == first[1]["calls"][0]  # the same span
    wait_for_rows(collector, before + 2)
    found = rows(store, collector.store_config.database, "service_name = 'resent'")
    assert len(found) == 2
    assert {row["duration_ns"] for row in found} == {250_000_000}


def readme_example() -> tuple[str, dict[str, str], bytes]:
    """The curl command README.md shows for POST /v1/calls: its URL, headers and body, as a shell would parse it."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### `POST /v1/calls`") :]
    block = re.search(r"```sh\n(curl .*?)\n```", section, re.S)
    assert block, "no curl example under POST /v1/calls in README.md"
    words = shlex.split(block.group(1), comments=True)
    url = next(w for w in words if w.startswith("http"))
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    body = words[words.index("-d") + 1].encode()
    return url, headers, body


def test_the_readme_curl_example_works(collector: Collector, store: Client) -> None:
    before = collector.exporter.stored_rows
    url, headers, body = readme_example()
    assert url.startswith("http://127.0.0.1:4318/")
    request = urllib.request.Request(
        url.replace("127.0.0.1:4318", f"127.0.0.1:{collector.http_port}"), data=body, headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    sent = json.loads(body)
    assert answer["accepted"] == len(sent)
    wait_for_rows(collector, before + len(sent))
    stored = {row["span_id"]: row for row in rows(store, collector.store_config.database)}
    for call, ids in zip(sent, answer["calls"], strict=True):
        row = stored[ids["span_id"]]
        assert (row["provider"], row["request_model"], row["input_tokens"]) == (
            call["provider"],
            call["model"],
            call["input_tokens"],
        )
        assert row["service_name"] == call["service"]
        assert row["status_code"] == ("ERROR" if call.get("status") == "error" else "UNSET")
        assert row["price_status"] == "priced"


def test_keys_guard_it_like_otlp(start_collector: Callable[..., Collector], store: Client, database: str) -> None:
    collector = start_collector(AUTH)
    ingest, _ = create_key(store, database, "team-a", "batch", "ingest")
    read, _ = create_key(store, database, "team-a", "notebook", "read")
    call = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10}
    assert post_calls(collector, call)[0] == 401
    status, answer = post_calls(collector, call, read)
    assert status == 403 and "cannot send spans" in answer["error"]
    status, answer = post_calls(collector, [call, {**call, "project": "team-b"}], ingest)
    assert status == 403 and answer["error"].startswith("call 1: project:"), answer
    assert post_calls(collector, call, ingest)[0] == 200
    wait_for_rows(collector, 1)
    assert [row["project"] for row in rows(store, database)] == ["team-a"]  # the key's project


def test_answered_calls_survive_a_kill(tmp_path: Path) -> None:
    """Answered means in the write-ahead log, as for OTLP: a collector killed right after answering (its
    segments far from sealed) leaves the calls for the next one to store."""
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    raw["exporters"]["clickhouse"]["batch"] = {"max_rows": 100_000, "max_age": "10m"}
    config = tmp_path / "pipelines.yaml"
    config.write_text(yaml.safe_dump(raw))
    data = tmp_path / "store"
    serve = ServeProcess(config, data)
    call = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 10}
    request = urllib.request.Request(
        f"http://127.0.0.1:{serve.http_port}/v1/calls",
        data=json.dumps([call, {**call, "tags": {"feature": "second"}}]).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answered = {ids["span_id"] for ids in json.load(response)["calls"]}
    serve.process.kill()
    serve.process.wait(timeout=30)

    code, log = ServeProcess(config, data).terminate()
    assert code == 0, log
    stored = query_store(data, "SELECT span_id, total_cost FROM spanmeter.genai_spans")
    assert {span for span, _ in stored} == answered
    assert all(Decimal(cost) > 0 for _, cost in stored)


# --- fuzzing: whatever the body, a documented answer, and every accepted call accounted for -------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
NOW = datetime.now(UTC).replace(tzinfo=None)
# Near now (some past max_future_skew), edges, and anything: calls spread over years would each cost an insert per
# month partition, which is slow and not what this test is about.
TIMES = st.one_of(
    st.integers(min_value=int(NOW.timestamp()) - 2 * 86400, max_value=int(NOW.timestamp()) + 7200),
    st.sampled_from([0, -1, 946_684_799, 946_684_800, 2**40, 1e300, -1e300, 1.5]),
    st.datetimes(
        min_value=NOW - timedelta(days=2), max_value=NOW + timedelta(hours=2), timezones=st.sampled_from([None, UTC])
    ).map(datetime.isoformat),
    st.text(max_size=30),
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "provider": st.sampled_from(["openai", "anthropic", "gcp.gemini", "acme", ""]) | st.text(max_size=40),
    "model": st.sampled_from(["gpt-4o-mini", "claude-haiku-4-5", "unknown-model"]) | st.text(max_size=40),
    "operation": st.sampled_from(["chat", "embeddings", "text_completion"]) | st.text(max_size=20),
    "response_model": st.text(max_size=20),
    "input_tokens": st.integers(min_value=-5, max_value=2**70),
    "output_tokens": st.integers(min_value=-5, max_value=2**70),
    "cache_read_tokens": st.integers(min_value=-5, max_value=10**6),
    "cache_write_tokens": st.integers(min_value=-5, max_value=10**6),
    "reasoning_tokens": st.integers(min_value=-5, max_value=10**6),
    "finish_reasons": st.lists(st.text(max_size=10), max_size=3),
    "start_time": TIMES,
    "end_time": TIMES,
    "duration_ms": st.floats() | st.integers(min_value=-10, max_value=2**64),
    "status": st.sampled_from(["ok", "error", "OK", ""]),
    "error": st.text(max_size=20),
    "service": st.text(max_size=20),
    "environment": st.text(max_size=20),
    "tags": st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
    "id": st.text(min_size=1, max_size=10),
    "trace_id": st.text(alphabet="0123456789abcdefg", min_size=30, max_size=33),
}


@st.composite
def calls(draw: st.DrawFn) -> dict[str, Any]:
    """A call with some fields, each a value of its kind (valid or not) or, now and then, any JSON value."""
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=8, unique=True))
    call: dict[str, Any] = {"provider": "openai", "model": "gpt-4o-mini"}
    for name in names:
        call[name] = draw(FIELDS[name] | JSON_VALUES if draw(st.integers(0, 9)) == 0 else FIELDS[name])
    if draw(st.integers(0, 19)) == 0:
        call[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    return call


BODIES = st.one_of(
    calls().map(json.dumps),
    st.lists(calls(), max_size=4).map(json.dumps),
    JSON_VALUES.map(json.dumps),
    st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
)


def test_fuzzed_bodies_get_documented_answers_and_accepted_calls_are_all_accounted_for(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    # Segments of 2 s: a few engine reads and inserts for the whole run, rather than one per request.
    collector = start_collector({"exporters": {"clickhouse": {"batch": {"max_age": "2s"}}}})
    accepted = 0

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(BODIES)
    def send(body: str) -> None:
        nonlocal accepted
        status, _, answer = http_request(
            collector, "/v1/calls", body.encode("utf-8", "surrogatepass"), {"Content-Type": "application/json"}
        )
        assert status in (200, 400), (status, body, answer)
        if status == 200:
            accepted += json.loads(answer)["accepted"]

    send()
    assert accepted > 0  # the strategies reach valid calls too
    # Each accepted call is a row, a span refused when read (e.g. starting too far ahead), or a resend.
    deadline = time.monotonic() + 30
    while True:
        refused = store.query(
            "SELECT sum(rows) FROM {db:Identifier}.ingest_rejections", parameters={"db": database}
        ).result_rows[0][0]
        duplicates = metric_value(collector, "spanmeter_spans_dropped_total", reason="duplicate_call")
        counted = collector.exporter.stored_rows + int(refused) + int(duplicates)
        if counted == accepted or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counted == accepted, (
        collector.exporter.stored_rows,
        refused,
        duplicates,
        accepted,
    )
