"""What a digest says, read from the store: spend against the previous period, the groups that moved most,
budgets in their current window, and the costliest findings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

from clickhouse_connect.driver.client import Client

from ..report import ReportRequest, ReportRow, run_report
from .period import DigestPeriod

__all__ = ["MOVER_GROUPS", "BudgetLine", "DayPoint", "Digest", "FindingLine", "Mover", "Totals", "build_digest"]

MOVER_GROUPS = ("service", "model", "feature")
CHART_PERIODS = 4
"""The chart shows this many periods of daily spend, the digest's own last (at least 14 days)."""

_DAILY = resources.files("spanmeter.queries").joinpath("digest_daily.sql").read_text(encoding="utf-8")
_BUDGETS = resources.files("spanmeter.queries").joinpath("digest_budgets.sql").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Totals:
    cost: Decimal
    requests: int
    tokens: int
    unpriced: int

    @classmethod
    def of(cls, rows: Sequence[ReportRow]) -> Totals:
        return cls(
            cost=sum((r.total_cost for r in rows), Decimal(0)),
            requests=sum(r.requests for r in rows),
            tokens=sum(r.input_tokens + r.output_tokens for r in rows),
            unpriced=sum(r.unpriced_requests for r in rows),
        )


@dataclass(frozen=True)
class Mover:
    """A group whose spend changed most from the previous period (either way)."""

    dimension: str
    group: str
    cost: Decimal
    previous_cost: Decimal

    @property
    def change(self) -> Decimal:
        return self.cost - self.previous_cost


@dataclass(frozen=True)
class BudgetLine:
    budget: str
    scope_value: str
    window_end: datetime
    spend_usd: Decimal
    limit_usd: Decimal
    percent: float
    projected_usd: Decimal
    state: str


@dataclass(frozen=True)
class FindingLine:
    kind: str
    scope: str
    action: str
    savings_usd_per_month: Decimal


@dataclass(frozen=True)
class DayPoint:
    day: date
    cost: Decimal
    requests: int


@dataclass(frozen=True)
class Digest:
    period: DigestPeriod
    project: str
    totals: Totals
    previous: Totals
    movers: list[Mover]
    days: list[DayPoint]
    budgets: list[BudgetLine] = field(default_factory=list)
    findings: list[FindingLine] = field(default_factory=list)

    @property
    def change(self) -> Decimal:
        return self.totals.cost - self.previous.cost

    @property
    def change_percent(self) -> Decimal | None:
        """Change against the previous period, in percent; None when the previous period spent nothing."""
        if not self.previous.cost:
            return None
        return (self.change * 100 / self.previous.cost).quantize(Decimal("0.1"))


FindingsSource = Callable[[Client, str, DigestPeriod, str, int], list[FindingLine]]
"""(client, database, period, project, top) -> the costliest findings; see `build_digest`."""


def build_digest(
    client: Client,
    database: str,
    period: DigestPeriod,
    project: str = "",
    top: int = 5,
    findings: FindingsSource | None = None,
    now: datetime | None = None,
) -> Digest:
    """Read a digest from the store. Budgets are as of `now` (their current windows when the digest is sent;
    default: the period's end); `findings` supplies the findings section (none without it)."""
    current = _report(client, database, "project", period, project)
    previous = _report(client, database, "project", period.previous, project)
    movers: list[Mover] = []
    for dimension in MOVER_GROUPS:
        now_rows = {r.group: r.total_cost for r in _report(client, database, dimension, period, project)}
        before = {r.group: r.total_cost for r in _report(client, database, dimension, period.previous, project)}
        for group in now_rows.keys() | before.keys():
            mover = Mover(dimension, group, now_rows.get(group, Decimal(0)), before.get(group, Decimal(0)))
            if mover.change:
                movers.append(mover)
    movers.sort(key=lambda m: (-abs(m.change), m.dimension, m.group))
    return Digest(
        period=period,
        project=project,
        totals=Totals.of(current),
        previous=Totals.of(previous),
        movers=movers[:top],
        days=_days(client, database, period, project),
        budgets=_budgets(client, database, now or period.end, top) if not project else [],
        findings=findings(client, database, period, project, top) if findings is not None else [],
    )


def _report(client: Client, database: str, by: str, period: DigestPeriod, project: str) -> list[ReportRow]:
    return run_report(client, database, ReportRequest(by, period.start, period.end, project))


def _days(client: Client, database: str, period: DigestPeriod, project: str) -> list[DayPoint]:
    """Daily spend over the chart's span, with the days that spent nothing filled in as zero."""
    span = max(period.length * CHART_PERIODS, timedelta(days=14))
    start = period.end - span
    result = client.query(_DAILY, parameters=_range(database, start, period.end, project))
    stored = {row[0]: (Decimal(row[1]), int(row[2])) for row in result.result_rows}
    days = []
    day = start.date()
    while day < period.end.date():
        cost, requests = stored.get(day, (Decimal(0), 0))
        days.append(DayPoint(day, cost, requests))
        day += timedelta(days=1)
    return days


def _budgets(client: Client, database: str, now: datetime, top: int) -> list[BudgetLine]:
    """Budgets whose window holds `now`, in the latest state a collector wrote. budget_status has no project
    column (a budget's scope may span projects), so a digest of one project lists none."""
    parameters = {"database": database, "now": now.astimezone(UTC).replace(tzinfo=None), "limit": top}
    result = client.query(_BUDGETS, parameters=parameters)
    return [
        BudgetLine(
            budget=str(values["budget"]),
            scope_value=str(values["scope_value"]),
            window_end=values["window_end"].replace(tzinfo=UTC),
            spend_usd=Decimal(values["spend_usd"]),
            limit_usd=Decimal(values["limit_usd"]),
            percent=float(values["percent"]),
            projected_usd=Decimal(values["projected_usd"]),
            state=str(values["state"]),
        )
        for values in result.named_results()
    ]


def _range(database: str, start: datetime, end: datetime, project: str) -> dict[str, Any]:
    return {
        "database": database,
        "start": start.astimezone(UTC).replace(tzinfo=None),
        "end": end.astimezone(UTC).replace(tzinfo=None),
        "project": project,
    }
