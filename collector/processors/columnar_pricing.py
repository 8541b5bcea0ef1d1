"""Pricing on columns: the `pricing` processor's results for a whole Arrow table of rows at once.

Each distinct (provider, model, requested model) in a batch is resolved once, as `PricingProcessor`
resolves it (override, genai-prices model, or unpriced). A model whose price changed over time, or
changes by time of day, has its price chosen per row by comparing the timestamp column with the
constraints' bounds. Then each of the four costs is count x price on integer columns, in units of
10^-12 USD (the cost columns' Decimal(18, 12)): a price in USD per million tokens with at most six
decimals is a whole number of those units per token, so the products are exact and need no rounding,
the same digits genai-prices' Decimal arithmetic gives after `PricingProcessor` quantizes them.
Long-context tiers pick the price per row from the input tokens.

What integers cannot carry exactly goes through the reference `PricingProcessor`, row by row: a price
with more than six decimals per million tokens or above $2,147 per million tokens, a price genai-prices
computes with units spanmeter does not report on its own (per-request fees, separate reasoning rates),
counts of 2^29 tokens or more, and a cost the columns cannot hold (the reference writes the rejection).
`tests/collector/test_columnar_pricing.py` checks both give the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from genai_prices.types import (
    ModelInfo,
    ModelPrice,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from ..records import SpanRecord
from .pricing import MAX_COST, NO_USAGE, OVERRIDE, OVERRIDE_SOURCE, PRICED, UNPRICED, PricingProcessor, RateCard, _apply

__all__ = ["ColumnarPricer", "PricedColumns"]

_COST = pa.decimal128(18, 12)
_UNITS_PER_MTOK = 10**6  # 1 USD per million tokens = 10^6 units of 10^-12 USD per token
_MAX_UNIT_PRICE = 2**31  # with counts below 2^29, four products and their sum stay inside int64
_MAX_COUNT = 2**29
_MAX_UNITS = int(MAX_COST.scaleb(12))
_DAY_US = 86_400_000_000
_STATUSES = (NO_USAGE, PRICED, OVERRIDE, UNPRICED)
_STATUS_CODE = {status: code for code, status in enumerate(_STATUSES)}
_COUNTS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
COST_COLUMNS = ("input_cost", "cache_read_cost", "cache_write_cost", "output_cost", "total_cost")

Int64s = npt.NDArray[np.int64]


@dataclass
class PricedColumns:
    """The table with its five cost columns, `price_status` and `price_source` filled, and the rows refused
    (index -> the reason `PricingProcessor` gives): their costs are left at zero."""

    table: pa.Table
    rejections: dict[int, str]


class _Plan:
    """A rate card as integers: per kind (input without cache, cache read, cache write, output) the base
    price and the (threshold, price) tiers, in 10^-12 USD per token; `exact` False sends its rows to the
    reference."""

    __slots__ = ("base", "exact", "tiers")

    def __init__(self, card: RateCard) -> None:
        kinds = card.token_prices()
        self.exact = card.fast
        self.base = [0, 0, 0, 0]
        self.tiers: list[tuple[int, list[tuple[int, int]]]] = []
        for kind, value in enumerate(kinds):
            if isinstance(value, TieredPrices):
                self.base[kind] = self._units(value.base)
                self.tiers.append((kind, [(tier.start, self._units(tier.price)) for tier in value.tiers]))
            elif value is not None:
                self.base[kind] = self._units(value)

    def _units(self, price: Decimal) -> int:
        units = price * _UNITS_PER_MTOK
        if units != units.to_integral_value() or not 0 <= units < _MAX_UNIT_PRICE:
            self.exact = False
            return 0
        return int(units)


class ColumnarPricer:
    """Prices an Arrow table of `genai_spans` rows with the reference processor's resolution, overrides and
    cards (shared with it), without a Python call per row."""

    def __init__(self, reference: PricingProcessor) -> None:
        self.reference = reference
        self._cards: list[RateCard] = []
        self._plans: list[_Plan] = []
        self._index: dict[int, int] = {}  # id(RateCard) -> position in _cards
        self._exact = np.ones(1, dtype=bool)  # per card: priced on integers
        self._base = np.zeros((1, 4), dtype=np.int64)  # per card and kind: the base price in units

    def price(self, table: pa.Table, has_usage: Sequence[bool] | npt.NDArray[np.bool_]) -> PricedColumns:
        rows = table.num_rows
        if not rows:
            return PricedColumns(table, {})
        usage = np.asarray(has_usage, dtype=bool)
        keys, groups = _group(table)
        timestamps = np.asarray(table.column("timestamp").cast(pa.int64()).to_numpy())
        status = np.full(rows, _STATUS_CODE[NO_USAGE], dtype=np.int8)
        card = np.full(rows, -1, dtype=np.int64)
        for (provider, model, request_model), members in zip(keys, groups, strict=True):
            members = members[usage[members]]
            if not len(members):
                continue
            key_status, found = self.reference.resolve(provider, model, request_model)
            status[members] = _STATUS_CODE[key_status]
            if isinstance(found, RateCard):
                card[members] = self._card_index(found)
            elif found is not None:
                card[members] = self._choose(found, timestamps[members])
        costs, rejections = self._price_rows(table, card)
        units = [*(costs[:, kind] for kind in range(4)), costs.sum(axis=1)]
        filled = {name: _decimal_column(column) for name, column in zip(COST_COLUMNS, units, strict=True)}
        source = np.where(status == _STATUS_CODE[OVERRIDE], 2, np.where(status == _STATUS_CODE[NO_USAGE], 0, 1))
        filled["price_status"] = pa.array(_STATUSES).take(status)
        filled["price_source"] = pa.array(["", self.reference.source, OVERRIDE_SOURCE]).take(source)
        arrays = [filled.get(name, column) for name, column in zip(table.column_names, table.columns, strict=True)]
        return PricedColumns(pa.Table.from_arrays(arrays, names=table.column_names), rejections)

    def _card_index(self, card: RateCard) -> int:
        index = self._index.get(id(card))
        if index is None or self._cards[index] is not card:
            index = self._index[id(card)] = len(self._cards)
            self._cards.append(card)
            self._plans.append(plan := _Plan(card))
            self._exact = np.array([*self._exact[: len(self._cards) - 1], plan.exact], dtype=bool)
            self._base = np.vstack([self._base[: len(self._cards) - 1], [plan.base]])
        return index

    def _choose(self, model: ModelInfo, timestamps: Int64s) -> Int64s | int:
        """The card of the price `ModelInfo.get_prices` picks at each timestamp (last active, else first)."""
        prices = model.prices
        if isinstance(prices, ModelPrice):
            return self._card_index(self.reference._card(prices))
        chosen = np.full(len(timestamps), self._card_index(self.reference._card(prices[0].prices)))
        micros = timestamps // 1000  # genai-prices is given the time to the microsecond
        for conditional in prices:
            index = self._card_index(self.reference._card(conditional.prices))
            chosen[_active(conditional.constraint, micros)] = index
        return chosen

    def _price_rows(self, table: pa.Table, card: Int64s) -> tuple[Int64s, dict[int, str]]:
        """Costs per row and kind in 10^-12 USD of the rows priced by the cards at `card` (-1: none), and the rows
        refused."""
        counts = [np.asarray(table.column(name).to_numpy()) for name in _COUNTS]
        costs, fallback = self._costs(card, counts)
        return costs, self._fallback(table, np.flatnonzero(fallback), card, costs)

    def _costs(self, card: Int64s, counts: list[npt.NDArray[np.uint64]]) -> tuple[Int64s, npt.NDArray[np.bool_]]:
        """Units of 10^-12 USD per row and kind (input without cache, cache read, cache write, output), and the
        rows the integers cannot price exactly."""
        priced = card >= 0
        plans, exact, base = self._plans, self._exact, self._base
        safe = np.where(priced, card, 0)
        fallback = priced & ~exact[safe]
        for count in counts[:4]:
            fallback |= priced & (count >= _MAX_COUNT)
        take = priced & ~fallback
        input_tokens, cache_read, cache_write, output = (
            np.where(take, count, 0).astype(np.int64) for count in counts[:4]
        )
        quantities = np.stack([input_tokens - cache_read - cache_write, cache_read, cache_write, output], axis=1)
        price = base[safe]
        price[~take] = 0
        for index in np.unique(card[take]):
            plan = plans[index]
            if not plan.tiers:
                continue
            members = np.flatnonzero(take & (card == index))
            for kind, tiers in plan.tiers:
                for start, units in tiers:  # ascending: the highest tier passed wins
                    price[members[input_tokens[members] > start], kind] = units
        costs = quantities * price
        fallback |= take & (costs.sum(axis=1) > _MAX_UNITS)
        costs[fallback] = 0
        return costs, fallback

    def _fallback(self, table: pa.Table, rows: Int64s, card: Int64s, costs: Int64s) -> dict[int, str]:
        """The rows integers cannot price, priced by the reference card; those it refuses are returned."""
        if not len(rows):
            return {}
        columns = {
            name: table.column(name).take(pa.array(rows)).to_pylist()
            for name in (*_COUNTS, "response_model", "request_model")
        }
        rejections = {}
        for position, row in enumerate(rows.tolist()):
            record = SpanRecord()
            for name, values in columns.items():
                setattr(record, name, values[position])
            _apply(record, self._cards[card[row]])
            if record.rejection:
                rejections[row] = record.rejection
                continue
            costs[row] = [
                int(value.scaleb(12))
                for value in (record.input_cost, record.cache_read_cost, record.cache_write_cost, record.output_cost)
            ]
        return rejections


def _group(table: pa.Table) -> tuple[list[tuple[str, str, str]], list[Int64s]]:
    """The distinct (provider, model, requested model) of the rows, `model` being the response model else the
    requested one, and the rows of each."""
    response = table.column("response_model")
    request = table.column("request_model")
    model = pc.if_else(pc.equal(response, ""), request, response)
    codes = []
    values = []
    for column in (table.column("provider"), model, request):
        encoded = (
            column.combine_chunks().dictionary_encode()
            if column.num_chunks != 1
            else column.chunk(0).dictionary_encode()
        )
        codes.append(np.asarray(encoded.indices.to_numpy(), dtype=np.int64))
        values.append(encoded.dictionary.to_pylist())
    combined = (codes[0] * len(values[1]) + codes[1]) * len(values[2]) + codes[2]
    distinct, inverse = np.unique(combined, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(distinct)))[:-1]
    keys = []
    for code in distinct.tolist():
        rest, request_code = divmod(code, len(values[2]))
        provider_code, model_code = divmod(rest, len(values[1]))
        keys.append((values[0][provider_code], values[1][model_code], values[2][request_code]))
    return keys, np.split(order, bounds)


def _active(constraint: StartDateConstraint | TimeOfDateConstraint | None, micros: Int64s) -> npt.NDArray[np.bool_]:
    """`constraint.active(t)` for each timestamp (microseconds since the epoch, UTC)."""
    if constraint is None:
        return np.ones(len(micros), dtype=bool)
    if isinstance(constraint, StartDateConstraint):
        return micros >= _micros(datetime.combine(constraint.start_date, time(0), UTC))
    day_time = micros % _DAY_US
    start, end = _time_of_day(constraint.start_time), _time_of_day(constraint.end_time)
    if end < start:
        return (day_time >= start) | (day_time < end)
    return (start <= day_time) & (day_time < end)


def _time_of_day(value: time) -> int:
    """A time of day (naive is UTC) as microseconds after UTC midnight."""
    if value.tzinfo is not None:
        value = datetime.combine(date(1970, 1, 1), value).astimezone(UTC).timetz()
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _micros(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _decimal_column(units: Int64s) -> pa.Array:
    """Whole units of 10^-12 USD as Decimal(18, 12): the unscaled value is the number of units, so the
    128-bit little-endian words are the int64 and its sign extension."""
    words = np.empty((len(units), 2), dtype=np.int64)
    words[:, 0] = units
    words[:, 1] = units >> 63
    return pa.Array.from_buffers(_COST, len(units), [None, pa.py_buffer(words)])
