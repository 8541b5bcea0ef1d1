"""Attribute conventions the collector reads, each kept as data: which attribute names feed
which field of a row. Adding a convention means adding a table, not branches in code."""

from .anthropic_sdk import ANTHROPIC_SDK
from .base import Convention, Field
from .langsmith import LANGSMITH
from .logfire import LOGFIRE
from .openinference import OPENINFERENCE
from .openlit import OPENLIT
from .openllmetry import OPENLLMETRY
from .otel_genai import OTEL_GENAI
from .providers import PRICING_PROVIDERS, SELF_HOSTED_PROVIDERS, normalize_provider
from .vercel_ai import VERCEL_AI

__all__ = [
    "CONVENTIONS",
    "OTEL_GENAI",
    "PRICING_PROVIDERS",
    "SELF_HOSTED_PROVIDERS",
    "Convention",
    "Field",
    "normalize_provider",
]

# A span is read by the convention its instrumentation scope names, else by the first whose marker
# attributes it carries: specific dialects first, the plain OTel conventions last.
CONVENTIONS: tuple[Convention, ...] = (
    OPENINFERENCE,
    LANGSMITH,
    OPENLIT,
    OPENLLMETRY,
    LOGFIRE,
    ANTHROPIC_SDK,
    VERCEL_AI,
    OTEL_GENAI,
)
