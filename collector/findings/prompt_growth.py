"""prompt_growth: a scope's input tokens per call rising over the weeks of the period (prompts that accrete
context, history or examples).

Weeks count back from the end of the period (week 0 is the last 7 days; a partial oldest week is left out). The
finding needs `min_weeks` weeks of at least `min_calls_per_week` calls, week 0 among them, a positive
least-squares slope over them, and week 0's tokens per call at least `1 + min_growth` times the oldest's.
Savings = (week 0's tokens per call - the oldest's) * week 0's calls * week 0's input price per token (its input
cost over its uncached input tokens) * 30 / 7: what the growth costs a month at the current traffic.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from .context import SCOPE_KEYS, Context
from .model import Finding, money, per_month

__all__ = ["find"]

KIND = "prompt_growth"
WEEK = timedelta(days=7)


def find(context: Context) -> list[Finding]:
    config = context.config.prompt_growth
    period = context.period
    full_weeks = period.length // WEEK
    scopes: dict[tuple[Any, ...], dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in context.rows(KIND):
        if row["week"] < full_weeks and row["calls"] >= config.min_calls_per_week:
            scopes[tuple(row[key] for key in SCOPE_KEYS)][int(row["week"])] = row
    found = []
    for weeks in scopes.values():
        if len(weeks) < config.min_weeks or 0 not in weeks:
            continue
        last, first = weeks[0], weeks[max(weeks)]
        per_call = {week: Decimal(row["input_tokens"]) / row["calls"] for week, row in weeks.items()}
        if per_call[0] < per_call[max(weeks)] * Decimal(1 + config.min_growth) or _slope(per_call) <= 0:
            continue
        if not last["plain_input_tokens"]:
            continue
        rate = Decimal(last["input_cost"]) / last["plain_input_tokens"]
        grown = (per_call[0] - per_call[max(weeks)]) * last["calls"]
        waste = grown * rate
        savings = per_month(waste, WEEK)
        if savings < config.min_savings_usd:
            continue
        series = {f"week_{-week}": round(float(per_call[week]), 1) for week in sorted(weeks, reverse=True)}
        found.append(
            context.finding(
                KIND,
                last,
                savings,
                (
                    f"Input per call to {last['model']} grew from {per_call[max(weeks)]:.0f} to {per_call[0]:.0f} "
                    f"tokens in {max(weeks)} weeks: trim what the prompt accumulates (history, examples, context) "
                    "or summarize it."
                ),
                {
                    "tokens_per_call_by_week": series,
                    "calls_last_week": last["calls"],
                    "calls_first_week": first["calls"],
                    "input_usd_per_token": money(rate),
                    "growth_usd_per_week": money(waste),
                },
            )
        )
    return found


def _slope(per_call: dict[int, Decimal]) -> float:
    """Least-squares slope of tokens per call over time (older weeks first)."""
    points = [(-week, float(value)) for week, value in per_call.items()]
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
