"""`spanmeter.Client`: the collector's HTTP API from Python, its answers as typed objects (money as Decimal), so
notebooks and scripts need not parse JSON by hand.

    client = spanmeter.Client("http://127.0.0.1:4318", key="smk_...")
    for row in client.report(by="feature", since="7d"):
        print(row.group, row.total_cost)

Only the standard library (urllib): the API is a few small JSON requests, the collector's own CLI asks it the
same way, and a notebook needs nothing installed beside spanmeter nor an event loop.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from .calls import CallRow, CallsPage, Cursor
from .findings.model import Finding
from .receivers.calls_json import CallIn
from .report import ReportRow

__all__ = ["ApiError", "BudgetState", "Budgets", "CallsPage", "Client", "RecordedCalls", "SpanIds"]

API_KEY_ENV = "SPANMETER_API_KEY"


class ApiError(Exception):
    """The collector answered an error (`status`, and its `message`), or could not be reached (`status` None).
    `errors`: the bad calls of a refused `record_calls`, by index and field."""

    def __init__(self, status: int | None, message: str, url: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(f"{status or 'unreachable'}: {message} ({url})")
        self.status = status
        self.message = message
        self.url = url
        self.errors = errors or []


@dataclass(frozen=True)
class BudgetState:
    """One budget (one value of an `each` budget) in its current window."""

    budget: str
    scope: dict[str, str]
    values: dict[str, str]
    window: str
    window_start: datetime
    window_end: datetime
    action: str
    state: str
    spend_usd: Decimal
    limit_usd: Decimal
    projected_usd: Decimal
    percent: float
    tokens: int
    requests: int
    estimated: bool = False
    """Probability sampling kept some of the budget's calls: the estimates count each as the calls it stands for."""
    estimated_spend_usd: Decimal = Decimal(0)
    estimated_requests: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    """Whatever else the collector said (limits in tokens and requests, thresholds, where it was defined...)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BudgetState:
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            budget=data["budget"],
            scope=dict(data["scope"]),
            values=dict(data.get("values") or {}),
            window=data["window"],
            window_start=_time(data["window_start"]),
            window_end=_time(data["window_end"]),
            action=data["action"],
            state=data["state"],
            spend_usd=Decimal(data["spend_usd"]),
            limit_usd=Decimal(data["limit_usd"]),
            projected_usd=Decimal(data["projected_usd"]),
            percent=float(data["percent"]),
            tokens=int(data["tokens"]),
            requests=int(data["requests"]),
            # A collector before sampling weights answers no estimates: its spend is all counted exactly.
            estimated=bool(data.get("estimated", False)),
            estimated_spend_usd=Decimal(data.get("estimated_spend_usd", data["spend_usd"])),
            estimated_requests=int(data.get("estimated_requests", data["requests"])),
            extra={k: v for k, v in data.items() if k not in known},
        )


@dataclass(frozen=True)
class Budgets:
    """`GET /v1/budgets`: every budget's state; `reason` says why there are none, when there are none."""

    generated_at: datetime
    budgets: list[BudgetState]
    project: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class SpanIds:
    trace_id: str
    span_id: str


@dataclass(frozen=True)
class RecordedCalls:
    """What `POST /v1/calls` took (all of the calls, durably), and each call's span, in the calls' order."""

    accepted: int
    calls: list[SpanIds]


class Client:
    """The API of the collector at `url` (its OTLP/HTTP address, e.g. `http://127.0.0.1:4318`). `key`: a project
    key, else `$SPANMETER_API_KEY` when set; none is needed while the collector requires no keys.
    Errors raise ApiError."""

    def __init__(
        self, url: str, key: str | None = None, *, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._key = key if key is not None else os.environ.get(API_KEY_ENV) or None
        self._timeout = timeout
        self._ssl = ssl_context

    def __repr__(self) -> str:  # never the key
        return f"Client({self.url!r})"

    def report(
        self,
        by: str = "model",
        since: str | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        project: str | None = None,
    ) -> list[ReportRow]:
        """Requests, tokens and spend per `by` (`model`, `feature`, `user`, `tag:NAME`...), costliest first, over
        `since` (`24h` by default, `7d`...) or `start`..`end` (end: now)."""
        parameters = {"by": by, "since": since, "from": start, "to": end, "project": project}
        return [ReportRow.from_json(row) for row in self._get("/v1/report", parameters)]

    def calls(
        self,
        *,
        project: str | None = None,
        service: str | None = None,
        model: str | None = None,
        feature: str | None = None,
        user: str | None = None,
        session: str | None = None,
        status: Literal["ok", "error"] | None = None,
        min_cost: Decimal | str | None = None,
        since: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        cursor: Cursor | str | None = None,
        after: Cursor | str | None = None,
    ) -> CallsPage:
        """Recent calls, newest first (or, with `after`, those stored since, oldest first), filtered; a page of
        `limit` (50 by default, at most 1000)."""
        parameters: dict[str, Any] = {
            "project": project,
            "service": service,
            "model": model,
            "feature": feature,
            "user": user,
            "session": session,
            "status": status,
            "min_cost": min_cost,
            "since": since,
            "from": start,
            "to": end,
            "limit": limit,
            "cursor": cursor,
            "after": after,
        }
        return CallsPage.from_json(self._get("/v1/calls", parameters))

    def iter_calls(self, **filters: Any) -> Iterator[CallRow]:
        """Every call the filters of `calls` select, newest first, page after page."""
        cursor = None
        while True:
            page = self.calls(**filters, cursor=cursor)
            yield from page.calls
            if not page.calls or not page.cursor:
                return
            cursor = page.cursor

    def budgets(self) -> Budgets:
        """Every budget's state, as the collector last reconciled it."""
        answer = self._get("/v1/budgets", {})
        return Budgets(
            generated_at=_time(answer["generated_at"]),
            budgets=[BudgetState.from_json(entry) for entry in answer["budgets"]],
            project=answer.get("project"),
            reason=answer.get("reason"),
        )

    def findings(self, since: str | None = None, *, project: str | None = None) -> list[Finding]:
        """Where money goes to waste over `since` (default 30d), largest savings per month first
        (`spanmeter.findings.model.Finding`)."""
        answer = self._get("/v1/findings", {"since": since, "project": project})
        return [Finding.from_json(entry) for entry in answer["findings"]]

    def record_calls(self, calls: Iterable[CallIn | Mapping[str, Any]]) -> RecordedCalls:
        """Sends calls made where no instrumentation saw them (`POST /v1/calls`); each a `CallIn` or a mapping of
        its fields (checked here first: a bad one raises pydantic's ValidationError, naming its field)."""
        checked = [call if isinstance(call, CallIn) else CallIn.model_validate(call) for call in calls]
        body = [call.model_dump(mode="json", exclude_none=True) for call in checked]
        answer = self._request("POST", "/v1/calls", body=body)
        return RecordedCalls(answer["accepted"], [SpanIds(c["trace_id"], c["span_id"]) for c in answer["calls"]])

    def _get(self, path: str, parameters: Mapping[str, Any]) -> Any:
        return self._request("GET", path, parameters)

    def _request(self, method: str, path: str, parameters: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        query = urllib.parse.urlencode(
            {name: _parameter(value) for name, value in (parameters or {}).items() if value is not None}
        )
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        headers = {"Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._ssl) as response:
                return json.loads(response.read(), parse_float=Decimal)
        except urllib.error.HTTPError as exc:
            message, errors = _error_of(exc.read())
            raise ApiError(exc.code, message, url, errors) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise ApiError(None, f"cannot reach the collector: {reason}", url) from None


def _parameter(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _error_of(body: bytes) -> tuple[str, list[dict[str, Any]]]:
    """The API's `{"error": ..., "errors": [...]}`, else the body's start."""
    text = body.decode(errors="replace")
    try:
        data = json.loads(text)
        return str(data["error"]), list(data.get("errors") or [])
    except (ValueError, KeyError, TypeError):
        return text[:300] or "no error text", []


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
