"""The `pricing` processor: fills the cost columns from genai-prices or pipelines.yaml.

Costs are Decimal end to end. `input_cost + cache_read_cost + cache_write_cost` is genai-prices'
`input_price`, `output_cost` its `output_price`, and `total_cost` their sum, its `total_price`.
A model nobody has a price for is `unpriced` with zero cost, never a silent $0 `priced`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import genai_prices
from genai_prices.data_units import unit_data
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices, calc_unit_price
from genai_prices.units import UnitRegistry

from ..conventions import PRICING_PROVIDERS, SELF_HOSTED_PROVIDERS, normalize_provider
from ..conventions.models import model_candidates
from ..otlp_values import preview
from ..records import SpanRecord
from .config import PriceOverride, PricingProcessorConfig

__all__ = ["MAX_COST", "PricingProcessor", "RateCard", "TokenPrice"]

_PER_MILLION = 1_000_000
_COST_QUANTUM = Decimal("1e-12")  # Decimal(18, 12), the column type
MAX_COST = Decimal("999999.999999999999")
"""The largest cost Decimal(18, 12) holds: a row costing more is rejected, not stored wrong."""
_ZERO = Decimal(0)
_UNITS = UnitRegistry(unit_data)
_NO_USAGE = genai_prices.Usage(input_tokens=0, output_tokens=0)
TokenPrice = Decimal | TieredPrices | None
"""A price per million tokens: flat, tiered by the call's input tokens, or none."""

PRICED = "priced"
OVERRIDE = "override"
UNPRICED = "unpriced"
NO_USAGE = "no_usage"
OVERRIDE_SOURCE = "pipelines.yaml"


class PricingProcessor:
    """Prices each record at its span's start time.

    Model-name matching is cached per (provider, model); the price itself is chosen per span, since
    prices change by date and some by time of day (e.g. off-peak rates).
    """

    def __init__(self, config: PricingProcessorConfig) -> None:
        self.source = f"genai-prices {genai_prices.__version__}"
        self._overrides = {_override_key(o.provider, o.model): RateCard(_override_price(o)) for o in config.overrides}
        self._cards: dict[int, RateCard] = {}
        self._models: dict[tuple[str, str], ModelInfo | None] = {}

    def process(self, records: Iterable[SpanRecord]) -> None:
        for record in records:
            self.price(record)

    def price(self, record: SpanRecord) -> None:
        if not record.has_usage:
            record.price_status = NO_USAGE
            record.price_source = ""
            return
        status, found = self.resolve(record.provider, record.model, record.request_model)
        record.price_status = status
        record.price_source = OVERRIDE_SOURCE if status == OVERRIDE else self.source
        if isinstance(found, RateCard):
            _apply(record, found)
        elif found is not None:
            _apply(record, self._card(found.get_prices(_request_time(record.timestamp))))

    def resolve(self, provider: str, model: str, request_model: str) -> tuple[str, RateCard | ModelInfo | None]:
        """The price status of a (provider, model, requested model) and what prices it: an override's card, the
        genai-prices model (whose price depends on the request time), or nothing (unpriced)."""
        override = self._overrides.get(_override_key(provider or None, model)) or self._overrides.get(
            _override_key(None, model)
        )
        if override is not None:
            return OVERRIDE, override
        model_info = self._model(provider, model)
        if model_info is None and request_model and request_model != model:
            # A deployment or gateway may answer with a name no price list knows; what was asked for may be known.
            model_info = self._model(provider, request_model)
        return (UNPRICED, None) if model_info is None else (PRICED, model_info)

    def _card(self, price: ModelPrice) -> RateCard:
        card = self._cards.get(id(price))
        if card is None or card.price is not price:
            card = self._cards[id(price)] = RateCard(price)
        return card

    def _model(self, provider: str, model: str) -> ModelInfo | None:
        key = (provider, model)
        try:
            return self._models[key]
        except KeyError:
            pass
        if len(self._models) > 100_000:
            self._models.clear()
        self._models[key] = found = _find_model(provider, model)
        return found


def _request_time(timestamp: int) -> datetime:
    """A span's start (ns since the epoch) as genai-prices takes it: UTC, to the microsecond."""
    return datetime.fromtimestamp(timestamp // 1_000_000_000, UTC).replace(microsecond=(timestamp // 1000) % 1_000_000)


def _find_model(provider: str, model: str) -> ModelInfo | None:
    if not model or provider in SELF_HOSTED_PROVIDERS:
        return None
    provider_id = PRICING_PROVIDERS.get(provider, provider or None)
    candidates = list(model_candidates(provider_id, model))
    if provider_id is not None and provider not in PRICING_PROVIDERS:
        # A provider genai-prices may not know (a gateway, a proxy): let the model name decide too.
        candidates += [(None, name) for _, name in candidates]
    for candidate_provider, name in candidates:
        try:
            return genai_prices.calc_price(_NO_USAGE, name, provider_id=candidate_provider).model
        except LookupError:
            continue
    return None


class RateCard:
    """A model's prices compiled for the five usage counts spanmeter reports.

    genai-prices' general calculation walks its whole unit registry for every call (~90 us); for a
    price whose only units that can apply are input, cache read, cache write and output, the same
    sums are a few multiplications. Any other price (per-request fees, separate reasoning rates)
    takes genai-prices' own path. tests/collector/test_rate_card.py checks both agree on every model.
    """

    _CORE = frozenset({"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"})
    _REPORTED = frozenset(
        {"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "output_reasoning_tokens"}
    )

    def __init__(self, price: ModelPrice) -> None:
        self.price = price
        priced = {key for key, value in vars(price).items() if value is not None and not key.startswith("_")}
        self.fast = all(key in self._CORE or _never_applies(key) for key in priced)

    def token_prices(self) -> tuple[TokenPrice, TokenPrice, TokenPrice, TokenPrice]:
        """Per million tokens: (input other than cache, cache read, cache write, output); a cache price the model
        does not list is its input price, as genai-prices charges it."""
        price = self.price
        return (
            price.input_mtok,
            _first(price.cache_read_mtok, price.input_mtok),
            _first(price.cache_write_mtok, price.input_mtok),
            price.output_mtok,
        )

    def costs(self, record: SpanRecord) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """(input excluding cache, cache read, cache write, output), unrounded."""
        price = self.price
        total_input = record.input_tokens
        plain_price, read_price, write_price, output_price = self.token_prices()
        cache_read = calc_unit_price(read_price, record.cache_read_tokens, total_input, _PER_MILLION)
        cache_write = calc_unit_price(write_price, record.cache_write_tokens, total_input, _PER_MILLION)
        if self.fast:
            plain_input = total_input - record.cache_read_tokens - record.cache_write_tokens
            plain = calc_unit_price(plain_price, plain_input, total_input, _PER_MILLION)
            output = calc_unit_price(output_price, record.output_tokens, total_input, _PER_MILLION)
            return plain, cache_read, cache_write, output
        totals = price.calc_price(
            genai_prices.Usage(
                input_tokens=record.input_tokens,
                cache_read_tokens=record.cache_read_tokens,
                cache_write_tokens=record.cache_write_tokens,
                output_tokens=record.output_tokens,
                output_reasoning_tokens=record.reasoning_tokens,
            )
        )
        # Anything priced on neither side (a per-request fee) is counted with the input.
        other = totals["total_price"] - totals["input_price"] - totals["output_price"]
        return totals["input_price"] - cache_read - cache_write + other, cache_read, cache_write, totals["output_price"]


def _never_applies(price_key: str) -> bool:
    """A unit for a usage spanmeter never reports (audio, images, web searches...): it prices zero."""
    try:
        unit = _UNITS.unit_for_price_key(price_key)
    except KeyError:
        return False
    return unit.usage_key not in RateCard._REPORTED and unit.dimensions.get("family") != "requests"


def _apply(record: SpanRecord, card: RateCard) -> None:
    plain, cache_read, cache_write, output = card.costs(record)
    try:
        record.input_cost = _quantize(plain)
        record.cache_read_cost = _quantize(cache_read)
        record.cache_write_cost = _quantize(cache_write)
        record.output_cost = _quantize(output)
    except InvalidOperation:  # 10^16 USD or more: 12 decimal places exceed Decimal's 28 digits
        _reject_cost(record, plain + cache_read + cache_write + output)
        return
    record.total_cost = record.input_cost + record.cache_read_cost + record.cache_write_cost + record.output_cost
    if record.total_cost > MAX_COST:  # one comparison per row; no cost is negative, so this bounds all five
        _reject_cost(record, record.total_cost)


def _reject_cost(record: SpanRecord, total: Decimal) -> None:
    record.rejection = (
        f"total_cost {total.normalize():f} USD ({record.input_tokens} input_tokens, "
        f"{record.output_tokens} output_tokens "
        f"of {preview(record.model)}) exceeds what the Decimal(18, 12) cost columns hold ({MAX_COST})"
    )


def _first(*prices: Decimal | TieredPrices | None) -> Decimal | TieredPrices | None:
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
