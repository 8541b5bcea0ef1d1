"""Recent calls: the rows of genai_spans themselves, filtered, newest first, a page at a time.

Shared by `spanmeter calls`, `spanmeter tail` (reading the store, or the collector's API when a
collector holds the embedded store) and the collector's `GET /v1/calls`.

Two keyset cursors, so that pages stay put while rows arrive:

- `cursor` pages back through the listing, newest first by (start time, span id): the next page is
  the calls strictly before the last one shown. Calls stored meanwhile with a later start never
  shift a page; a late call with an earlier start shows up on a later page, never twice.
- `after` follows the store, oldest first by (stored time, span id), for `tail`: the calls stored
  strictly after the last one seen. The stored time is `ingested_at`, stamped in milliseconds by
  ClickHouse at insert, so a call is followed by when it was stored, not when it started.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

from .report import as_utc, parse_since

__all__ = [
    "API_PARAMETERS",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "PARAMETERS",
    "CallRow",
    "CallsPage",
    "CallsQuery",
    "Cursor",
    "parse_calls_query",
    "run_calls",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
_QUERY = resources.files("spanmeter.queries").joinpath("calls.sql").read_text(encoding="utf-8")

# Filter -> SQL fragment over genai_spans with its value as a query parameter of the same name.
# A fixed list: the fragments are never user text.
FILTERS: dict[str, str] = {
    "project": "project = {project:String}",
    "service": "service_name = {service:String}",
    "model": "{model:String} IN (request_model, response_model)",
    "feature": "feature = {feature:String}",
    "user": "user_id = {user:String}",
    "session": "session_id = {session:String}",
    "min_cost": "total_cost >= {min_cost:Decimal(18, 12)}",
    "start": "timestamp >= {start:DateTime64(9, 'UTC')}",
    "end": "timestamp < {end:DateTime64(9, 'UTC')}",
    "cursor": "(timestamp, span_id) < (fromUnixTimestamp64Nano({cursor_n:Int64}, 'UTC'), {cursor_span:String})",
    "after": "(ingested_at, span_id) > (fromUnixTimestamp64Milli({after_n:Int64}, 'UTC'), {after_span:String})",
}
_ERROR = "(status_code = 'ERROR' OR error_type != '')"
STATUSES: dict[str, str] = {"ok": f"NOT {_ERROR}", "error": _ERROR}
ORDERS = {"listing": "timestamp DESC, span_id DESC", "tail": "ingested_at ASC, span_id ASC"}

PARAMETERS = ("project", "service", "model", "feature", "user", "session", "status", "min_cost")
"""The filters, by the names `GET /v1/calls` and the command line (with `--`, `_` as `-`) give them."""
_RANGE = ("since", "from", "to", "limit", "cursor", "after")
API_PARAMETERS = (*PARAMETERS, *_RANGE, "database")
"""What `GET /v1/calls` reads; any other parameter is refused (api.check_parameters)."""
_CURSOR = re.compile(r"^(\d{1,19}):([0-9a-f]{0,32})$")


@dataclass(frozen=True)
class Cursor:
    """A keyset position: a time in integer units (ns of start for `cursor`, ms of storing for `after`)
    and a span id. Written `TIME:SPANID`, e.g. `1764590000123456789:00f067aa0ba902b7`."""

    time: int
    span_id: str = ""

    def __str__(self) -> str:
        return f"{self.time}:{self.span_id}"

    @classmethod
    def parse(cls, text: str, name: str) -> Cursor:
        match = _CURSOR.match(text.strip())
        if not match:
            raise ValueError(
                f"{name} must be TIME:SPANID as an answer gave it (e.g. 1764590000123:00f067aa0ba902b7); got {text!r}"
            )
        return cls(int(match.group(1)), match.group(2))


@dataclass(frozen=True)
class CallsQuery:
    filters: Mapping[str, str] = field(default_factory=dict)
    status: Literal["", "ok", "error"] = ""
    min_cost: Decimal | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: Cursor | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value))
        if self.cursor is not None and self.after is not None:
            raise ValueError("give cursor (page back) or after (follow), not both")

    @property
    def mode(self) -> Literal["listing", "tail"]:
        return "tail" if self.after is not None else "listing"

    def with_project(self, project: str) -> CallsQuery:
        filters = {k: v for k, v in self.filters.items() if k != "project"}
        return replace(self, filters={**filters, "project": project} if project else filters)

    def to_parameters(self) -> dict[str, str]:
        """The query as `GET /v1/calls` parameters (what `parse_calls_query` reads back)."""
        out = dict(self.filters)
        if self.status:
            out["status"] = self.status
        if self.min_cost is not None:
            out["min_cost"] = format(self.min_cost, "f")
        if self.start is not None:
            out["from"] = self.start.isoformat()
        if self.end is not None:
            out["to"] = self.end.isoformat()
        out["limit"] = str(self.limit)
        for name in ("cursor", "after"):
            if (position := getattr(self, name)) is not None:
                out[name] = str(position)
        return out


def parse_calls_query(
    values: Mapping[str, str],
    name: Callable[[str], str] = str,
    now: datetime | None = None,
    default_since: str | None = "24h",
) -> CallsQuery:
    """Read the filters and range from parameters (`GET /v1/calls`'s, or the command line's as strings):
    PARAMETERS, `since` (a window ending now) or `from` with optional `to` (ISO 8601, UTC if no offset),
    `limit`, `cursor` or `after`. Errors name the parameter as `name(parameter)` spells it for this user."""
    filters = {key: values[key] for key in PARAMETERS[:6] if values.get(key)}
    status = values.get("status", "")
    if status not in ("", *STATUSES):
        raise ValueError(f"{name('status')} must be ok or error; got {status!r}")
    min_cost = None
    if values.get("min_cost"):
        try:
            min_cost = Decimal(values["min_cost"])
        except InvalidOperation:
            raise ValueError(
                f"{name('min_cost')} must be a decimal amount in USD; got {values['min_cost']!r}"
            ) from None
        if not min_cost.is_finite() or min_cost < 0 or min_cost >= Decimal("1e6"):
            raise ValueError(
                f"{name('min_cost')} must be between 0 and 999999.999999999999 USD; got {values['min_cost']!r}"
            )
    start, end = _range(values, name, now or datetime.now(UTC), default_since)
    limit = _limit(values.get("limit"), name)
    positions = {key: Cursor.parse(values[key], name(key)) for key in ("cursor", "after") if values.get(key)}
    if len(positions) == 2:
        raise ValueError(f"give {name('cursor')} (page back) or {name('after')} (follow), not both")
    return CallsQuery(filters, status, min_cost, start, end, limit, **positions)  # type: ignore[arg-type]


def _range(
    values: Mapping[str, str], name: Callable[[str], str], now: datetime, default_since: str | None
) -> tuple[datetime | None, datetime | None]:
    if values.get("from"):
        if values.get("since"):
            raise ValueError(f"give either {name('since')} or {name('from')}/{name('to')}, not both")
        start = _time(values, "from", name)
        end = _time(values, "to", name) if values.get("to") else None
        if end is not None and start >= end:
            raise ValueError(
                f"the range is empty: {name('from')} {start.isoformat()} is not before {name('to')} {end.isoformat()}"
            )
        return start, end
    if values.get("to"):
        raise ValueError(f"{name('to')} goes with {name('from')}")
    since = values.get("since") or default_since
    return (now - parse_since(since, name("since")) if since else None), None


def _time(values: Mapping[str, str], key: str, name: Callable[[str], str]) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(values[key]))
    except ValueError:
        raise ValueError(f"{name(key)} is not an ISO 8601 time: {values[key]!r}") from None


def _limit(text: str | None, name: Callable[[str], str]) -> int:
    if not text:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"{name('limit')} must be a whole number from 1 to {MAX_LIMIT}; got {text!r}")
    return limit


@dataclass(frozen=True)
class CallRow:
    """One call as `calls` shows it. Cost is exact; an unpriced call says so (`price_status`), its 0 is no price."""

    time_unix_nano: int
    ingested_unix_milli: int
    trace_id: str
    span_id: str
    project: str
    service: str
    environment: str
    operation: str
    provider: str
    model: str
    feature: str
    user: str
    session: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    total_cost: Decimal
    price_status: str
    duration_ns: int
    status: str
    error_type: str

    @property
    def time(self) -> datetime:
        # Whole seconds and microseconds apart: ns / 1e9 as a float is off by a microsecond for some times.
        seconds, nanos = divmod(self.time_unix_nano, 1_000_000_000)
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)

    @property
    def unpriced(self) -> bool:
        return self.price_status == "unpriced"

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.time_unix_nano, self.span_id)

    @property
    def after(self) -> Cursor:
        return Cursor(self.ingested_unix_milli, self.span_id)

    def to_json(self) -> dict[str, Any]:
        """Money as a decimal string (a float would not be exact); `time` in ISO 8601 beside the exact nanoseconds."""
        out: dict[str, Any] = {"time": self.time.isoformat(timespec="microseconds"), **asdict(self)}
        out["total_cost"] = format(self.total_cost, "f")
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallRow:
        values = {f.name: data[f.name] for f in fields(cls)}
        values["total_cost"] = Decimal(values["total_cost"])
        return cls(**values)


@dataclass(frozen=True)
class CallsPage:
    """A page of calls and where the next one starts: `cursor` (older calls; None at the end) when
    listing, `after` (calls stored later; the same position when none were) when following."""

    calls: list[CallRow]
    cursor: Cursor | None = None
    after: Cursor | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": [call.to_json() for call in self.calls],
            "cursor": str(self.cursor) if self.cursor else None,
            "after": str(self.after) if self.after else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallsPage:
        return cls(
            [CallRow.from_json(item) for item in data["calls"]],
            Cursor.parse(data["cursor"], "cursor") if data.get("cursor") else None,
            Cursor.parse(data["after"], "after") if data.get("after") else None,
        )


def run_calls(client: Client, database: str, query: CallsQuery) -> CallsPage:
    conditions = []
    parameters: dict[str, Any] = {"database": database, "limit": query.limit}
    for name, value in query.filters.items():
        conditions.append(FILTERS[name])
        parameters[name] = value
    if query.status:
        conditions.append(STATUSES[query.status])
    if query.min_cost is not None:
        conditions.append(FILTERS["min_cost"])
        parameters["min_cost"] = query.min_cost
    for name in ("start", "end"):
        if (moment := getattr(query, name)) is not None:
            conditions.append(FILTERS[name])
            parameters[name] = moment.replace(tzinfo=None)
    for name in ("cursor", "after"):
        if (position := getattr(query, name)) is not None:
            conditions.append(FILTERS[name])
            parameters[f"{name}_n"], parameters[f"{name}_span"] = position.time, position.span_id
    sql = _QUERY.replace("{where}", " AND ".join(conditions or ["1"])).replace("{order}", ORDERS[query.mode])
    calls = [_row(values) for values in client.query(sql, parameters=parameters).named_results()]
    if query.mode == "tail":
        return CallsPage(calls, after=calls[-1].after if calls else query.after)
    return CallsPage(calls, cursor=calls[-1].cursor if len(calls) == query.limit else None)


def _row(values: dict[str, Any]) -> CallRow:
    status = "error" if values.pop("status_code") == "ERROR" or values["error_type"] else "ok"
    return CallRow(
        service=values.pop("service_name"),
        user=values.pop("user_id"),
        session=values.pop("session_id"),
        status=status,
        **values,
    )
