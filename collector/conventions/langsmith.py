"""LangSmith's OpenTelemetry export (`LANGSMITH_OTEL_ENABLED`), scope `langsmith`.

Only `llm` and `embedding` runs are model calls (`langsmith.span.kind`); chain, tool and retriever
runs wrap them. Cache and reasoning counts are not top-level attributes: they are read from the
run's `usage_metadata` JSON, else from `gen_ai.usage.*_token_details`, which arrive as a Python
dict's text (single quotes). Run metadata (`langsmith.metadata.*`) are tags, bar LangSmith's own.
Source: langchain-ai/langsmith-sdk, python/langsmith/_internal/otel/_otel_exporter.py.
"""

from .base import Convention, Field
from .otel_genai import OTEL_CONTENT, OTEL_FIELDS, TAG_PREFIX

_USAGE = "langsmith.metadata.usage_metadata"

LANGSMITH = Convention(
    name="langsmith",
    source="langchain-ai/langsmith-sdk: python/langsmith/_internal/otel/_otel_exporter.py",
    scopes=("langsmith",),
    markers=("langsmith.span.kind",),
    call_filter=("langsmith.span.kind", frozenset({"llm", "embedding"})),
    fields={
        **OTEL_FIELDS,
        Field.PROVIDER: (*OTEL_FIELDS[Field.PROVIDER], "langsmith.metadata.ls_provider"),
        Field.REQUEST_MODEL: (*OTEL_FIELDS[Field.REQUEST_MODEL], "langsmith.metadata.ls_model_name"),
        Field.INPUT_TOKENS: (*OTEL_FIELDS[Field.INPUT_TOKENS], f"{_USAGE}#input_tokens"),
        Field.OUTPUT_TOKENS: (*OTEL_FIELDS[Field.OUTPUT_TOKENS], f"{_USAGE}#output_tokens"),
        Field.CACHE_READ_TOKENS: (
            f"{_USAGE}#input_token_details.cache_read",
            "gen_ai.usage.input_token_details#cache_read",
        ),
        Field.CACHE_WRITE_TOKENS: (
            f"{_USAGE}#input_token_details.cache_creation",
            "gen_ai.usage.input_token_details#cache_creation",
        ),
        Field.REASONING_TOKENS: (
            f"{_USAGE}#output_token_details.reasoning",
            "gen_ai.usage.output_token_details#reasoning",
        ),
    },
    tag_prefixes=("langsmith.metadata.", TAG_PREFIX),
    tag_skip=("ls_", "LANGSMITH_", "usage_metadata"),
    content_attributes=OTEL_CONTENT,
)
