"""Anthropic instrumentation: ``messages.create`` (sync, async, ``stream=True``), ``parse`` and ``stream()``.

anthropic 2.x traces its own calls with OpenTelemetry by default; where it does, this
instrumentor stands aside per client, so each call keeps exactly one span (the tag
processor still stamps tags on the SDK's span). Set ``ANTHROPIC_OPEN_TELEMETRY=false``
to get this instrumentation's spans instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._instrumentor import SpanmeterInstrumentor, Target
from ._wrappers import plan_create, plan_stream

__all__ = ["AnthropicInstrumentor"]

_MODULE = "anthropic.resources.messages"


class AnthropicInstrumentor(SpanmeterInstrumentor):
    """Spans for ``anthropic`` message calls, with cache tokens counted in OTel's meaning."""

    _scope = "spanmeter_instrumentation.anthropic"
    _dependencies = ("anthropic >= 0.30",)

    def _targets(self, **kwargs: Any) -> Sequence[Target]:
        return [
            Target(_MODULE, "Messages.create", plan_create),
            Target(_MODULE, "AsyncMessages.create", plan_create, is_async=True),
            Target(_MODULE, "Messages.parse", plan_create),
            Target(_MODULE, "AsyncMessages.parse", plan_create, is_async=True),
            Target(_MODULE, "Messages.stream", plan_stream),
            Target(_MODULE, "AsyncMessages.stream", plan_stream),
        ]
