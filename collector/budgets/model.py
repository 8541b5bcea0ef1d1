"""A budget as the collector uses it (config + compiled scope + window), its status, and a crossing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..sampling import rounded_cost, rounded_count
from .config import BudgetConfig
from .ledger import Totals
from .scope import Scope
from .windows import Window

__all__ = ["Budget", "BudgetStatus", "Crossing", "event_id", "format_usd", "iso"]

_HUNDRED = Decimal(100)


def format_usd(amount: Decimal | str, places: int = 2, significant: int = 4) -> str:
    """An amount with thousands separators, at least `places` decimals, and more where a small amount
    needs them (up to `significant` digits, never more than it has): $0.002 is `0.002`, not `0.00`."""
    value = Decimal(amount)
    has = max(0, -int(value.normalize().as_tuple().exponent))
    small = significant - 1 - value.adjusted() if value else 0
    decimals = max(places, min(has, small))
    return f"{value:,.{decimals}f}"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Budget:
    config: BudgetConfig
    scope: Scope
    window: Window

    @classmethod
    def compile(cls, config: BudgetConfig) -> Budget:
        return cls(config, Scope(config.scope), Window.parse(config.window))

    @property
    def name(self) -> str:
        return self.config.name

    def percent(self, totals: Totals) -> Decimal:
        """The highest of spend, tokens and requests against their limits, in percent. Spend and requests are
        the estimates: under probability sampling the rows stored stand for more calls than they are (the
        estimates equal the stored sums where nothing is sampled); tokens are the stored sums."""
        config = self.config
        percent = totals.estimated_cost * _HUNDRED / config.limit_usd
        if config.limit_tokens:
            percent = max(percent, Decimal(totals.tokens) * _HUNDRED / config.limit_tokens)
        if config.limit_requests:
            percent = max(percent, totals.estimated_requests * _HUNDRED / config.limit_requests)
        return percent

    def state(self, percent: Decimal) -> str:
        if percent >= _HUNDRED:
            return "exceeded"
        return "warn" if percent >= self.config.thresholds[0] else "ok"


def event_id(budget: str, scope_value: str, window_start: datetime, threshold: int) -> str:
    """The same crossing gets the same id in every collector, before and after a restart."""
    identity = "\x1f".join((budget, scope_value, iso(window_start), str(threshold)))
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    values: dict[str, str]
    scope_value: str
    window_start: datetime
    window_end: datetime
    totals: Totals
    percent: Decimal
    projected_usd: Decimal

    @property
    def state(self) -> str:
        return self.budget.state(self.percent)

    def to_json(self) -> dict[str, Any]:
        config = self.budget.config
        return {
            **_described(self.budget, self.scope_value, self.values, self.window_start, self.window_end),
            **_spent(self.budget, self.totals, self.percent),
            "resets_at": iso(self.window_end),
            "state": self.state,
            "projected_usd": str(self.projected_usd),
            "limit_tokens": config.limit_tokens,
            "limit_requests": config.limit_requests,
            "thresholds": list(config.thresholds),
        }


def _described(
    budget: Budget, scope_value: str, values: dict[str, str], start: datetime, end: datetime
) -> dict[str, Any]:
    return {
        "budget": budget.name,
        "scope": dict(budget.config.scope),
        "values": values,
        "scope_value": scope_value,
        "window": budget.window.label,
        "window_start": iso(start),
        "window_end": iso(end),
        "action": budget.config.action,
    }


def _spent(budget: Budget, totals: Totals, percent: Decimal) -> dict[str, Any]:
    return {
        "spend_usd": str(totals.cost),
        "limit_usd": str(budget.config.limit_usd),
        "percent": round(float(percent), 2),
        "tokens": totals.tokens,
        "requests": totals.requests,
        # Probability sampling: spend and calls counting each sampled row as the calls it stands for.
        "estimated": totals.sampled > 0,
        "estimated_spend_usd": str(rounded_cost(totals.estimated_cost)),
        "estimated_requests": rounded_count(totals.estimated_requests),
    }


@dataclass(frozen=True)
class Crossing:
    """A budget's spend reached one of its thresholds in one window: a `budget_events` row."""

    budget: Budget
    scope_value: str
    values: dict[str, str]
    window_start: datetime
    window_end: datetime
    threshold: int
    totals: Totals
    percent: Decimal
    created_at: datetime
    collector_id: str
    event_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "event_id", event_id(self.budget.name, self.scope_value, self.window_start, self.threshold)
        )

    def payload(self) -> dict[str, Any]:
        """The webhook body (README: Budgets)."""
        return {
            "type": "budget.threshold_crossed",
            "event_id": self.event_id,
            **_described(self.budget, self.scope_value, self.values, self.window_start, self.window_end),
            "threshold_percent": self.threshold,
            **_spent(self.budget, self.totals, self.percent),
            "created_at": iso(self.created_at),
            "collector_id": self.collector_id,
        }

    def summary(self) -> str:
        who = f" for {self.scope_value}" if self.scope_value else ""
        spent = format_usd(self.totals.estimated_cost)
        spent = f"an estimated {spent} (sampled traffic)" if self.totals.sampled else spent
        return (
            f"spanmeter budget {self.budget.name!r}{who} reached {self.threshold}% "
            f"({spent} of {format_usd(self.budget.config.limit_usd)} USD, "
            f"{self.budget.window.label} window "
            f"from {iso(self.window_start)})"
        )
