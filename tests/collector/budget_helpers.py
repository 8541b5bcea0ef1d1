"""What the budget tests share: a webhook receiver, a controllable clock, budget configs, spend spans."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from spanmeter.service import Collector

from .conftest import emit, http_request

REPO_CONFIG = Path(__file__).resolve().parents[2] / "pipelines.yaml"
SECRET = "test-webhook-secret"
PROVIDER = "acme"
MODEL = "budget-model"
# $1 per input token: a span with N input tokens costs exactly N USD.
PRICE = {"model": MODEL, "provider": PROVIDER, "input_per_mtok": 1_000_000, "output_per_mtok": 0}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookServer:
    """Records every POST; answers each with the next of `statuses` (then 200)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} of {count} webhook requests after {timeout}s")
            time.sleep(0.02)
        return self.requests


@contextmanager
def webhook_server() -> Iterator[WebhookServer]:
    recorder = WebhookServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            recorder.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = recorder.statuses.pop(0) if recorder.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        httpd.shutdown()
        httpd.server_close()


def valid_signature(request: Received, secret: str = SECRET) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers.get("x-spanmeter-signature", ""), expected)


class Clock:
    """A UTC clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def budget_overrides(
    budgets: list[dict[str, Any]], channels: dict[str, Any] | None = None, **settings: Any
) -> dict[str, Any]:
    """pipelines.yaml overrides: the exact price, a budget processor last in the chain, quick batches."""
    return {
        "processors": {
            "pricing": {"overrides": [PRICE]},
            "budget": {
                "budgets": budgets,
                "channels": channels or {},
                "reconcile_interval": "200ms",
                "allow_private_targets": True,
                **settings,
            },
        },
        "exporters": {"clickhouse": {"batch": {"max_age": "50ms"}}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["genai", "pricing", "tags", "budget"],
                    "exporters": ["clickhouse"],
                }
            }
        },
    }


def hook_channel(server: WebhookServer, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": server.url, "secret": SECRET, "timeout": "2s", "backoff": "50ms", **extra}


def spend(provider: TracerProvider, usd: int, start: datetime | None = None, **attributes: Any) -> str:
    """One priced chat span costing exactly `usd` USD."""
    return emit(
        provider,
        f"chat {MODEL}",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": MODEL,
            "gen_ai.usage.input_tokens": usd,
            "gen_ai.usage.output_tokens": 0,
            **attributes,
        },
        start_ns=int(start.timestamp() * 1e9) if start else None,
    )


def budget_status(collector: Collector) -> list[dict[str, Any]]:
    status, content_type, body = http_request(collector, "/v1/budgets")
    assert status == 200 and content_type.startswith("application/json"), body
    return json.loads(body)["budgets"]


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met after {timeout}s")
        time.sleep(0.05)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
