"""paid_failures: calls that failed yet were billed for their tokens (timeouts after generation, a response
the application rejected, retries of them). Savings = what they cost * 30 days / period."""

from __future__ import annotations

from decimal import Decimal

from .context import SCOPE_KEYS, Context, scope_of
from .model import Finding, money, per_month

__all__ = ["find"]

KIND = "paid_failures"


def find(context: Context) -> list[Finding]:
    config = context.config.paid_failures
    period = context.period
    found = []
    for row in context.rows(KIND, min_calls=config.min_calls):
        cost = Decimal(row["cost"])
        savings = per_month(cost, period.length)
        if savings < config.min_savings_usd:
            continue
        error = row["error_type"] or "an error"
        found.append(
            context.finding(
                KIND,
                row,
                savings,
                (
                    f"{row['calls']} calls to {row['model']} failed with {error} after using tokens: fix the cause "
                    "(timeouts, output limits, parsing) or stop retrying it, and set a lower max_tokens."
                ),
                {
                    "calls": row["calls"],
                    "input_tokens": row["input_tokens"],
                    "output_tokens": row["output_tokens"],
                    "failed_usd": money(cost),
                },
                scope_of(row, *SCOPE_KEYS, "error_type"),
            )
        )
    return found
