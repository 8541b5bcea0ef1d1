"""What-if prices for findings: the tokens a scope used, priced on a model with genai-prices (or an override).

A finding prices the sums of a scope's tokens at once: exact as the sum of per-call prices as long as every call
is priced at the same rate, which `per_call_input` (the largest input of one call in the scope) picks from a
tiered price. Findings are about short calls or prefixes, well below the first tier (128k tokens and more).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from genai_prices.types import ModelInfo, ModelPrice, TieredPrices, calc_unit_price

from ..processors.config import PricingProcessorConfig
from ..processors.pricing import UNPRICED, PricingProcessor, RateCard

__all__ = ["Prices", "Tokens"]

_PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Tokens:
    """Token sums of a scope; `input` includes the cache reads and writes, as the columns do."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    per_call_input: int = 0


class Prices:
    """Model prices at a time, through the pricing processor's matching (aliases, dated names, overrides)."""

    def __init__(self, config: PricingProcessorConfig | None = None) -> None:
        self._pricing = PricingProcessor(config or PricingProcessorConfig())

    def price(self, provider: str, model: str, at: datetime) -> ModelPrice | None:
        status, found = self._pricing.resolve(provider, model, model)
        if status == UNPRICED or found is None:
            return None
        return found.price if isinstance(found, RateCard) else _model_price(found, at)

    def cost(self, price: ModelPrice, tokens: Tokens) -> Decimal:
        """The tokens priced: plain input, cache reads and writes (at the input rate where the model has none),
        and output."""
        at = tokens.per_call_input
        plain = tokens.input - tokens.cache_read - tokens.cache_write
        return (
            calc_unit_price(price.input_mtok, plain, at, _PER_MILLION)
            + calc_unit_price(_first(price.cache_read_mtok, price.input_mtok), tokens.cache_read, at, _PER_MILLION)
            + calc_unit_price(_first(price.cache_write_mtok, price.input_mtok), tokens.cache_write, at, _PER_MILLION)
            + calc_unit_price(price.output_mtok, tokens.output, at, _PER_MILLION)
        )

    def input_rates(self, price: ModelPrice, per_call_input: int) -> tuple[Decimal, Decimal | None]:
        """USD per input token and per cache-read token (None: the model has no cache-read price)."""
        plain = calc_unit_price(price.input_mtok, 1, per_call_input, _PER_MILLION)
        if price.cache_read_mtok is None:
            return plain, None
        return plain, calc_unit_price(price.cache_read_mtok, 1, per_call_input, _PER_MILLION)


def _first(
    price: Decimal | TieredPrices | None, fallback: Decimal | TieredPrices | None
) -> Decimal | TieredPrices | None:
    return fallback if price is None else price


def _model_price(model: ModelInfo, at: datetime) -> ModelPrice:
    return model.get_prices(at)
