"""The pricing fast path agrees with genai-prices' own calculation, for every price of every model
genai-prices knows, across usages below and above long-context tiers."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import genai_prices
import numpy as np
import pyarrow as pa
from genai_prices import data_snapshot
from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

from spanmeter.config import PricingProcessorConfig
from spanmeter.processors.columnar_pricing import COST_COLUMNS, ColumnarPricer
from spanmeter.processors.pricing import PricingProcessor, RateCard
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


def usage_of(usage: tuple[int, int, int, int, int]) -> genai_prices.Usage:
    return genai_prices.Usage(
        input_tokens=usage[0],
        cache_read_tokens=usage[1],
        cache_write_tokens=usage[2],
        output_tokens=usage[3],
        output_reasoning_tokens=usage[4],
    )


def test_rate_cards_match_genai_prices_for_every_model() -> None:
    checked = fast = 0
    for name, price in all_prices():
        card = RateCard(price)  # type: ignore[arg-type]
        fast += card.fast
        for usage in USAGES:
            expected = price.calc_price(  # type: ignore[attr-defined]
                usage_of(usage)
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


# The columnar pricer (collector/processors/columnar_pricing.py) against the same prices, to the last digit.

_QUANTUM = Decimal("1e-12")


def _units(value: Decimal) -> int:
    return int(value.quantize(_QUANTUM).scaleb(12)) if value else 0


def _count_table(rows: list[tuple[int, int, int, int, int]]) -> pa.Table:
    names = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
    columns = {name: pa.array([row[i] for row in rows], pa.uint64()) for i, name in enumerate(names)}
    columns["response_model"] = pa.array(["m"] * len(rows))
    columns["request_model"] = pa.array([""] * len(rows))
    return pa.table(columns)


def test_columnar_costs_match_genai_prices_for_every_price() -> None:
    """Every price of every model, every usage (below and above tiers): the four costs are RateCard's, quantized
    as the reference quantizes them, and their total is genai-prices' total_price wherever that has at most 12
    decimals (every price with at most 6 decimals per million tokens)."""
    pricer = ColumnarPricer(PricingProcessor(PricingProcessorConfig()))
    prices = all_prices()
    cards, rows = [], []
    for _, price in prices:
        index = pricer._card_index(RateCard(price))  # type: ignore[arg-type]
        for usage in USAGES:
            cards.append(index)
            rows.append(usage)
    costs, rejections = pricer._price_rows(_count_table(rows), np.array(cards, dtype=np.int64))
    assert not rejections
    exact_totals = 0
    for row, ((name, price), usage) in enumerate((entry, usage) for entry in prices for usage in USAGES):
        card = pricer._cards[cards[row]]
        expected = [_units(part) for part in card.costs(record_for(usage))]
        assert costs[row].tolist() == expected, (name, usage)
        total = price.calc_price(  # type: ignore[attr-defined]
            usage_of(usage)
        )
        assert costs[row][3] == _units(total["output_price"]), (name, usage)
        if total["total_price"] == total["total_price"].quantize(_QUANTUM):
            assert int(costs[row].sum()) == _units(total["total_price"]), (name, usage)
            exact_totals += 1
    assert len(rows) > 5_000
    assert exact_totals > 0.99 * len(rows)
    integral = sum(plan.exact for plan in pricer._plans)
    assert integral > 0.98 * len(pricer._plans)  # nearly every price is priced on integers, not row by row


def _moments(model: object) -> list[datetime]:
    """Request times at which each of the model's conditional prices applies: each start date and the moment
    before it, the bounds of each time-of-day window, on a date after every start date."""
    conditionals = model.prices if isinstance(model.prices, list) else []  # type: ignore[attr-defined]
    starts = [c.constraint.start_date for c in conditionals if isinstance(c.constraint, StartDateConstraint)]
    late = max([*starts, date(2026, 1, 1)]) + timedelta(days=1)
    moments = [datetime.combine(late, time(12), UTC)]
    for conditional in conditionals:
        constraint = conditional.constraint
        if isinstance(constraint, StartDateConstraint):
            start = datetime.combine(constraint.start_date, time(0), UTC)
            moments += [start, start - timedelta(microseconds=1)]
        elif isinstance(constraint, TimeOfDateConstraint):
            for bound in (constraint.start_time, constraint.end_time):
                at = datetime.combine(late, bound.replace(tzinfo=bound.tzinfo or UTC)).astimezone(UTC)
                moments += [at, at - timedelta(microseconds=1)]
    return moments


def test_columnar_pricer_matches_calc_price_for_every_model_and_price_period() -> None:
    """Through the whole columnar path (model matching, the price period chosen per row from its timestamp, tiers):
    every model genai-prices knows, at the moments each of its prices applies, equals genai_prices.calc_price."""
    reference = PricingProcessor(PricingProcessorConfig())
    pricer = ColumnarPricer(reference)
    rows: list[tuple[str, str, datetime, tuple[int, int, int, int, int], object]] = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            if reference.resolve(provider.id, model.id, "")[1] is not model:
                continue  # the name matches another model first (genai-prices' own order decides)
            for at in _moments(model):
                rows += [(provider.id, model.id, at, usage, model) for usage in USAGES]
    assert len({(row[0], row[1]) for row in rows}) > 2_000
    table = pa.table(
        {
            "timestamp": pa.array([int(row[2].timestamp() * 1_000_000) * 1000 for row in rows], pa.int64()).cast(
                pa.timestamp("ns", tz="UTC")
            ),
            "provider": [row[0] for row in rows],
            "response_model": [row[1] for row in rows],
            "request_model": [""] * len(rows),
            **_count_table([row[3] for row in rows])
            .select(["input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens"])
            .to_pydict(),
            **{name: [Decimal(0)] * len(rows) for name in COST_COLUMNS},
            "price_status": [""] * len(rows),
            "price_source": [""] * len(rows),
        }
    )
    for name in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens"):
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(pa.uint64()))
    priced = pricer.price(table, [True] * len(rows))
    assert not priced.rejections
    assert set(priced.table.column("price_status").to_pylist()) == {"priced"}
    output = priced.table.column("output_cost").to_pylist()
    total = priced.table.column("total_cost").to_pylist()
    for row, (provider_id, model_id, at, usage, _) in enumerate(rows):
        expected = genai_prices.calc_price(
            usage_of(usage),
            model_id,
            provider_id=provider_id,
            genai_request_timestamp=at,
        )
        assert output[row] == expected.output_price.quantize(_QUANTUM), (provider_id, model_id, at, usage)
        if expected.total_price == expected.total_price.quantize(_QUANTUM):
            assert total[row] == expected.total_price, (provider_id, model_id, at, usage)
