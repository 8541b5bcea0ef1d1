"""Attribute conventions the collector reads, each kept as data: which attribute names feed
which field of a row. Adding a convention means adding a table, not branches in code."""

from .base import Convention, Field
from .otel_genai import OTEL_GENAI
from .providers import PRICING_PROVIDERS, SELF_HOSTED_PROVIDERS, normalize_provider

__all__ = [
    "CONVENTIONS",
    "OTEL_GENAI",
    "PRICING_PROVIDERS",
    "SELF_HOSTED_PROVIDERS",
    "Convention",
    "Field",
    "normalize_provider",
]

# Tried in order: the first whose marker attributes a span carries reads it.
CONVENTIONS: tuple[Convention, ...] = (OTEL_GENAI,)
