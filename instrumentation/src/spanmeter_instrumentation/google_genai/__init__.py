"""Google GenAI instrumentation (``google-genai``): generate_content, its stream, embed_content.

Usage counts cached content (``cache_read``) and thinking tokens (``reasoning``, also
added to output tokens, as Gemini bills them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._instrumentor import SpanmeterInstrumentor, Target
from ._wrappers import plan_embed, plan_generate, plan_generate_stream

__all__ = ["GoogleGenAIInstrumentor"]

_MODULE = "google.genai.models"


class GoogleGenAIInstrumentor(SpanmeterInstrumentor):
    """Spans for every model request the ``google-genai`` client makes."""

    _scope = "spanmeter_instrumentation.google_genai"
    _dependencies = ("google-genai >= 1.0",)

    def _targets(self, **kwargs: Any) -> Sequence[Target]:
        return [
            Target(_MODULE, "Models._generate_content", plan_generate),
            Target(_MODULE, "AsyncModels._generate_content", plan_generate, is_async=True),
            Target(_MODULE, "Models._generate_content_stream", plan_generate_stream),
            Target(_MODULE, "AsyncModels._generate_content_stream", plan_generate_stream, is_async=True),
            Target(_MODULE, "Models._embed_content", plan_embed),
            Target(_MODULE, "AsyncModels._embed_content", plan_embed, is_async=True),
        ]
