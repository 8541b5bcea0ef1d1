"""right_size: a scope whose successful calls are short in and out (classification-like traffic) on a model
dearer than a cheaper model of the same provider.

The scope's tokens are priced on each candidate (`findings.right_size.candidates`, by provider) with
genai-prices; the cheapest that costs at most `1 - min_saving_ratio` of what the scope spent is reported.
Savings = (spent - the same tokens on the candidate) * 30 days / period.
"""

from __future__ import annotations

from decimal import Decimal

from .context import Context
from .model import Finding, money, per_month
from .prices import Tokens

__all__ = ["find"]

KIND = "right_size"


def find(context: Context) -> list[Finding]:
    config = context.config.right_size
    period = context.period
    found = []
    rows = context.rows(
        KIND,
        min_calls=config.min_calls,
        max_input_tokens=config.max_input_tokens,
        max_output_tokens=config.max_output_tokens,
    )
    for row in rows:
        tokens = Tokens(
            input=row["input_tokens"],
            cache_read=row["cache_read_tokens"],
            cache_write=row["cache_write_tokens"],
            output=row["output_tokens"],
            per_call_input=row["max_input_tokens"],
        )
        spent = Decimal(row["cost"])
        best: tuple[Decimal, str] | None = None
        for candidate in config.candidates.get(row["provider"], []):
            if candidate == row["model"]:
                continue
            price = context.prices.price(row["provider"], candidate, period.end)
            if price is None:
                continue
            cost = context.prices.cost(price, tokens)
            if best is None or cost < best[0]:
                best = (cost, candidate)
        if best is None:
            continue
        cost, candidate = best
        if cost > spent * Decimal(1 - config.min_saving_ratio):
            continue
        savings = per_month(spent - cost, period.length)
        if savings < config.min_savings_usd:
            continue
        found.append(
            context.finding(
                KIND,
                row,
                savings,
                (
                    f"Calls of {row['feature'] or row['service']} to {row['model']} are short "
                    f"(90% at most {row['p90_input_tokens']} tokens in, {row['p90_output_tokens']} out): "
                    f"try {candidate}, which would have cost ${money(cost)} instead of ${money(spent)}."
                ),
                {
                    "calls": row["calls"],
                    "input_tokens": row["input_tokens"],
                    "output_tokens": row["output_tokens"],
                    "p90_input_tokens": int(row["p90_input_tokens"]),
                    "p90_output_tokens": int(row["p90_output_tokens"]),
                    "spent_usd": money(spent),
                    "candidate_model": candidate,
                    "candidate_usd": money(cost),
                },
            )
        )
    return found
