"""OpenLIT: `openlit.init()`, scopes `openlit.instrumentation.*`.

It writes the current GenAI names, but its Anthropic (and Bedrock Anthropic) input count is
Anthropic's own: cache reads and writes are not included, so they are added here. It also sends a
client-side `gen_ai.usage.cost`, which stays an attribute: spanmeter prices calls itself.
Source: openlit/openlit, sdk/python/src/openlit/semcov/__init__.py and
sdk/python/src/openlit/instrumentation/anthropic/utils.py (openlit 1.45).
"""

from .base import Convention
from .otel_genai import OTEL_CONTENT, OTEL_CONTENT_PREFIXES, OTEL_FIELDS, TAG_PREFIX

OPENLIT = Convention(
    name="openlit",
    source="openlit/openlit: sdk/python/src/openlit/semcov/__init__.py (SemanticConvention)",
    scopes=("openlit",),
    fields=OTEL_FIELDS,
    input_excludes_cache=frozenset({"anthropic", "aws.bedrock"}),
    tag_prefixes=(TAG_PREFIX,),
    content_attributes=OTEL_CONTENT | {"gen_ai.content.prompt", "gen_ai.content.completion"},
    content_prefixes=OTEL_CONTENT_PREFIXES,
)
