"""Model-name variants that genai-prices does not match as sent, and what to try instead.

genai-prices already matches dated snapshots (`gpt-4o-2024-08-06`), Vertex `@YYYYMMDD` suffixes,
Bedrock ids (`anthropic.claude-…-v1:0`, `us.anthropic…`) and OpenRouter ids (with provider
`openrouter`). Left here: a vendor prefix on a direct provider call (`openai/gpt-4o`, as LiteLLM and
gateways write it) and the Gemini API's resource names (`models/gemini-2.5-flash`).
"""

from __future__ import annotations

from collections.abc import Iterator

# `vendor/` prefixes -> genai-prices provider id, for a model sent without a known provider.
VENDOR_PREFIXES: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "mistralai": "mistral",
    "mistral": "mistral",
    "x-ai": "x-ai",
    "xai": "x-ai",
    "deepseek": "deepseek",
    "cohere": "cohere",
    "groq": "groq",
    "perplexity": "perplexity",
}
RESOURCE_PREFIXES = ("models/", "publishers/google/models/")
ROUTERS = frozenset({"openrouter", "together", "fireworks", "huggingface", "bedrock", "aws"})


def model_candidates(provider_id: str | None, model: str) -> Iterator[tuple[str | None, str]]:
    """(provider id, model name) pairs to look up, most faithful first."""
    yield provider_id, model
    name = model
    for prefix in RESOURCE_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            yield provider_id, name
    if "/" in name and provider_id not in ROUTERS:
        vendor, _, rest = name.partition("/")
        vendor_provider = VENDOR_PREFIXES.get(vendor.lower())
        if vendor_provider is not None and rest:
            yield provider_id or vendor_provider, rest
            if provider_id is not None and provider_id != vendor_provider:
                yield vendor_provider, rest
