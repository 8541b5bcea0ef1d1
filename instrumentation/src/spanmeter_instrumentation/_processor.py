"""The span processor that stamps the current tags on every span, and its installation."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from ._request import request_tags
from ._server_span import ServerSpans, is_genai
from ._tags import attribute_name, baggage_enabled, baggage_tag_attributes, current_tag_attributes

_logger = logging.getLogger(__name__)

try:  # the SDK is the app's choice: without it there is nothing to stamp
    from opentelemetry.sdk.trace import SpanProcessor as _SpanProcessorBase
except ImportError:  # pragma: no cover - exercised only without opentelemetry-sdk
    _SpanProcessorBase = object  # type: ignore[assignment,misc]

OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
_INSTALLED_MARK = "_spanmeter_tag_processor"
_install_lock = threading.Lock()
# Tracer providers already judged by warn_if_unexported: each gets one warning at most.
_judged: weakref.WeakSet[Any] = weakref.WeakSet()
_judged_lock = threading.Lock()


class TagSpanProcessor(_SpanProcessorBase):  # type: ignore[misc,valid-type]
    """Stamps ``spanmeter_instrumentation.tags`` on each span as it starts, and the request's
    route and user on each GenAI span.

    The request's come from a spanmeter middleware, else (``read_server_span``, default on) from
    ``http.route`` and ``user.id`` on the request's server span in this process. ``read_baggage``
    (default: ``SPANMETER_TAGS_BAGGAGE``) also stamps tags that arrived as W3C baggage under our own
    names. Precedence, lowest first: baggage, server span, middleware, ``tags()``; none of the request's
    replaces an attribute the span started with.
    """

    def __init__(self, read_baggage: bool | None = None, read_server_span: bool = True) -> None:
        self._read_baggage = baggage_enabled() if read_baggage is None else read_baggage
        self._server_spans = ServerSpans() if read_server_span else None

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        attributes = current_tag_attributes()
        request_span = None if self._server_spans is None else self._server_spans.on_start(span, parent_context)
        started_with = getattr(span, "attributes", None) or {}
        from_request = self._request_attributes(started_with, request_span) if is_genai(started_with) else {}
        if from_request:
            attributes = {**from_request, **attributes}
        if self._read_baggage:
            from_baggage = baggage_tag_attributes(parent_context)
            if from_baggage:
                attributes = {**from_baggage, **attributes}
        if attributes:
            span.set_attributes(attributes)

    @staticmethod
    def _request_attributes(started_with: Mapping[str, Any], request_span: Any) -> dict[str, str]:
        found = ServerSpans.tags(request_span) if request_span is not None else {}
        found.update(request_tags())
        named = ((attribute_name(key), value) for key, value in found.items())
        return {name: value for name, value in named if name not in started_with}

    def on_end(self, span: Any) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def install_tag_processor(tracer_provider: Any = None) -> bool:
    """Adds one ``TagSpanProcessor`` to ``tracer_provider`` (default: the global one).

    Idempotent. Returns whether the provider has the processor, which needs an SDK
    ``TracerProvider``; the API's no-op or proxy provider records nothing to stamp.
    """
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    add = getattr(provider, "add_span_processor", None)
    if add is None:
        _logger.debug("spanmeter tags: %r cannot take span processors", provider)
        return False
    with _install_lock:
        if getattr(provider, _INSTALLED_MARK, False):
            return True
        add(TagSpanProcessor())
        setattr(provider, _INSTALLED_MARK, True)
    return True


def post_instrument() -> None:
    """``opentelemetry_post_instrument`` hook for ``opentelemetry-instrument``.

    It runs after any distro configured the SDK, so the tag processor joins that provider.
    With no distro installed nothing configures the SDK; if the environment names a trace
    exporter (``OTEL_TRACES_EXPORTER``), configure it the way opentelemetry-distro does,
    so ``opentelemetry-instrument`` exports with this package alone. Without that variable
    the app may set up its own provider, which we must not pre-empt.
    """
    if install_tag_processor():
        return
    if not os.environ.get(OTEL_TRACES_EXPORTER, "").strip() or _sdk_configured():
        return
    try:
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator
    except ImportError:
        _logger.debug("spanmeter: opentelemetry-sdk is not installed; nothing to configure")
        return
    _OTelSDKConfigurator().configure()
    install_tag_processor()


def _sdk_configured() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def warn_if_unexported(tracer_provider: Any = None) -> None:
    """Logs one warning per tracer provider (default: the global one) whose spans no exporter will send.

    Without it a setup that exports nothing fails silently: ``opentelemetry-instrument`` with
    neither opentelemetry-distro nor ``OTEL_TRACES_EXPORTER`` leaves the API's no-op provider, and
    an SDK ``TracerProvider`` nobody gave a span processor records spans only to drop them.
    ``OTEL_TRACES_EXPORTER=none`` and ``OTEL_SDK_DISABLED=true`` say the user wants that: no warning.
    """
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    with _judged_lock:
        try:
            if provider in _judged:
                return
            _judged.add(provider)
        except TypeError:  # not weakly referenceable: no warning rather than a leak
            return
    reason = _unexported_reason(provider)
    if reason is not None:
        _logger.warning(
            "spanmeter: %s, so no exporter will send this process's GenAI spans. Run the app under "
            "opentelemetry-instrument with OTEL_TRACES_EXPORTER=otlp (opentelemetry-sdk and "
            "opentelemetry-exporter-otlp installed), or set up a TracerProvider with an exporter before the first call",
            reason,
        )


def _unexported_reason(provider: Any) -> str | None:
    if os.environ.get(OTEL_TRACES_EXPORTER, "").strip().lower() == "none":
        return None
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return "no OpenTelemetry SDK is set up (the tracer provider is the API's no-op one)"
    # The SDK keeps its span processors here (opentelemetry-sdk 1.x); another provider is not judged.
    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", None)
    if isinstance(processors, tuple) and all(isinstance(p, TagSpanProcessor) for p in processors):
        return "the tracer provider has no span processor (and so no exporter)"
    return None
