"""Spend reports: requests, tokens and cost grouped by a dimension over a time range.

Shared by `spanmeter report` (reading the store, or the collector's API when a collector holds
the embedded store) and the collector's `GET /v1/report`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

from clickhouse_connect.driver.client import Client

from .prices import PRICES_VERSION, UnknownModel, WhatIfModel, known_models, resolve
from .sampling import WEIGHT_SQL, rounded_cost, rounded_count, weighed_sql

__all__ = [
    "GROUPS",
    "ReportRequest",
    "ReportRow",
    "as_utc",
    "parse_by",
    "parse_since",
    "parse_what_if",
    "run_report",
]

# --by value -> SQL expression over genai_spans. A fixed list: the expression is never user text.
GROUPS: dict[str, str] = {
    "model": "if(response_model != '', response_model, request_model)",
    "provider": "provider",
    "service": "service_name",
    "feature": "feature",
    "user": "user_id",
    "session": "session_id",
    "project": "project",
    "environment": "environment",
    "operation": "operation",
    "convention": "convention",
    "price_status": "price_status",
}
_TAG_GROUP = "tags[{tag:String}]"
_SINCE = re.compile(r"^(\d+)([mhdw])$")
_SINCE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_QUERY = (
    resources.files("spanmeter.queries")
    .joinpath("report.sql")
    .read_text(encoding="utf-8")
    .replace("{weight}", WEIGHT_SQL)
    .replace("{weighed_cost}", weighed_sql("spans.total_cost"))
)
_WHAT_IF = resources.files("spanmeter.queries").joinpath("what_if.sql").read_text(encoding="utf-8")
_PER_MILLION = -6

COUNT_FIELDS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
COST_FIELDS = ("input_cost", "cache_read_cost", "cache_write_cost", "output_cost", "total_cost")


def parse_since(text: str, name: str = "since") -> timedelta:
    """`30m`, `24h`, `7d`, `2w` -> a timedelta. `name` is how the caller's user spelled the parameter
    (`--since` on the command line, `since` in a URL), for the error message."""
    match = _SINCE.match(text.strip())
    if not match:
        raise ValueError(f"{name} expects a number and a unit (m, h, d, w), e.g. 24h or 7d; got {text!r}")
    return timedelta(**{_SINCE_UNITS[match.group(2)]: int(match.group(1))})


def parse_by(text: str, name: str = "by") -> tuple[str, str | None]:
    """Validate a grouping (`--by`, `by=`); returns (group expression, tag name or None)."""
    if text.startswith("tag:") and len(text) > 4:
        return _TAG_GROUP, text[4:]
    if text in GROUPS:
        return GROUPS[text], None
    choices = ", ".join([*GROUPS, "tag:NAME"])
    raise ValueError(f"{name} must be one of {choices}; got {text!r}")


def parse_what_if(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`--what-if a --what-if b,c` (or `what_if=a,b`) -> the model names, in order, each once."""
    names = (name.strip() for value in values for name in value.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


@dataclass(frozen=True)
class ReportRequest:
    by: str
    start: datetime
    end: datetime
    project: str = ""
    what_if: tuple[str, ...] = ()
    """Models to price the same calls on (genai-prices names: `MODEL` or `PROVIDER:MODEL`)."""

    def __post_init__(self) -> None:
        # Times are UTC from here on (a naive time is taken as UTC), so headers and queries agree.
        object.__setattr__(self, "start", as_utc(self.start))
        object.__setattr__(self, "end", as_utc(self.end))
        parse_by(self.by)
        if self.start >= self.end:
            raise ValueError(
                f"the range is empty: from {self.start.isoformat()} is not before to {self.end.isoformat()}"
            )

    @classmethod
    def since(
        cls,
        by: str,
        since: str,
        project: str = "",
        now: datetime | None = None,
        name: str = "since",
        what_if: tuple[str, ...] = (),
    ) -> ReportRequest:
        end = now or datetime.now(UTC)
        return cls(by=by, start=end - parse_since(since, name), end=end, project=project, what_if=what_if)


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; a time without an offset is UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class ReportRow:
    group: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    input_cost: Decimal
    cache_read_cost: Decimal
    cache_write_cost: Decimal
    output_cost: Decimal
    total_cost: Decimal
    unpriced_requests: int
    estimated: bool
    """Probability sampling kept some of the group's rows (`ot=th:`): the estimates below weigh each row by the
    calls it stands for. Without sampling they equal `requests` and `total_cost`."""
    estimated_requests: int
    estimated_cost: Decimal
    what_if: dict[str, Decimal] = field(default_factory=dict)
    """The same calls' cost on each what-if model, by the name it was asked by."""

    def to_json(self) -> dict[str, Any]:
        """Counts as numbers, money as decimal strings (a float would not be exact)."""
        out: dict[str, Any] = {"group": self.group}
        for name in (*COUNT_FIELDS, "unpriced_requests"):
            out[name] = getattr(self, name)
        for name in COST_FIELDS:
            out[name] = format(getattr(self, name), "f")
        out["estimated"] = self.estimated
        out["estimated_requests"] = self.estimated_requests
        out["estimated_cost"] = format(self.estimated_cost, "f")
        if self.what_if:
            out["what_if"] = {model: format(cost, "f") for model, cost in self.what_if.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReportRow:
        values: dict[str, Any] = {"group": data["group"]}
        for name in (*COUNT_FIELDS, "unpriced_requests"):
            values[name] = int(data[name])
        for name in COST_FIELDS:
            values[name] = Decimal(data[name])
        # A collector before sampling weights answers no estimates: its rows are all counted exactly.
        values["estimated"] = bool(data.get("estimated", False))
        values["estimated_requests"] = int(data.get("estimated_requests", values["requests"]))
        values["estimated_cost"] = Decimal(data.get("estimated_cost", values["total_cost"]))
        values["what_if"] = {model: Decimal(cost) for model, cost in data.get("what_if", {}).items()}
        return cls(**values)


def run_report(client: Client, database: str, request: ReportRequest) -> list[ReportRow]:
    group, tag = parse_by(request.by)
    parameters: dict[str, Any] = {
        "database": database,
        "start": request.start.replace(tzinfo=None),
        "end": request.end.replace(tzinfo=None),
        "project": request.project,
    }
    if tag is not None:
        parameters["tag"] = tag
    models = _what_if_models(client, database, request.what_if)
    result = client.query(_QUERY.replace("{group}", group), parameters=parameters)
    rows = []
    for values in result.named_results():
        values["group"] = str(values["group"])
        values["estimated"] = bool(values["estimated"])
        values["estimated_requests"] = rounded_count(values["estimated_requests"])
        values["estimated_cost"] = rounded_cost(values["estimated_cost"])
        rows.append(ReportRow(**values))
    for model in models:
        costs = what_if_costs(client, _WHAT_IF.replace("{group}", group), parameters, model)
        for row in rows:
            row.what_if[model.asked] = costs.get(row.group, Decimal(0))
    return rows


def _what_if_models(client: Client, database: str, names: tuple[str, ...]) -> list[WhatIfModel]:
    """Each name resolved by genai-prices and present in model_prices; else UnknownModel naming it."""
    if not names:
        return []
    known = known_models(client, database)
    models = [resolve(name, known) for name in names]
    for model in models:
        if model.model not in known:
            raise UnknownModel(
                f"what-if model {model.asked!r}: genai-prices {PRICES_VERSION} knows it as "
                f"{model.provider}:{model.model}, "
                "but the store's model_prices has no rows of this version for it yet (a collector of this "
                "version writes them at start)"
            )
    return models


def what_if_costs(client: Client, query: str, parameters: dict[str, Any], model: WhatIfModel) -> dict[str, Decimal]:
    """Per group, the calls' exact cost on `model` in USD."""
    wanted = {**parameters, "version": PRICES_VERSION, "provider": model.provider, "model": model.model}
    result = client.query(query, parameters=wanted)
    return {str(group): Decimal(cost).scaleb(_PER_MILLION) for group, cost in result.result_rows}
