"""The pricing fast path agrees with genai-prices' own calculation, for every price of every model
genai-prices knows, across usages below and above long-context tiers."""

from __future__ import annotations

from decimal import Decimal

import genai_prices
from genai_prices import data_snapshot

from spanmeter.processors.pricing import RateCard
from spanmeter.records import SpanRecord

USAGES = [
    # input (incl. cache), cache read, cache write, output (incl. reasoning), reasoning
    (1_000, 0, 0, 200, 0),
    (12_345, 4_000, 1_000, 3_210, 1_000),
    (350_000, 200_000, 50_000, 9_000, 2_000),  # above 128k/200k/272k tiers
    (7, 7, 0, 0, 0),
]


def all_prices() -> list[tuple[str, object]]:
    prices = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            entries = [model.prices] if hasattr(model.prices, "input_mtok") else [c.prices for c in model.prices]
            prices.extend((f"{provider.id}/{model.id}", price) for price in entries)
    return prices


def record_for(usage: tuple[int, int, int, int, int]) -> SpanRecord:
    record = SpanRecord()
    (
        record.input_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.output_tokens,
        record.reasoning_tokens,
    ) = usage
    return record


def test_rate_cards_match_genai_prices_for_every_model() -> None:
    checked = fast = 0
    for name, price in all_prices():
        card = RateCard(price)  # type: ignore[arg-type]
        fast += card.fast
        for usage in USAGES:
            expected = price.calc_price(  # type: ignore[attr-defined]
                genai_prices.Usage(
                    input_tokens=usage[0],
                    cache_read_tokens=usage[1],
                    cache_write_tokens=usage[2],
                    output_tokens=usage[3],
                    output_reasoning_tokens=usage[4],
                )
            )
            plain, cache_read, cache_write, output = card.costs(record_for(usage))
            assert plain + cache_read + cache_write == expected["input_price"] + (
                expected["total_price"] - expected["input_price"] - expected["output_price"]
            ), (name, usage)
            assert output == expected["output_price"], (name, usage)
            assert plain + cache_read + cache_write + output == expected["total_price"], (name, usage)
            assert min(plain, cache_read, cache_write, output) >= Decimal(0), (name, usage)
            checked += 1
    assert checked > 5_000
    assert fast > 0.9 * (checked / len(USAGES))  # the fast path covers nearly all prices
