"""Provider names: deprecated and foreign spellings to the current `gen_ai.provider.name`
values, and those values to genai-prices' provider ids."""

from __future__ import annotations

# Deprecated `gen_ai.system` values and common variants -> current gen_ai.provider.name.
PROVIDER_ALIASES: dict[str, str] = {
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "google": "gcp.gemini",
    "google_genai": "gcp.gen_ai",
    "xai": "x_ai",
    "az.ai.inference": "azure.ai.inference",
    "az.ai.openai": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "watsonx": "ibm.watsonx.ai",
}

# Current gen_ai.provider.name -> genai-prices provider id.
PRICING_PROVIDERS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "x_ai": "x-ai",
    "mistral_ai": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "cohere": "cohere",
    "openrouter": "openrouter",
    "together": "together",
    "fireworks": "fireworks",
    "cerebras": "cerebras",
}

# Models served on the user's own hardware: a cloud price would be a lie, so these stay
# unpriced unless pipelines.yaml gives a price.
SELF_HOSTED_PROVIDERS = frozenset({"ollama", "vllm", "llama.cpp", "lmstudio", "localai"})


def normalize_provider(name: str) -> str:
    key = name.strip().lower()
    return PROVIDER_ALIASES.get(key, key)
