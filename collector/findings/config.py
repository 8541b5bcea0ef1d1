"""The `findings:` section of pipelines.yaml: each rule's thresholds, and how often the collector
materializes findings into the store for the Findings dashboard.

Every key has a default, so the section can be left out. A wrong value is reported by the config loader
with its path (e.g. `findings.right_size.max_input_tokens`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, Field, NonNegativeFloat, PositiveInt, field_validator

from ..config_types import StrictModel, parse_duration

__all__ = [
    "AnomaliesConfig",
    "CacheUnusedConfig",
    "FindingsConfig",
    "PaidFailuresConfig",
    "PromptGrowthConfig",
    "RepeatedCallsConfig",
    "RightSizeConfig",
]

Seconds = Annotated[int, BeforeValidator(parse_duration), Field(ge=0)]
"""Whole seconds; 0 allowed (`interval: 0` never stores findings)."""
Usd = Annotated[Decimal, Field(ge=0)]


class _Rule(StrictModel):
    enabled: bool = True
    min_savings_usd: Usd = Decimal("1")
    """A finding is reported only when it would save at least this much a month."""


# Cheaper models of the same provider a classification-like scope could move to, by the provider as the
# `provider` column names it. genai-prices knows every model's price but not which are alike: this list does.
DEFAULT_CANDIDATES: dict[str, list[str]] = {
    "openai": ["gpt-4.1-nano", "gpt-4o-mini", "gpt-4.1-mini"],
    "anthropic": ["claude-3-5-haiku", "claude-haiku-4-5"],
    "gcp.gemini": ["gemini-2.5-flash-lite", "gemini-2.0-flash-lite"],
    "gcp.vertex_ai": ["gemini-2.5-flash-lite", "gemini-2.0-flash-lite"],
}


class RightSizeConfig(_Rule):
    """Scopes whose calls are short in and out (classification-like) on a model dearer than a candidate."""

    min_calls: PositiveInt = 50
    max_input_tokens: PositiveInt = 1000
    """The 90th percentile of a scope's input tokens per call must be at most this."""
    max_output_tokens: PositiveInt = 50
    """... and of its output tokens per call."""
    min_saving_ratio: Annotated[float, Field(gt=0, le=1)] = 0.3
    """The candidate must cost at most (1 - this) of what the scope spent."""
    candidates: dict[str, list[str]] = DEFAULT_CANDIDATES


class CacheUnusedConfig(_Rule):
    """Repeated large prompt prefixes (same `prompt_prefix_hash`) with no cache reads, on a provider that caches."""

    min_input_tokens: PositiveInt = 1024
    """The smallest input per call worth caching (OpenAI caches prompts from 1,024 tokens)."""
    min_repeats: PositiveInt = 10
    """Calls sharing one prefix in the period."""


class RepeatedCallsConfig(_Rule):
    """Identical requests (prefix hash, model, input tokens, parameters) again within `window`."""

    window: Seconds = 300
    min_repeats: PositiveInt = 5


class PaidFailuresConfig(_Rule):
    """Calls that failed yet consumed (and were billed) tokens."""

    min_calls: PositiveInt = 5


class PromptGrowthConfig(_Rule):
    """Input tokens per call rising week over week."""

    min_weeks: Annotated[int, Field(ge=2)] = 3
    min_growth: Annotated[float, Field(gt=0)] = 0.25
    """The last week's tokens per call over the first week's, minus 1 (0.25: a quarter more)."""
    min_calls_per_week: PositiveInt = 20


class AnomaliesConfig(_Rule):
    """Calls, tokens and spend per service, feature and user above the band of the same weekday's history."""

    dimensions: list[str] = Field(default_factory=lambda: ["service", "feature", "user"])
    recent_days: PositiveInt = 7
    """Complete UTC days before the end of the period that are checked."""
    history_weeks: Annotated[int, Field(ge=3, le=12)] = 4
    """Same weekdays before a checked day that make its band (median and MAD)."""
    mad_multiplier: NonNegativeFloat = 3.0
    """The band's half-width in scaled MADs (1.4826 x MAD estimates a standard deviation)."""
    min_relative_width: NonNegativeFloat = 0.5
    """The band is at least this share of the median wide on either side (a flat history has a MAD of 0)."""
    min_calls: PositiveInt = 20
    """A day with fewer calls than this is not checked (new users, stray calls)."""
    min_savings_usd: Usd = Decimal("0")

    @field_validator("dimensions")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"service", "feature", "user"})
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}; expected service, feature or user")
        return value


class FindingsConfig(StrictModel):
    """`findings:` in pipelines.yaml."""

    interval: Seconds = 3600
    """How often a collector computes findings and stores them in the `findings` table (0: never; the CLI and
    the API compute them on demand either way)."""
    since: Seconds = 30 * 86400
    """The period the stored findings cover, ending at each run."""
    right_size: RightSizeConfig = RightSizeConfig()
    cache_unused: CacheUnusedConfig = CacheUnusedConfig()
    repeated_calls: RepeatedCallsConfig = RepeatedCallsConfig()
    paid_failures: PaidFailuresConfig = PaidFailuresConfig()
    prompt_growth: PromptGrowthConfig = PromptGrowthConfig()
    anomalies: AnomaliesConfig = AnomaliesConfig()

    @field_validator("since")
    @classmethod
    def _whole_day(cls, value: int) -> int:
        if value < 86400:
            raise ValueError(f"must be at least a day (1d), got {value}s")
        return value
