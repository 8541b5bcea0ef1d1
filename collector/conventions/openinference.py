"""OpenInference (Arize, Phoenix): `openinference-instrumentation-*`.

Model calls are spans of kind LLM or EMBEDDING (`openinference.span.kind`); CHAIN, AGENT, TOOL,
RETRIEVER... wrap them. Token counts are in OTel's meaning (`llm.token_count.prompt` includes cache
reads and writes). `session.id` and `user.id` fill their columns; `metadata` (a JSON object) and
`tag.tags` (labels) are tags. Source: Arize-ai/openinference, python/openinference-semantic-conventions/
src/openinference/semconv/trace/__init__.py (SpanAttributes, OpenInferenceSpanKindValues).
"""

from .base import Convention, Field
from .otel_genai import TAG_PREFIX

KIND = "openinference.span.kind"

OPENINFERENCE = Convention(
    name="openinference",
    source="Arize-ai/openinference: "
    "python/openinference-semantic-conventions/src/openinference/semconv/trace/__init__.py",
    scopes=("openinference.instrumentation",),
    markers=(KIND,),
    call_filter=(KIND, frozenset({"LLM", "EMBEDDING"})),
    kind_operations={"LLM": "chat", "EMBEDDING": "embeddings"},
    fields={
        Field.PROVIDER: ("llm.provider", "llm.system"),
        Field.REQUEST_MODEL: (
            "llm.request.model_name",
            "llm.invocation_parameters#model",
            "embedding.invocation_parameters#model",
        ),
        Field.RESPONSE_MODEL: ("llm.model_name", "llm.response.model_name", "embedding.model_name"),
        Field.INPUT_TOKENS: ("llm.token_count.prompt",),
        Field.OUTPUT_TOKENS: ("llm.token_count.completion",),
        Field.CACHE_READ_TOKENS: ("llm.token_count.prompt_details.cache_read",),
        Field.CACHE_WRITE_TOKENS: ("llm.token_count.prompt_details.cache_write",),
        Field.REASONING_TOKENS: ("llm.token_count.completion_details.reasoning",),
        Field.FINISH_REASONS: ("llm.finish_reason",),
        Field.ERROR_TYPE: ("error.type", "exception.type"),
        Field.USER_ID: ("user.id",),
        Field.SESSION_ID: ("session.id",),
    },
    provider_prefixes=(
        ("google", "gcp.gemini"),
        ("vertexai", "gcp.vertex_ai"),
        ("azure", "azure.ai.openai"),
        ("aws", "aws.bedrock"),
        ("mistralai", "mistral_ai"),
        ("xai", "x_ai"),
    ),
    tag_prefixes=(TAG_PREFIX,),
    tag_objects=("metadata",),
    tag_lists=("tag.tags",),
    content_attributes=frozenset({"input.value", "output.value", "llm.prompts"}),
    content_prefixes=(
        "llm.input_messages.",
        "llm.output_messages.",
        "llm.prompt_template.",
        "embedding.embeddings.",
        "retrieval.documents.",
    ),
)
