"""What every provider's span has in common: start, usage, first chunk, error, end."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

_logger = logging.getLogger(__name__)

MODEL_OPERATIONS = frozenset(
    {
        ga.GenAiOperationNameValues.CHAT.value,
        ga.GenAiOperationNameValues.TEXT_COMPLETION.value,
        ga.GenAiOperationNameValues.GENERATE_CONTENT.value,
        ga.GenAiOperationNameValues.EMBEDDINGS.value,
    }
)


@dataclass
class Usage:
    """Token counts in OTel's meaning: input includes cache reads and writes, output includes reasoning."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_output_tokens: int | None = None

    def attributes(self) -> dict[str, AttributeValue]:
        pairs = (
            (ga.GEN_AI_USAGE_INPUT_TOKENS, self.input_tokens),
            (ga.GEN_AI_USAGE_OUTPUT_TOKENS, self.output_tokens),
            (ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, self.cache_read_input_tokens),
            (ga.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, self.cache_creation_input_tokens),
            (ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, self.reasoning_output_tokens),
        )
        return {name: value for name, value in pairs if value is not None}


def as_int(value: Any) -> int | None:
    """An int token count, or None for anything else (bools, mocks, missing fields)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def given(value: Any) -> Any:
    """None for the SDKs' "not given" sentinels (``NOT_GIVEN``, ``omit``), the value otherwise."""
    return None if type(value).__name__ in ("NotGiven", "Omit", "_NotGiven") else value


def given_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's keyword arguments without the ones left at their sentinel."""
    return {key: value for key, value in kwargs.items() if given(value) is not None}


def field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``: SDKs hand back models, dicts or both."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def server_attributes(base_url: Any) -> dict[str, AttributeValue]:
    """``server.address``/``server.port`` from a client's base URL (str or httpx URL)."""
    try:
        parts = urlsplit(str(base_url))
    except ValueError:
        return {}
    if not parts.hostname:
        return {}
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {SERVER_ADDRESS: parts.hostname, SERVER_PORT: port}


def clean(attributes: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Drops unset values and SDK sentinels so only real attribute values reach the span."""
    result: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if isinstance(value, (str, bool, int, float)):
            result[key] = value
        elif isinstance(value, (list, tuple)) and value and _homogeneous(value):
            result[key] = list(value)
    return result


def _homogeneous(values: list[Any] | tuple[Any, ...]) -> bool:
    return all(isinstance(v, str) for v in values) or all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )


def in_model_span() -> bool:
    """Whether another instrumentation already has a model-call span open around this call."""
    span = trace.get_current_span()
    if not span.is_recording() or getattr(span, "kind", None) is not SpanKind.CLIENT:
        return False
    attributes = getattr(span, "attributes", None) or {}
    return attributes.get(ga.GEN_AI_OPERATION_NAME) in MODEL_OPERATIONS


class Call:
    """One model call's span, from the request to the end of the response (or stream)."""

    __slots__ = ("_ended", "_first_chunk_seen", "_start", "span")

    def __init__(
        self,
        tracer: Tracer,
        operation: str,
        provider: str,
        request_model: str | None,
        attributes: Mapping[str, Any],
        start_time: int | None = None,
    ) -> None:
        """`start_time` (ns since the epoch): when the call began, for calls recorded after the fact."""
        initial = {
            ga.GEN_AI_OPERATION_NAME: operation,
            ga.GEN_AI_PROVIDER_NAME: provider,
            ga.GEN_AI_REQUEST_MODEL: request_model,
            **attributes,
        }
        name = f"{operation} {request_model}" if request_model else operation
        self.span: Span = tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=clean(initial), start_time=start_time
        )
        self._start = time.monotonic()
        self._first_chunk_seen = False
        self._ended = False

    def activate(self) -> Any:
        """Makes the span current for the call, so HTTP client spans nest under it."""
        return otel_context.attach(trace.set_span_in_context(self.span))

    @staticmethod
    def deactivate(token: Any) -> None:
        otel_context.detach(token)

    def first_chunk(self) -> None:
        if not self._first_chunk_seen:
            self._first_chunk_seen = True
            self.span.set_attribute(ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, time.monotonic() - self._start)

    def finish(self, attributes: Mapping[str, Any] | None = None, end_time: int | None = None) -> None:
        """Records the response and ends the span (at `end_time`, ns, else now); later calls do nothing."""
        if self._ended:
            return
        self._ended = True
        try:
            if attributes:
                self.span.set_attributes(clean(attributes))
        except Exception:  # never break the caller over telemetry
            _logger.debug("spanmeter: could not record response attributes", exc_info=True)
        self.span.end(end_time=end_time)

    def fail(
        self, error: BaseException | str, attributes: Mapping[str, Any] | None = None, end_time: int | None = None
    ) -> None:
        """Records the error the caller is about to get (unchanged) and ends the span. A string is an error
        type with no exception (a call recorded after the fact)."""
        if self._ended:
            return
        error_type = error if isinstance(error, str) else type(error).__qualname__
        self.span.set_attribute(ERROR_TYPE, error_type)
        description = error_type if isinstance(error, str) else str(error) or error_type
        self.span.set_status(Status(StatusCode.ERROR, description))
        if not isinstance(error, str):
            self.span.record_exception(error)
        self.finish(attributes, end_time)

    @property
    def ended(self) -> bool:
        return self._ended
