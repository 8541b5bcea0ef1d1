"""repeated_calls: identical requests (same scope, model, prompt prefix hash, input tokens and request
parameters) within `findings.repeated_calls.window` of the previous one: an application-side cache would have
answered them. Savings = what those repeats cost * 30 days / period."""

from __future__ import annotations

from decimal import Decimal

from .context import Context
from .model import Finding, money, per_month

__all__ = ["find"]

KIND = "repeated_calls"


def find(context: Context) -> list[Finding]:
    config = context.config.repeated_calls
    period = context.period
    found = []
    for row in context.rows(KIND, window_seconds=config.window, min_repeats=config.min_repeats):
        cost = Decimal(row["cost"])
        savings = per_month(cost, period.length)
        if savings < config.min_savings_usd:
            continue
        found.append(
            context.finding(
                KIND,
                row,
                savings,
                (
                    f"{row['repeats']} calls to {row['model']} repeated an identical request within "
                    f"{config.window} s: cache the answers in the application (keyed by the request)."
                ),
                {
                    "repeats": row["repeats"],
                    "prefixes": row["prefixes"],
                    "window_seconds": config.window,
                    "input_tokens": row["input_tokens"],
                    "output_tokens": row["output_tokens"],
                    "repeats_usd": money(cost),
                },
            )
        )
    return found
