"""OpenAI instrumentation: chat completions, Responses API and embeddings, sync and async.

Streams report exact usage: when the caller did not ask for it, the request asks
(``stream_options.include_usage``) and the extra usage-only chunk is kept from the caller.
Turn that off with ``OpenAIInstrumentor().instrument(stream_usage=False)`` or
``SPANMETER_OPENAI_STREAM_USAGE=false`` (for OpenAI-compatible servers that reject it).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

from .._instrumentor import SpanmeterInstrumentor, Target
from ._wrappers import plan_chat, plan_embeddings, plan_responses

__all__ = ["OpenAIInstrumentor"]

STREAM_USAGE_ENV = "SPANMETER_OPENAI_STREAM_USAGE"


class OpenAIInstrumentor(SpanmeterInstrumentor):
    """Spans for ``openai`` 1.x to 3.x model calls."""

    _scope = "spanmeter_instrumentation.openai"
    _dependencies = ("openai >= 1.0",)

    def _targets(self, **kwargs: Any) -> Sequence[Target]:
        stream_usage = kwargs.get("stream_usage")
        if stream_usage is None:
            stream_usage = os.environ.get(STREAM_USAGE_ENV, "true").strip().lower() not in ("0", "false", "no", "off")
        chat = functools.partial(plan_chat, inject_usage=bool(stream_usage))
        chat_module = "openai.resources.chat.completions"
        beta_chat_module = "openai.resources.beta.chat.completions"
        targets = [
            Target(chat_module, "Completions.create", chat),
            Target(chat_module, "AsyncCompletions.create", chat, is_async=True),
            Target(chat_module, "Completions.parse", chat),
            Target(chat_module, "AsyncCompletions.parse", chat, is_async=True),
            Target(beta_chat_module, "Completions.parse", chat),
            Target(beta_chat_module, "AsyncCompletions.parse", chat, is_async=True),
            Target("openai.resources.responses", "Responses.create", plan_responses),
            Target("openai.resources.responses", "AsyncResponses.create", plan_responses, is_async=True),
            Target("openai.resources.responses", "Responses.parse", plan_responses),
            Target("openai.resources.responses", "AsyncResponses.parse", plan_responses, is_async=True),
            Target("openai.resources.embeddings", "Embeddings.create", plan_embeddings),
            Target("openai.resources.embeddings", "AsyncEmbeddings.create", plan_embeddings, is_async=True),
        ]
        return targets
