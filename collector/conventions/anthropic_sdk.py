"""The Anthropic Python SDK's own tracing (anthropic 2.x, on by default; `ANTHROPIC_OPEN_TELEMETRY`).

Spans `anthropic.messages.create`, scope `com.anthropic.sdk.python`. Token counts are in OTel's
meaning (input includes cache); cache writes are named `gen_ai.usage.cache_write.input_tokens` and the
stop reason `anthropic.message.stop_reason`. Source: anthropic-sdk-python, src/anthropic/lib/_otel/
(as installed: anthropic 2.14.0). Other SDKs that trace themselves the same way get a table like it.
"""

from .base import Convention, Field
from .otel_genai import OTEL_CONTENT, OTEL_FIELDS, TAG_PREFIX

ANTHROPIC_SDK = Convention(
    name="anthropic_sdk",
    source="anthropics/anthropic-sdk-python: src/anthropic/lib/_otel (anthropic 2.x)",
    scopes=("com.anthropic.sdk",),
    fields={
        **OTEL_FIELDS,
        Field.CACHE_WRITE_TOKENS: ("gen_ai.usage.cache_write.input_tokens", *OTEL_FIELDS[Field.CACHE_WRITE_TOKENS]),
        Field.FINISH_REASONS: ("anthropic.message.stop_reason", *OTEL_FIELDS[Field.FINISH_REASONS]),
    },
    default_provider="anthropic",
    tag_prefixes=(TAG_PREFIX,),
    content_attributes=OTEL_CONTENT,
)
