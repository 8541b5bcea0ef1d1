"""Logfire and Pydantic AI: scopes `logfire.*` (`logfire.instrument_openai()`...) and `pydantic-ai`.

They write the current GenAI names; details missing from them (OpenAI reasoning tokens) are in the
provider's raw usage, `gen_ai.usage.raw` (JSON). Finish reasons arrive as JSON text. Pydantic AI's
agent-run spans (`invoke_agent`) sum their model calls: rows, but not counted again.
Source: pydantic/logfire, logfire/_internal/integrations/llm_providers/ (openai.py, anthropic.py,
semconv.py); pydantic/pydantic-ai, pydantic_ai_slim/pydantic_ai/models/instrumented.py.
"""

from .base import Convention, Field
from .otel_genai import OTEL_CONTENT, OTEL_CONTENT_PREFIXES, OTEL_FIELDS, TAG_PREFIX

_RAW = "gen_ai.usage.raw"

LOGFIRE = Convention(
    name="logfire",
    source="pydantic/logfire: logfire/_internal/integrations/llm_providers/semconv.py; "
    "pydantic/pydantic-ai: pydantic_ai_slim/pydantic_ai/models/instrumented.py",
    scopes=("logfire", "pydantic-ai", "pydantic_ai"),
    fields={
        **OTEL_FIELDS,
        Field.REASONING_TOKENS: (
            *OTEL_FIELDS[Field.REASONING_TOKENS],
            "gen_ai.usage.details.reasoning_tokens",  # Pydantic AI
            f"{_RAW}#completion_tokens_details.reasoning_tokens",
            f"{_RAW}#output_tokens_details.reasoning_tokens",
        ),
    },
    tag_prefixes=(TAG_PREFIX,),
    content_attributes=OTEL_CONTENT
    | {"request_data", "response_data", "all_messages_events", "events", "pydantic_ai.all_messages", "final_result"},
    content_prefixes=OTEL_CONTENT_PREFIXES,
)
