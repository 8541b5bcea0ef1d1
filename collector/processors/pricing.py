"""The `pricing` processor: fills the cost columns from genai-prices or pipelines.yaml.

Costs are Decimal end to end. `input_cost + cache_read_cost + cache_write_cost` is genai-prices'
`input_price`, `output_cost` its `output_price`, and `total_cost` their sum, its `total_price`.
A model nobody has a price for is `unpriced` with zero cost, never a silent $0 `priced`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
from genai_prices.types import ModelPrice, calc_unit_price

from ..config import PriceOverride, PricingProcessorConfig
from ..conventions import PRICING_PROVIDERS, SELF_HOSTED_PROVIDERS, normalize_provider
from ..records import SpanRecord

__all__ = ["PricingProcessor"]

_PER_MILLION = 1_000_000
_COST_QUANTUM = Decimal("1e-12")  # Decimal(18, 12), the column type
_ZERO = Decimal(0)
_HOUR_NS = 3_600_000_000_000

PRICED = "priced"
OVERRIDE = "override"
UNPRICED = "unpriced"
NO_USAGE = "no_usage"
OVERRIDE_SOURCE = "pipelines.yaml"


class PricingProcessor:
    """Prices each record at its span's start time; caches model lookups per hour."""

    def __init__(self, config: PricingProcessorConfig) -> None:
        self.source = f"genai-prices {genai_prices.__version__}"
        self._overrides = {_override_key(o.provider, o.model): _override_price(o) for o in config.overrides}
        self._lookups: dict[tuple[str, str, int], ModelPrice | None] = {}

    def process(self, records: Iterable[SpanRecord]) -> None:
        for record in records:
            self.price(record)

    def price(self, record: SpanRecord) -> None:
        if not record.has_usage:
            record.price_status = NO_USAGE
            record.price_source = ""
            return
        model = record.model
        override = self._overrides.get(_override_key(record.provider or None, model)) or self._overrides.get(
            _override_key(None, model)
        )
        if override is not None:
            _apply(record, override)
            record.price_status = OVERRIDE
            record.price_source = OVERRIDE_SOURCE
            return
        record.price_source = self.source
        model_price = self._lookup(record.provider, model, record.timestamp)
        if model_price is None:
            record.price_status = UNPRICED
            return
        _apply(record, model_price)
        record.price_status = PRICED

    def _lookup(self, provider: str, model: str, timestamp_ns: int) -> ModelPrice | None:
        key = (provider, model, timestamp_ns // _HOUR_NS)
        try:
            return self._lookups[key]
        except KeyError:
            pass
        price = _resolve(provider, model, datetime.fromtimestamp(timestamp_ns / 1e9, UTC))
        if len(self._lookups) > 100_000:
            self._lookups.clear()
        self._lookups[key] = price
        return price


def _resolve(provider: str, model: str, at: datetime) -> ModelPrice | None:
    if not model or provider in SELF_HOSTED_PROVIDERS:
        return None
    provider_id = PRICING_PROVIDERS.get(provider, provider or None)
    usage = genai_prices.Usage(input_tokens=0, output_tokens=0)
    try:
        return genai_prices.calc_price(usage, model, provider_id=provider_id, genai_request_timestamp=at).model_price
    except LookupError:
        if provider_id is None or provider in PRICING_PROVIDERS:
            return None
    # A provider genai-prices does not know (a gateway, a proxy): let the model name decide.
    try:
        return genai_prices.calc_price(usage, model, genai_request_timestamp=at).model_price
    except LookupError:
        return None


def _apply(record: SpanRecord, price: ModelPrice) -> None:
    usage = genai_prices.Usage(
        input_tokens=record.input_tokens,
        cache_read_tokens=record.cache_read_tokens,
        cache_write_tokens=record.cache_write_tokens,
        output_tokens=record.output_tokens,
    )
    totals = price.calc_price(usage)
    # Cache tokens without a cache price are billed at the input rate, as genai-prices does.
    cache_read = calc_unit_price(
        _first(price.cache_read_mtok, price.input_mtok), record.cache_read_tokens, record.input_tokens, _PER_MILLION
    )
    cache_write = calc_unit_price(
        _first(price.cache_write_mtok, price.input_mtok), record.cache_write_tokens, record.input_tokens, _PER_MILLION
    )
    # Anything priced on neither side (a per-request fee) is counted with the input.
    other = totals["total_price"] - totals["input_price"] - totals["output_price"]
    record.cache_read_cost = _quantize(cache_read)
    record.cache_write_cost = _quantize(cache_write)
    record.input_cost = _quantize(totals["input_price"] - cache_read - cache_write + other)
    record.output_cost = _quantize(totals["output_price"])
    record.total_cost = record.input_cost + record.cache_read_cost + record.cache_write_cost + record.output_cost


def _first(*prices: object) -> object:
    for price in prices:
        if price is not None:
            return price
    return None


def _quantize(value: Decimal) -> Decimal:
    return value.quantize(_COST_QUANTUM) if value else _ZERO


def _override_key(provider: str | None, model: str) -> tuple[str | None, str]:
    return (normalize_provider(provider) if provider else None, model.lower())


def _override_price(override: PriceOverride) -> ModelPrice:
    return ModelPrice(
        input_mtok=override.input_per_mtok,
        output_mtok=override.output_per_mtok,
        cache_read_mtok=override.cache_read_per_mtok,
        cache_write_mtok=override.cache_write_per_mtok,
    )
