"""The processors' settings: `genai` (what is read and kept of a span, and redacted), `pricing` (overrides of
genai-prices) and `tags` (rules)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from ..config_types import Seconds, StrictModel
from ..privacy import BUILTIN_NAMES

__all__ = [
    "GenAIProcessorConfig",
    "PriceOverride",
    "PricingProcessorConfig",
    "RedactionConfig",
    "RedactionRule",
    "TagRule",
    "TagsProcessorConfig",
]


class RedactionRule(StrictModel):
    """A pattern from pipelines.yaml whose matches are replaced before storage (the Collector's
    redactionprocessor calls its patterns `blocked_values`; these have a name and a replacement)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    regex: str = Field(min_length=1)
    replacement: str | None = None
    """Default `[REDACTED:<name>]`; may refer to groups (`\\1`, `\\g<name>`)."""

    @model_validator(mode="after")
    def _compiles(self) -> RedactionRule:
        try:
            pattern = re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"regex is not a valid regular expression: {exc}") from None
        if pattern.match(""):
            raise ValueError("regex matches the empty string: it would redact between every character")
        return self


class RedactionConfig(StrictModel):
    """What is redacted before storage: content always (with capture_content), and, with `attributes`, other
    attribute values long enough to hold a credential."""

    builtin_rules: bool = True
    """Provider API keys, bearer/basic credentials, JWTs, private keys, URL credentials, secret assignments,
    emails, card numbers."""
    disabled_rules: list[str] = Field(default_factory=list)
    """Built-in rules not applied, by name (e.g. `email` where user ids are emails)."""
    rules: list[RedactionRule] = Field(default_factory=list)
    attributes: bool = True
    """Also redact span and resource attribute values of 20 characters or more (not only content)."""

    @field_validator("disabled_rules")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - BUILTIN_NAMES)
        if unknown:
            raise ValueError(f"unknown built-in rule(s) {unknown}; expected some of {sorted(BUILTIN_NAMES)}")
        return names


class GenAIProcessorConfig(StrictModel):
    capture_content: bool = False
    """Keep prompt and completion text. Off: such attributes are dropped before storage."""
    max_attributes: PositiveInt = 128
    """Span or resource attributes kept per row beyond the promoted columns."""
    max_attribute_value_length: PositiveInt = 4096
    max_tokens_per_call: int = Field(default=1_000_000_000, gt=0, le=10**18)
    """A token count above this rejects the span: no call is that large, so the sender is wrong. At most
    10^18, so a row's sums (input plus cache) stay within UInt64."""
    max_future_skew: Seconds = 3600.0
    """A span starting or ending further ahead of the collector's clock is rejected."""
    max_content_length: PositiveInt = 32768
    """Characters kept of one content attribute (with capture_content); the rest is cut."""
    max_content_per_span: PositiveInt = 131072
    """Characters of content kept per row, all content attributes together; past it the rest is dropped."""
    redaction: RedactionConfig = RedactionConfig()
    reader: Literal["engine", "python"] = "engine"
    """Who reads spans into rows: the ClickHouse engine, a batch of requests per query (requests it cannot read
    exactly go to the Python reader), or the Python reader alone (the reference the engine is tested against)."""
    engine_min_spans: NonNegativeInt = 5000
    """Segments with fewer spans are read by the Python reader: the engine's query costs ~0.3 s of planning
    however few spans it reads. The whole collector used as much CPU either way at ~5,000-span segments, less
    with the Python reader below (at 2,500: ~14 against ~18 % of a core), more above (at 10,000: 25 against 32)."""


class PriceOverride(StrictModel):
    """A price from pipelines.yaml: a self-hosted model, a negotiated rate. USD per million tokens."""

    model: str = Field(min_length=1)
    provider: str | None = None
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)
    cache_read_per_mtok: Decimal | None = Field(default=None, ge=0)
    cache_write_per_mtok: Decimal | None = Field(default=None, ge=0)


class PricingProcessorConfig(StrictModel):
    overrides: list[PriceOverride] = Field(default_factory=list)


class TagRule(StrictModel):
    """Copy an attribute into a tag, or extract a part of it with a regex."""

    tag: str = Field(min_length=1)
    from_: str = Field(alias="from", pattern=r"^(span|resource)\..+")
    regex: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if compiled.groups == 0:
            raise ValueError("needs a capture group: the tag takes group 'value' or else group 1")
        return pattern


class TagsProcessorConfig(StrictModel):
    rules: list[TagRule] = Field(default_factory=list)
