"""cache_unused: a scope sending the same large prompt prefix again and again (same `prompt_prefix_hash`, which
the instrumentation adds when enabled) with no cache reads, to a model with a cache-read price.

Cacheable tokens = per prefix, (calls - 1) * its smallest input (the prefix is no longer than the shortest call
and the first call writes the cache). Savings = cacheable tokens * (input rate - cache-read rate) * 30 days /
period, rates from genai-prices; any cache-write premium (Anthropic) is not subtracted.
"""

from __future__ import annotations

from .context import Context
from .model import Finding, money, per_month

__all__ = ["find"]

KIND = "cache_unused"


def find(context: Context) -> list[Finding]:
    config = context.config.cache_unused
    period = context.period
    found = []
    rows = context.rows(KIND, min_repeats=config.min_repeats, min_input_tokens=config.min_input_tokens)
    for row in rows:
        price = context.prices.price(row["provider"], row["model"], period.end)
        if price is None:
            continue
        plain, cache_read = context.prices.input_rates(price, row["max_input_tokens"])
        if cache_read is None or cache_read >= plain:
            continue  # the provider does not cache prompts, or caching would not be cheaper
        waste = row["cacheable_tokens"] * (plain - cache_read)
        savings = per_month(waste, period.length)
        if savings < config.min_savings_usd:
            continue
        found.append(
            context.finding(
                KIND,
                row,
                savings,
                (
                    f"{row['calls']} calls repeat {row['prefixes']} prompt prefix(es) of {row['model']} without a "
                    "cache read: enable prompt caching (put the fixed part first; with Anthropic mark it with "
                    "cache_control) so repeats are billed at the cache-read price."
                ),
                {
                    "calls": row["calls"],
                    "prefixes": row["prefixes"],
                    "input_tokens": row["input_tokens"],
                    "cacheable_tokens": row["cacheable_tokens"],
                    "input_usd_per_token": money(plain),
                    "cache_read_usd_per_token": money(cache_read),
                    "waste_usd": money(waste),
                },
            )
        )
    return found
