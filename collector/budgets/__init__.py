"""Budgets: spend per scope and window checked as priced spans arrive, crossings written once to
`budget_events` and notified once, status served at `GET /v1/budgets`.

One job per module: `scope` (which spans count, in Python and SQL), `windows` (UTC day, month,
rolling hours), `ledger` (stored plus queued spend, never counted twice), `model` (budgets,
statuses, crossings), `store` (ClickHouse reads and writes), `notifiers` (webhook, Slack, email),
`processor` (the `budget` processor and its threads), `api` (the HTTP routes).
"""

from .api import add_budget_routes
from .model import Budget, BudgetStatus, Crossing, event_id
from .notifiers import SIGNATURE_HEADER, sign
from .processor import BudgetProcessor
from .windows import Window

__all__ = [
    "SIGNATURE_HEADER",
    "Budget",
    "BudgetProcessor",
    "BudgetStatus",
    "Crossing",
    "Window",
    "add_budget_routes",
    "event_id",
    "sign",
]
