"""A finding, and the period findings are computed over.

Savings are in USD per month, Decimal, computed: a rule measures the waste in its period (what the scope
spent that it need not have) and scales it to 30 days, `waste * 30 days / period length` (`per_month`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["KINDS", "MONTH", "Finding", "Period", "per_month"]

KINDS = ("right_size", "cache_unused", "repeated_calls", "paid_failures", "prompt_growth", "anomaly")
MONTH = timedelta(days=30)
_CENT_FRACTION = Decimal("0.000001")
MODEL_CALLS = "operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')"


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC; `project` "" for every project."""

    start: datetime
    end: datetime
    project: str = ""

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value: datetime = getattr(self, name)
            object.__setattr__(self, name, value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC))
        if self.start >= self.end:
            raise ValueError(f"the period is empty: {self.start.isoformat()} is not before {self.end.isoformat()}")

    @classmethod
    def ending(cls, length: timedelta, project: str = "", now: datetime | None = None) -> Period:
        end = now or datetime.now(UTC)
        return cls(end - length, end, project)

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def parameters(self, database: str) -> dict[str, Any]:
        """The query parameters every rule's SQL takes."""
        return {
            "database": database,
            "start": self.start.replace(tzinfo=None),
            "end": self.end.replace(tzinfo=None),
            "project": self.project,
        }


def per_month(waste: Decimal, length: timedelta) -> Decimal:
    """`waste` over a period of `length`, scaled to 30 days, to the millionth of a dollar."""
    return (waste * Decimal(MONTH.total_seconds()) / Decimal(length.total_seconds())).quantize(_CENT_FRACTION)


@dataclass(frozen=True)
class Finding:
    kind: str
    scope: dict[str, str]
    """What the finding is about: project, service, feature, provider, model, user... (only those that apply)."""
    start: datetime
    end: datetime
    savings_usd_per_month: Decimal
    action: str
    """What to do, in plain words."""
    evidence: dict[str, Any] = field(default_factory=dict)
    """Counts, tokens and money (money as decimal strings) the finding rests on."""
    trace_ids: list[str] = field(default_factory=list)
    """A few example traces."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "scope": dict(self.scope),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "savings_usd_per_month": format(self.savings_usd_per_month, "f"),
            "action": self.action,
            "evidence": self.evidence,
            "trace_ids": list(self.trace_ids),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(
            kind=data["kind"],
            scope=dict(data["scope"]),
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            savings_usd_per_month=Decimal(data["savings_usd_per_month"]),
            action=data["action"],
            evidence=dict(data.get("evidence", {})),
            trace_ids=list(data.get("trace_ids", [])),
        )

    def describe_scope(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.scope.items() if value) or "(all)"


def money(value: Decimal) -> str:
    """Money in evidence: a decimal string, exact."""
    return format(value.normalize() if value else Decimal(0), "f")
