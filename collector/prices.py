"""The `model_prices` table: every model genai-prices knows, with its prices per token kind and price period, so
traffic can be priced in SQL on a model that never ran (`spanmeter report --what-if`, the Models dashboard).

The prices are the pricing processor's own: each period's `RateCard.token_prices()` (input other than cache, cache
read and write falling back to input, output), plus a distinct reasoning price where genai-prices has one. Periods
are found by asking genai-prices' `ModelInfo.get_prices` itself at a time inside each span between the price
list's start dates and times of day, so a row's price is the one genai-prices charges at every instant it covers.

Each collector writes the rows of its genai-prices version at start. Rows of that version already stored are not
written again; collectors starting together insert the same rows under the same `insert_deduplication_token`, and
the table replaces rows with the same key, so no row is ever counted twice (readers use FINAL).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import genai_prices
from clickhouse_connect.driver.client import Client
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, StartDateConstraint, TieredPrices, TimeOfDateConstraint

from .cluster import CLUSTER_INSERT_SETTINGS
from .processors.columnar_pricing import _time_of_day
from .processors.pricing import RateCard, TokenPrice

__all__ = [
    "COLUMNS",
    "PRICES_VERSION",
    "PriceRow",
    "UnknownModel",
    "WhatIfModel",
    "known_models",
    "price_rows",
    "refresh",
    "resolve",
]

logger = logging.getLogger(__name__)

PRICES_VERSION = genai_prices.__version__
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000
_SCALE = Decimal("1e-18")  # the table's Decimal(38, 18): genai-prices has prices such as 0.18000000000000002
_TOKEN_KEYS = frozenset({"input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok", "output_reasoning_mtok"})
COLUMNS = (
    "version",
    "provider",
    "model",
    "name",
    "valid_from",
    "valid_to",
    "day_from_ms",
    "day_to_ms",
    "input_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "output_mtok",
    "reasoning_mtok",
    "tier_starts",
    "input_tier_mtok",
    "cache_read_tier_mtok",
    "cache_write_tier_mtok",
    "output_tier_mtok",
    "other_units",
    "refreshed_at",
)


@dataclass(frozen=True)
class PriceRow:
    """One model's prices over one period (and part of the day), per million tokens."""

    provider: str
    model: str
    name: str
    valid_from: datetime
    valid_to: datetime
    day_from_ms: int
    day_to_ms: int
    base: tuple[Decimal, Decimal, Decimal, Decimal]  # input other than cache, cache read, cache write, output
    reasoning: Decimal | None
    tier_starts: tuple[int, ...]
    tiers: tuple[tuple[Decimal, ...], ...]  # per kind, the price above each of tier_starts
    other_units: tuple[str, ...]

    def values(self, refreshed_at: datetime) -> list[Any]:
        return [
            PRICES_VERSION,
            self.provider,
            self.model,
            self.name,
            self.valid_from,
            self.valid_to,
            self.day_from_ms,
            self.day_to_ms,
            *self.base,
            self.reasoning,
            list(self.tier_starts),
            *(list(kind) for kind in self.tiers),
            list(self.other_units),
            refreshed_at,
        ]


@functools.cache
def price_rows() -> tuple[PriceRow, ...]:
    """Every (provider, model, period) of the genai-prices snapshot this collector prices with (computed once a
    process: ~0.1 s)."""
    rows: list[PriceRow] = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            rows.extend(_model_rows(provider.id, model))
    return tuple(rows)


@functools.cache
def _digest() -> str:
    """The rows' fingerprint, without refreshed_at: the same from every collector of this version."""
    rows = [row.values(_EARLIEST)[:-1] for row in price_rows()]
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def _model_rows(provider: str, model: ModelInfo) -> list[PriceRow]:
    if isinstance(model.prices, ModelPrice):
        return [_row(provider, model, model.prices, _EARLIEST, _LATEST, 0, _DAY_MS)]
    starts = sorted(
        {
            datetime.combine(c.constraint.start_date, time(0), UTC)
            for c in model.prices
            if isinstance(c.constraint, StartDateConstraint)
        }
    )
    day_bounds = sorted(
        {0, _DAY_MS}
        | {
            _time_of_day(moment) // 1000
            for c in model.prices
            if isinstance(c.constraint, TimeOfDateConstraint)
            for moment in (c.constraint.start_time, c.constraint.end_time)
        }
    )
    rows: list[PriceRow] = []
    for valid_from, valid_to in zip([_EARLIEST, *starts], [*starts, _LATEST], strict=True):
        # A day inside [valid_from, valid_to): the periods before the first start date end at a midnight.
        day = valid_from if valid_from != _EARLIEST else (starts[0] - timedelta(days=1) if starts else _EARLIEST)
        segments: list[tuple[int, int, ModelPrice]] = []
        for day_from, day_to in itertools.pairwise(day_bounds):
            price = model.get_prices(day + timedelta(milliseconds=day_from))
            if segments and segments[-1][2] is price:
                segments[-1] = (segments[-1][0], day_to, price)
            else:
                segments.append((day_from, day_to, price))
        rows.extend(_row(provider, model, price, valid_from, valid_to, a, b) for a, b, price in segments)
    return rows


def _row(
    provider: str,
    model: ModelInfo,
    price: ModelPrice,
    valid_from: datetime,
    valid_to: datetime,
    day_from: int,
    day_to: int,
) -> PriceRow:
    kinds = RateCard(price).token_prices()
    starts = sorted({tier.start for kind in kinds if isinstance(kind, TieredPrices) for tier in kind.tiers})
    return PriceRow(
        provider=provider,
        model=model.id,
        name=model.name or model.id,
        valid_from=valid_from,
        valid_to=valid_to,
        day_from_ms=day_from,
        day_to_ms=day_to,
        base=tuple(_exact(_base(kind)) for kind in kinds),  # type: ignore[arg-type]
        reasoning=None if price.output_reasoning_mtok is None else _exact(_base(price.output_reasoning_mtok)),
        tier_starts=tuple(starts),
        tiers=tuple(tuple(_exact(_above(kind, start)) for start in starts) for kind in kinds),
        other_units=tuple(
            sorted(
                k for k, v in vars(price).items() if v is not None and not k.startswith("_") and k not in _TOKEN_KEYS
            )
        ),
    )


def _base(price: TokenPrice) -> Decimal:
    if isinstance(price, TieredPrices):
        return price.base
    return price if price is not None else Decimal(0)


def _above(price: TokenPrice, start: int) -> Decimal:
    """The price of a call whose input tokens just exceed `start`: the highest tier at or below it."""
    if not isinstance(price, TieredPrices):
        return _base(price)
    chosen = price.base
    for tier in price.tiers:
        if tier.start <= start:
            chosen = tier.price
    return chosen


def _exact(price: Decimal) -> Decimal:
    if price.quantize(_SCALE) != price:
        raise ValueError(f"a genai-prices price of {price} per million tokens has more than 18 decimals")
    return price


def refresh(client: Client, database: str, cluster: str | None = None) -> int:
    """Write this genai-prices version's rows unless the store has them all; returns the rows written (0 if none)."""
    rows = price_rows()
    if _stored(client, database) == len(rows):
        return 0
    now = datetime.now(UTC)
    values = [row.values(now) for row in rows]
    # The same rows from any collector under one token: of collectors starting together, one insert is kept.
    # refreshed_at differs between them, so the token names the rows without it.
    token = f"model-prices-{PRICES_VERSION}-{_digest()}"
    settings: dict[str, Any] = dict(CLUSTER_INSERT_SETTINGS) if cluster else {}
    client.insert(
        f"{database}.model_prices",
        values,
        column_names=list(COLUMNS),
        settings={**settings, "insert_deduplication_token": token},
    )
    if _stored(client, database) < len(rows):
        # Dropped as a duplicate of rows no longer there (the table was emptied): the table replaces rows by key,
        # so writing them under a token of their own cannot double them.
        client.insert(
            f"{database}.model_prices",
            values,
            column_names=list(COLUMNS),
            settings={**settings, "insert_deduplication_token": f"{token}-{now.isoformat()}"},
        )
    logger.info("model_prices: %d price rows of genai-prices %s written", len(rows), PRICES_VERSION)
    return len(rows)


def _stored(client: Client, database: str) -> int:
    return int(
        client.query(
            "SELECT count() FROM {database:Identifier}.model_prices FINAL WHERE version = {version:String}",
            parameters={"database": database, "version": PRICES_VERSION},
        ).result_rows[0][0]
    )


class UnknownModel(ValueError):
    """A what-if model genai-prices does not know; the message suggests close names."""


@dataclass(frozen=True)
class WhatIfModel:
    """A model to price traffic on, as genai-prices names it."""

    asked: str  # as the user wrote it
    provider: str
    model: str


def resolve(text: str, known: Sequence[str] = (), parameter: str = "what-if model") -> WhatIfModel:
    """`MODEL` or `PROVIDER:MODEL`, matched the way the pricing processor matches a span's model. `known` (the
    table's model ids) gives the suggestions when it is unknown."""
    text = text.strip()
    provider, colon, name = text.partition(":")
    if not colon or provider not in {p.id for p in data_snapshot.get_snapshot().providers}:
        provider, name = "", text  # Bedrock ids hold colons too
    if not name:
        raise UnknownModel(f"{parameter} needs a model name, e.g. gpt-4o-mini or openai:gpt-4o-mini; got {text!r}")
    usage = genai_prices.Usage(input_tokens=0, output_tokens=0)
    try:
        found = genai_prices.calc_price(usage, name, provider_id=provider or None)
    except LookupError:
        close = difflib.get_close_matches(name.lower(), sorted({k.lower() for k in known}), n=5, cutoff=0.6)
        hint = f"; close names: {', '.join(close)}" if close else ""
        where = f" of provider {provider!r}" if provider else ""
        raise UnknownModel(f"{parameter}: genai-prices {PRICES_VERSION} knows no model {name!r}{where}{hint}") from None
    return WhatIfModel(text, found.provider.id, found.model.id)


def known_models(client: Client, database: str) -> list[str]:
    """The model ids in the table (for suggestions)."""
    result = client.query(
        "SELECT DISTINCT model FROM {database:Identifier}.model_prices WHERE version = {version:String}",
        parameters={"database": database, "version": PRICES_VERSION},
    )
    return [str(row[0]) for row in result.result_rows]
