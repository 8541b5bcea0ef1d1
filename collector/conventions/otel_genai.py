"""The OpenTelemetry GenAI semantic conventions, current names first, then deprecated ones.

Names come from `opentelemetry-semantic-conventions` (gen_ai_attributes); the spec lives in
open-telemetry/semantic-conventions-genai. Deprecated: `gen_ai.system` (now `gen_ai.provider.name`),
`gen_ai.usage.prompt_tokens` / `completion_tokens` (now `input_tokens` / `output_tokens`).
"""

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.attributes import session_attributes, user_attributes
from opentelemetry.semconv.attributes import error_attributes as err

from .base import Convention, Field

TAG_PREFIX = "spanmeter.tag."
"""Where spanmeter's instrumentation puts tags other than user.id and session.id."""

OTEL_FIELDS: dict[Field, tuple[str, ...]] = {
    Field.OPERATION: (gen_ai.GEN_AI_OPERATION_NAME,),
    Field.PROVIDER: (gen_ai.GEN_AI_PROVIDER_NAME, gen_ai.GEN_AI_SYSTEM),
    Field.REQUEST_MODEL: (gen_ai.GEN_AI_REQUEST_MODEL,),
    Field.RESPONSE_MODEL: (gen_ai.GEN_AI_RESPONSE_MODEL,),
    Field.INPUT_TOKENS: (gen_ai.GEN_AI_USAGE_INPUT_TOKENS, gen_ai.GEN_AI_USAGE_PROMPT_TOKENS),
    Field.OUTPUT_TOKENS: (gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS, gen_ai.GEN_AI_USAGE_COMPLETION_TOKENS),
    Field.CACHE_READ_TOKENS: (gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,),
    Field.CACHE_WRITE_TOKENS: (gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,),
    Field.REASONING_TOKENS: (gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,),
    Field.FINISH_REASONS: (gen_ai.GEN_AI_RESPONSE_FINISH_REASONS,),
    Field.ERROR_TYPE: (err.ERROR_TYPE,),
    Field.USER_ID: (user_attributes.USER_ID,),
    Field.SESSION_ID: (session_attributes.SESSION_ID,),
    Field.CONVERSATION_ID: (gen_ai.GEN_AI_CONVERSATION_ID,),
    Field.RESPONSE_ID: (gen_ai.GEN_AI_RESPONSE_ID,),
}
"""The current names, deprecated ones after them: the base other tables extend."""

OTEL_CONTENT = frozenset(
    {
        gen_ai.GEN_AI_INPUT_MESSAGES,
        gen_ai.GEN_AI_OUTPUT_MESSAGES,
        gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS,
        gen_ai.GEN_AI_PROMPT,
        gen_ai.GEN_AI_COMPLETION,
        gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS,
        gen_ai.GEN_AI_TOOL_CALL_RESULT,
        gen_ai.GEN_AI_RETRIEVAL_QUERY_TEXT,
        gen_ai.GEN_AI_RETRIEVAL_DOCUMENTS,
    }
)
# Indexed forms used by older instrumentations: gen_ai.prompt.0.content, gen_ai.completion.0.content.
OTEL_CONTENT_PREFIXES = (gen_ai.GEN_AI_PROMPT + ".", gen_ai.GEN_AI_COMPLETION + ".")

OTEL_GENAI = Convention(
    name="otel_genai",
    source="open-telemetry/semantic-conventions-genai: model/gen-ai/registry.yaml "
    "(as generated into opentelemetry-semantic-conventions: semconv/_incubating/attributes/gen_ai_attributes.py); "
    "also what the official contrib instrumentations emit (openai-v2, google-genai, default and "
    "gen_ai_latest_experimental modes)",
    markers=(gen_ai.GEN_AI_OPERATION_NAME, gen_ai.GEN_AI_PROVIDER_NAME, gen_ai.GEN_AI_SYSTEM),
    fields=OTEL_FIELDS,
    tag_prefixes=(TAG_PREFIX,),
    content_attributes=OTEL_CONTENT,
    content_prefixes=OTEL_CONTENT_PREFIXES,
)
