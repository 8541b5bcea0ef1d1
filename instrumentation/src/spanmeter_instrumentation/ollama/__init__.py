"""Ollama instrumentation (``ollama``): chat, generate and embed, sync and async, streaming.

``prompt_eval_count`` becomes input tokens and ``eval_count`` output tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._instrumentor import SpanmeterInstrumentor, Target
from ._wrappers import PROVIDER, plan_chat, plan_embed, plan_generate

__all__ = ["PROVIDER", "OllamaInstrumentor"]

_MODULE = "ollama._client"


class OllamaInstrumentor(SpanmeterInstrumentor):
    """Spans for ``ollama`` client calls."""

    _scope = "spanmeter_instrumentation.ollama"
    _dependencies = ("ollama >= 0.4",)

    def _targets(self, **kwargs: Any) -> Sequence[Target]:
        return [
            Target(_MODULE, "Client.chat", plan_chat),
            Target(_MODULE, "AsyncClient.chat", plan_chat, is_async=True),
            Target(_MODULE, "Client.generate", plan_generate),
            Target(_MODULE, "AsyncClient.generate", plan_generate, is_async=True),
            Target(_MODULE, "Client.embed", plan_embed),
            Target(_MODULE, "AsyncClient.embed", plan_embed, is_async=True),
        ]
