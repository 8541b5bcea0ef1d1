"""The Vercel AI SDK's telemetry (`experimental_telemetry: { isEnabled: true }`), JavaScript, v4 to v6.

Every span carries `ai.operationId`. Only the provider-call spans (`ai.generateText.doGenerate`,
`ai.streamText.doStream`, `ai.generateObject.doGenerate`, `ai.streamObject.doStream`, `ai.embed.doEmbed`,
`ai.embedMany.doEmbed`) are model calls; the `ai.generateText`, `ai.streamText`, ... spans around them
repeat their usage summed over steps, and `ai.toolCall` spans run tools: none of them are rows.

Usage names by version, as emitted on the provider-call spans (checked with the real SDK, see
tests/conventions/test_vercel_ai.py):
- v4: `ai.usage.promptTokens` / `completionTokens`; cache and reasoning only inside
  `ai.response.providerMetadata` (JSON: `openai.cachedPromptTokens`, `openai.reasoningTokens`,
  `anthropic.cacheReadInputTokens`, `anthropic.cacheCreationInputTokens`).
- v5: generateText/generateObject spans keep `promptTokens` / `completionTokens` only; streamText spans
  write `inputTokens`, `outputTokens`, `reasoningTokens`, `cachedInputTokens`. Anthropic's cache counts
  are in providerMetadata (`anthropic.usage` is the raw API usage, `anthropic.cacheCreationInputTokens`).
- v6: `inputTokens` / `outputTokens` (totals), `inputTokenDetails.{noCacheTokens,cacheReadTokens,
  cacheWriteTokens}`, `outputTokenDetails.{textTokens,reasoningTokens}` (from 6.0.12x; 6.0.0 to 6.0.11x
  still wrote `promptTokens` / `completionTokens`, holding v6's totals).
- all: `gen_ai.usage.input_tokens` / `output_tokens` mirror the input/output counts; embeddings report
  only `ai.usage.tokens`.

Meaning: OpenAI's counts include cache reads and reasoning in every version. Anthropic's (and Bedrock's)
input count excludes cache tokens in v4/v5 and includes them in v6, under the same names; so the input is
read, where the span has it, as the uncached part (`inputTokenDetails.noCacheTokens`, else Anthropic's raw
`usage.input_tokens` in providerMetadata) plus cache reads and writes, and otherwise (v4) the input count
plus cache for the providers whose count excludes it. Telemetry metadata are tags; `userId` and
`sessionId` also fill user_id and session_id.

Source: vercel/ai, packages/ai/src/telemetry/assemble-operation-name.ts (`ai.operationId`),
packages/ai/src/telemetry/get-base-telemetry-attributes.ts (`ai.model.*`, `ai.telemetry.metadata.*`),
packages/ai/src/generate-text/generate-text.ts and stream-text.ts, packages/ai/src/embed/embed.ts and
embed-many.ts (`ai.usage.*`, `ai.response.*`, `ai.prompt*`), at tags ai@4.3.19, ai@5.0.x, ai@6.0.x;
providers' usage: packages/anthropic/src/anthropic-messages-language-model.ts (convertAnthropicMessagesUsage).
"""

from .base import Convention, Field
from .otel_genai import OTEL_CONTENT, OTEL_FIELDS, TAG_PREFIX

OPERATION_ID = "ai.operationId"
METADATA = "ai.telemetry.metadata."
_PM = "ai.response.providerMetadata"

MODEL_CALLS: dict[str, str] = {
    "ai.generateText.doGenerate": "chat",
    "ai.streamText.doStream": "chat",
    "ai.generateObject.doGenerate": "chat",
    "ai.streamObject.doStream": "chat",
    "ai.embed.doEmbed": "embeddings",
    "ai.embedMany.doEmbed": "embeddings",
}
"""Provider-call spans (`ai.operationId`) -> gen_ai.operation.name."""

VERCEL_AI = Convention(
    name="vercel_ai",
    source="vercel/ai: packages/ai/src/telemetry/assemble-operation-name.ts, "
    "packages/ai/src/telemetry/get-base-telemetry-attributes.ts, "
    "packages/ai/src/generate-text/{generate-text,stream-text}.ts, packages/ai/src/embed/{embed,embed-many}.ts "
    "(ai 4.3, 5.0, 6.0)",
    markers=(OPERATION_ID,),
    call_filter=(OPERATION_ID, frozenset(MODEL_CALLS)),
    kind_operations=MODEL_CALLS,
    fields={
        **OTEL_FIELDS,
        Field.PROVIDER: ("ai.model.provider", *OTEL_FIELDS[Field.PROVIDER]),
        Field.REQUEST_MODEL: ("ai.model.id", *OTEL_FIELDS[Field.REQUEST_MODEL]),
        Field.RESPONSE_MODEL: ("ai.response.model", *OTEL_FIELDS[Field.RESPONSE_MODEL]),
        Field.INPUT_TOKENS: (
            "ai.usage.inputTokens",
            "ai.usage.promptTokens",
            *OTEL_FIELDS[Field.INPUT_TOKENS],
            "ai.usage.tokens",  # embeddings
        ),
        Field.UNCACHED_INPUT_TOKENS: (
            "ai.usage.inputTokenDetails.noCacheTokens",
            f"{_PM}#anthropic.usage.input_tokens",
        ),
        Field.OUTPUT_TOKENS: ("ai.usage.outputTokens", "ai.usage.completionTokens", *OTEL_FIELDS[Field.OUTPUT_TOKENS]),
        Field.CACHE_READ_TOKENS: (
            "ai.usage.inputTokenDetails.cacheReadTokens",
            "ai.usage.cachedInputTokens",
            *OTEL_FIELDS[Field.CACHE_READ_TOKENS],
            f"{_PM}#openai.cachedPromptTokens",
            f"{_PM}#anthropic.usage.cache_read_input_tokens",
            f"{_PM}#anthropic.cacheReadInputTokens",
            f"{_PM}#bedrock.usage.cacheReadInputTokens",
        ),
        Field.CACHE_WRITE_TOKENS: (
            "ai.usage.inputTokenDetails.cacheWriteTokens",
            *OTEL_FIELDS[Field.CACHE_WRITE_TOKENS],
            f"{_PM}#anthropic.usage.cache_creation_input_tokens",
            f"{_PM}#anthropic.cacheCreationInputTokens",
            f"{_PM}#bedrock.usage.cacheWriteInputTokens",
        ),
        Field.REASONING_TOKENS: (
            "ai.usage.outputTokenDetails.reasoningTokens",
            "ai.usage.reasoningTokens",
            *OTEL_FIELDS[Field.REASONING_TOKENS],
            f"{_PM}#openai.reasoningTokens",
        ),
        Field.FINISH_REASONS: (*OTEL_FIELDS[Field.FINISH_REASONS], "ai.response.finishReason"),
        Field.RESPONSE_ID: (*OTEL_FIELDS[Field.RESPONSE_ID], "ai.response.id"),
        Field.USER_ID: (f"{METADATA}userId", *OTEL_FIELDS[Field.USER_ID]),
        Field.SESSION_ID: (f"{METADATA}sessionId", *OTEL_FIELDS[Field.SESSION_ID]),
    },
    # `ai.model.provider` is "<provider>.<api>" (openai.chat, openai.responses, anthropic.messages,
    # google.generative-ai, google.vertex.chat, amazon-bedrock, azure-openai.chat, xai.chat, mistral.chat...).
    provider_prefixes=(
        ("openai.", "openai"),
        ("azure", "azure.ai.openai"),
        ("anthropic.", "anthropic"),
        ("google.vertex", "gcp.vertex_ai"),
        ("vertex", "gcp.vertex_ai"),
        ("google.", "gcp.gemini"),
        ("amazon-bedrock", "aws.bedrock"),
        ("bedrock", "aws.bedrock"),
        ("xai.", "x_ai"),
        ("mistral.", "mistral_ai"),
        ("groq.", "groq"),
        ("deepseek.", "deepseek"),
        ("cohere.", "cohere"),
        ("perplexity", "perplexity"),
        ("togetherai.", "together"),
        ("fireworks.", "fireworks"),
        ("cerebras.", "cerebras"),
        ("openrouter", "openrouter"),
        ("ollama", "ollama"),
    ),
    # v4/v5 input counts without cache; v6 spans carry the uncached count, so this does not apply to them.
    input_excludes_cache=frozenset({"anthropic", "aws.bedrock"}),
    tag_prefixes=(METADATA, TAG_PREFIX),
    content_attributes=OTEL_CONTENT
    | {
        "ai.prompt",
        "ai.prompt.messages",
        "ai.prompt.tools",
        "ai.response.text",
        "ai.response.reasoning",
        "ai.response.toolCalls",
        "ai.response.object",
        "ai.toolCall.args",
        "ai.toolCall.result",
        "ai.value",
        "ai.values",
        "ai.embedding",
        "ai.embeddings",
        "ai.documents",
        "ai.ranking",
    },
)
