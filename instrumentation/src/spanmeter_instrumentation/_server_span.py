"""The request's server span of each span in this process, for attribution without a middleware.

A GenAI span's parent context holds its parent span, not the ancestors above it; so each span's
request span is remembered when it starts: the nearest SERVER-kind ancestor in this process (the
span an HTTP server instrumentation such as opentelemetry-instrumentation-asgi made), else the local
root. The map holds spans weakly: a span no one refers to any more leaves it.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes.user_attributes import USER_ID
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from opentelemetry.trace import SpanKind

from ._request import ROUTE_TAG, USER_TAG

_GENAI_MARKS = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system")
"""A span that starts with one of these is a GenAI span (ours, another instrumentation's, an SDK's own)."""


def is_genai(attributes: Mapping[str, Any]) -> bool:
    """Whether a span that starts with ``attributes`` is a GenAI span."""
    return any(mark in attributes for mark in _GENAI_MARKS)


_ITSELF = object()
"""The value of a span that is its own request span (a SERVER span, or a local root)."""


class ServerSpans:
    """Each live span's request span."""

    def __init__(self) -> None:
        self._request_span: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def on_start(self, span: Any, parent_context: otel_context.Context | None) -> Any:
        """Remembers ``span``'s request span and returns its parent's (None for a local root)."""
        parent = trace.get_current_span(parent_context)
        inherited = None
        if hasattr(parent, "kind"):  # an SDK span of this process (a remote or invalid parent is a NonRecordingSpan)
            try:
                found = self._request_span.get(parent, _ITSELF)
            except TypeError:  # not weakly referenceable, so never remembered: the root as far as we know
                found = _ITSELF
            inherited = parent if found is _ITSELF else found
        itself = getattr(span, "kind", None) is SpanKind.SERVER or inherited is None
        with contextlib.suppress(TypeError):  # not weakly referenceable: its children take it for their root
            # A span is never its own value: the dict holds values strongly, which would keep the key alive.
            self._request_span[span] = _ITSELF if itself else inherited
        return inherited

    @staticmethod
    def tags(request_span: Any) -> dict[str, str]:
        """``route`` and ``user_id`` from the request span's ``http.route`` and ``user.id``, as set so far."""
        attributes = getattr(request_span, "attributes", None) or {}
        found: dict[str, str] = {}
        for attribute, tag in ((HTTP_ROUTE, ROUTE_TAG), (USER_ID, USER_TAG)):
            value = attributes.get(attribute)
            if value is not None and str(value):
                found[tag] = str(value)
        return found
