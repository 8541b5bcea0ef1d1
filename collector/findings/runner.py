"""Runs every enabled rule over a period and returns the findings, the largest savings first."""

from __future__ import annotations

from collections.abc import Callable

from clickhouse_connect.driver.client import Client

from ..processors.config import PricingProcessorConfig
from . import anomalies, cache_unused, paid_failures, prompt_growth, repeated_calls, right_size
from .config import FindingsConfig
from .context import Context
from .model import Finding, Period
from .prices import Prices

__all__ = ["RULES", "run_findings"]

RULES: dict[str, Callable[[Context], list[Finding]]] = {
    "right_size": right_size.find,
    "cache_unused": cache_unused.find,
    "repeated_calls": repeated_calls.find,
    "paid_failures": paid_failures.find,
    "prompt_growth": prompt_growth.find,
    "anomalies": anomalies.find,
}
"""Config section -> rule."""


def run_findings(
    client: Client,
    database: str,
    period: Period,
    config: FindingsConfig | None = None,
    pricing: PricingProcessorConfig | None = None,
) -> list[Finding]:
    """`pricing` (the pipeline's, with its overrides) prices what-ifs the way the collector prices calls."""
    context = Context(client, database, period, config or FindingsConfig(), Prices(pricing))
    found: list[Finding] = []
    for section, rule in RULES.items():
        if getattr(context.config, section).enabled:
            found.extend(rule(context))
    found.sort(key=lambda f: (-f.savings_usd_per_month, f.kind, sorted(f.scope.items())))
    return found
