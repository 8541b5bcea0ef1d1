"""OpenLLMetry (Traceloop): `opentelemetry-instrumentation-{openai,anthropic,bedrock,...}` and traceloop-sdk.

Since 0.4x it writes the current GenAI names; before, `gen_ai.system`, `gen_ai.usage.prompt_tokens` /
`completion_tokens`, `gen_ai.usage.cache_read_input_tokens` / `cache_creation_input_tokens`,
`llm.usage.total_tokens` and `llm.request.type`. Reasoning stays `gen_ai.usage.reasoning_tokens`
(`llm.usage.reasoning_tokens` before). Association properties are tags; workflow, task, agent and tool
spans of traceloop-sdk wrap model calls. Source: traceloop/openllmetry,
packages/opentelemetry-semantic-conventions-ai/opentelemetry/semconv_ai/__init__.py (SpanAttributes).
"""

from .base import Convention, Field
from .otel_genai import OTEL_CONTENT, OTEL_CONTENT_PREFIXES, OTEL_FIELDS, TAG_PREFIX

_SCOPES = (
    "opentelemetry.instrumentation.openai.v1",
    "opentelemetry.instrumentation.anthropic",
    "opentelemetry.instrumentation.bedrock",
    "opentelemetry.instrumentation.cohere",
    "opentelemetry.instrumentation.groq",
    "opentelemetry.instrumentation.mistralai",
    "opentelemetry.instrumentation.ollama",
    "opentelemetry.instrumentation.together",
    "opentelemetry.instrumentation.google_generativeai",
    "opentelemetry.instrumentation.langchain",
    "opentelemetry.instrumentation.llamaindex",
    "opentelemetry.instrumentation.openai_agents",
    "opentelemetry.instrumentation.watsonx",
    "opentelemetry.instrumentation.replicate",
    "opentelemetry.instrumentation.crewai",
    "traceloop",
)

OPENLLMETRY = Convention(
    name="openllmetry",
    source="traceloop/openllmetry: packages/opentelemetry-semantic-conventions-ai/"
    "opentelemetry/semconv_ai/__init__.py (SpanAttributes, incl. the deprecated LLM_* names)",
    scopes=_SCOPES,
    markers=("llm.request.type", "traceloop.span.kind", "traceloop.entity.name", "llm.usage.total_tokens"),
    fields={
        **OTEL_FIELDS,
        Field.OPERATION: (*OTEL_FIELDS[Field.OPERATION], "llm.request.type"),
        Field.CACHE_READ_TOKENS: (
            *OTEL_FIELDS[Field.CACHE_READ_TOKENS],
            "gen_ai.usage.cache_read_input_tokens",
        ),
        Field.CACHE_WRITE_TOKENS: (
            *OTEL_FIELDS[Field.CACHE_WRITE_TOKENS],
            "gen_ai.usage.cache_creation_input_tokens",
        ),
        Field.FINISH_REASONS: (*OTEL_FIELDS[Field.FINISH_REASONS], "gen_ai.completion.0.finish_reason"),
        Field.REASONING_TOKENS: (
            *OTEL_FIELDS[Field.REASONING_TOKENS],
            "gen_ai.usage.reasoning_tokens",
            "llm.usage.reasoning_tokens",
        ),
    },
    # Before the move: `llm.request.type` "embedding", and "completion" for both completions and Anthropic messages.
    operation_values={"embedding": "embeddings", "completion": "text_completion"},
    wrapper_filter=("traceloop.span.kind", frozenset({"workflow", "task", "agent", "tool"})),
    tag_prefixes=("traceloop.association.properties.", TAG_PREFIX),
    content_attributes=OTEL_CONTENT | {"traceloop.entity.input", "traceloop.entity.output"},
    content_prefixes=OTEL_CONTENT_PREFIXES,
)
