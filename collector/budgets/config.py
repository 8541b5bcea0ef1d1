"""The `budget` processor's settings: budgets, the channels crossings are notified on, and how often spend is
reconciled."""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, PositiveInt, field_validator, model_validator

from ..config_types import KeyedError, Seconds, StrictModel

__all__ = [
    "BUDGET_SCOPE_KEYS",
    "BUDGET_WINDOW",
    "BudgetChannelConfig",
    "BudgetConfig",
    "BudgetProcessorConfig",
    "EmailChannelConfig",
    "SlackChannelConfig",
    "WebhookChannelConfig",
]

BUDGET_SCOPE_KEYS = ("project", "service", "environment", "provider", "model", "feature", "user")
BUDGET_WINDOW = re.compile(r"^(day|month|rolling ([1-9]\d{0,3})h)$")


class BudgetConfig(StrictModel):
    """One budget: spans in `scope`, summed over `window`, against `limit_usd` (and optional token/request limits)."""

    name: str = Field(min_length=1, max_length=200)
    scope: dict[str, str] = Field(default_factory=dict)
    """Scope key -> a value, a `*` pattern, or `each` (one budget per distinct value)."""
    window: str = "day"
    """`day` (UTC calendar day), `month` (UTC calendar month) or `rolling Nh` (the last N hours)."""
    limit_usd: Decimal = Field(gt=0)
    limit_tokens: PositiveInt | None = None
    limit_requests: PositiveInt | None = None
    thresholds: list[Annotated[int, Field(ge=1, le=1000)]] = Field(default=[80, 100], min_length=1)
    action: Literal["notify", "block"] = "notify"
    channels: list[str] = Field(default_factory=list)

    @field_validator("scope")
    @classmethod
    def _scope_keys(cls, scope: dict[str, str]) -> dict[str, str]:
        for key, value in scope.items():
            if key not in BUDGET_SCOPE_KEYS and not (key.startswith("tag:") and len(key) > 4):
                expected = ", ".join([*BUDGET_SCOPE_KEYS, "tag:NAME"])
                raise ValueError(f"unknown scope key {key!r}; expected one of {expected}")
            if not value:
                raise ValueError(f"scope key {key!r} needs a value, a * pattern or each")
        return scope

    @field_validator("window")
    @classmethod
    def _window(cls, window: str) -> str:
        if not BUDGET_WINDOW.match(window):
            raise ValueError(f"expected day, month or rolling Nh (e.g. rolling 24h), got {window!r}")
        return window

    @field_validator("thresholds")
    @classmethod
    def _sorted_thresholds(cls, thresholds: list[int]) -> list[int]:
        return sorted(set(thresholds))


class _ChannelBase(StrictModel):
    timeout: Seconds = 5.0
    retries: int = Field(default=3, ge=0, le=10)
    """Attempts after the first; waits `backoff`, then doubles it."""
    backoff: Seconds = 1.0


class WebhookChannelConfig(_ChannelBase):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://[^/]+")
    secret: str = Field(min_length=1, repr=False)
    """HMAC-SHA256 key for the `X-Spanmeter-Signature` header; use ${env:VAR}."""
    headers: dict[str, str] = Field(default={}, repr=False)


class SlackChannelConfig(_ChannelBase):
    type: Literal["slack"]
    url: str = Field(pattern=r"^https?://[^/]+", repr=False)


class EmailChannelConfig(_ChannelBase):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ca_file: str | None = None
    """CA bundle to verify the server's certificate (default: the system's)."""
    username: str = ""
    password: str = Field(default="", repr=False)
    from_: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    timeout: Seconds = 10.0

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


BudgetChannelConfig = Annotated[
    WebhookChannelConfig | SlackChannelConfig | EmailChannelConfig, Field(discriminator="type")
]


class BudgetProcessorConfig(StrictModel):
    channels: dict[str, BudgetChannelConfig] = Field(default_factory=dict)
    budgets: list[BudgetConfig] = Field(default_factory=list)
    reconcile_interval: Seconds = 30.0
    """How often spend is re-read from ClickHouse (and budget_status written)."""
    allow_private_targets: bool = False
    """Allow webhook/Slack URLs on private, loopback or link-local addresses."""
    max_each_values: PositiveInt = 10_000
    """Distinct values an `each` budget tracks per window (users, sessions...); beyond, new values are not
    counted (a metric and a warning say so), so a sender cannot grow the collector's memory without bound."""

    @model_validator(mode="after")
    def _references(self) -> BudgetProcessorConfig:
        seen: set[str] = set()
        for index, budget in enumerate(self.budgets):
            if budget.name in seen:
                raise KeyedError(("budgets", index, "name"), f"duplicate budget name {budget.name!r}")
            seen.add(budget.name)
            for position, channel_name in enumerate(budget.channels):
                if channel_name not in self.channels:
                    raise KeyedError(
                        ("budgets", index, "channels", position),
                        f"unknown channel {channel_name!r} (declared under channels: {sorted(self.channels)})",
                    )
        if not self.allow_private_targets:
            for name, channel in self.channels.items():
                url = getattr(channel, "url", None)
                if url is not None and _is_private_literal(url):
                    raise KeyedError(
                        ("channels", name, "url"),
                        "targets a private or loopback address; refused unless allow_private_targets is true",
                    )
        return self


def _is_private_literal(url: str) -> bool:
    """Whether the URL's host is an IP literal that is not public (names are checked when sending)."""
    try:
        address = ipaddress.ip_address(urlsplit(url).hostname or "")
    except ValueError:
        return False
    return not address.is_global
