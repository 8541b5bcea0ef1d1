"""``record_call``: the span of a model call no instrumentor sees (another SDK, a raw HTTP call, a call made in
another process and reported here), the same GenAI span the instrumentors emit, so the collector prices, tags and
budgets it exactly as it does theirs."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

from ._budget import check_budget
from ._genai import Call, Usage
from ._processor import warn_if_unexported
from ._tags import current_tag_attributes
from .version import __version__

__all__ = ["RecordedCall", "record_call"]

_SCOPE = "spanmeter_instrumentation.record_call"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RecordedCall:
    """One model call's span. Made by ``record_call``: recorded at once when the call is described as done (token
    counts, an error, an end or a duration given), else a context manager that times its block and records on exit
    the usage set with ``set_usage`` (an exception leaving the block marks the call failed, and is not swallowed)."""

    def __init__(
        self,
        tracer_provider: Any,
        provider: str,
        model: str,
        operation: str,
        attributes: Mapping[str, Any],
    ) -> None:
        self.provider = provider
        self.model = model
        self.operation = operation
        self._attributes: dict[str, Any] = dict(attributes)
        self._usage = Usage()
        self._response: dict[str, Any] = {}
        self._tracer_provider = tracer_provider
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        self._call: Call | None = None
        self._token: Any = None

    def set_usage(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        """Token counts in OpenTelemetry's meaning: input includes cache reads and writes, output includes
        reasoning. Counts left out keep their earlier value."""
        given = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_tokens": cache_read_tokens,
            "cache_write_tokens": cache_write_tokens,
            "reasoning_tokens": reasoning_tokens,
        }
        for name, value in given.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"record_call: {name} must be an int >= 0, got {value!r}")
        usage = self._usage
        merged = Usage(
            input_tokens if input_tokens is not None else usage.input_tokens,
            output_tokens if output_tokens is not None else usage.output_tokens,
            cache_read_tokens if cache_read_tokens is not None else usage.cache_read_input_tokens,
            cache_write_tokens if cache_write_tokens is not None else usage.cache_creation_input_tokens,
            reasoning_tokens if reasoning_tokens is not None else usage.reasoning_output_tokens,
        )
        cached = (merged.cache_read_input_tokens or 0) + (merged.cache_creation_input_tokens or 0)
        if cached and cached > (merged.input_tokens or 0):
            raise ValueError(
                f"record_call: cache_read_tokens + cache_write_tokens ({cached}) exceed input_tokens "
                f"({merged.input_tokens or 0}); input_tokens counts every input token, cached ones included"
            )
        if (merged.reasoning_output_tokens or 0) > (merged.output_tokens or 0):
            raise ValueError(
                f"record_call: reasoning_tokens ({merged.reasoning_output_tokens}) exceed output_tokens "
                f"({merged.output_tokens or 0}); output_tokens counts reasoning tokens too"
            )
        self._usage = merged

    def set_response(
        self, *, model: str | None = None, id: str | None = None, finish_reasons: Sequence[str] | None = None
    ) -> None:
        """What the provider answered: the model that served the call (priced by it), its response id, why it
        stopped."""
        response = {
            ga.GEN_AI_RESPONSE_MODEL: model,
            ga.GEN_AI_RESPONSE_ID: id,
            ga.GEN_AI_RESPONSE_FINISH_REASONS: list(finish_reasons) if finish_reasons is not None else None,
        }
        self._response.update({k: v for k, v in response.items() if v is not None})

    @property
    def trace_id(self) -> str:
        """The span's trace id (hex), once started."""
        return format(self._span_context().trace_id, "032x")

    @property
    def span_id(self) -> str:
        return format(self._span_context().span_id, "016x")

    def _span_context(self) -> Any:
        if self._call is None:
            raise RuntimeError("record_call: the call's span has not started yet")
        return self._call.span.get_span_context()

    def _start(self, start_ns: int | None) -> Call:
        warn_if_unexported(self._tracer_provider)
        # Stamped here too, so a tracer provider without spanmeter's tag processor still carries the tags.
        attributes = {**current_tag_attributes(), **self._attributes}
        self._call = Call(self._tracer, self.operation, self.provider, self.model, attributes, start_ns)
        return self._call

    def _end(self, call: Call, error: BaseException | str | None, end_ns: int | None) -> None:
        attributes = {**self._response, **self._usage.attributes()}
        if error is None:
            call.finish(attributes, end_ns)
        else:
            call.fail(error, attributes, end_ns)

    def record(self, start_ns: int, end_ns: int, error: str | BaseException | None) -> RecordedCall:
        self._end(self._start(start_ns), error, end_ns)
        return self

    def __enter__(self) -> RecordedCall:
        if self._call is not None:
            raise TypeError(
                "record_call was given token counts, an error, an end or a duration, so it recorded the call "
                "at once; to time a block, call it without them and use set_usage() on the object `with` yields"
            )
        check_budget(self.provider, self.model, self._tracer)  # refuses the block like an instrumented call
        call = self._start(None)
        self._token = call.activate()  # spans made inside (an HTTP client's) nest under the call
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        assert self._call is not None
        Call.deactivate(self._token)
        self._end(self._call, error if isinstance(error, Exception) else None, None)


def record_call(
    *,
    provider: str,
    model: str,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    operation: str = ga.GenAiOperationNameValues.CHAT.value,
    response_model: str | None = None,
    response_id: str | None = None,
    finish_reasons: Sequence[str] | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    duration: timedelta | float | None = None,
    error: BaseException | str | None = None,
    attributes: Mapping[str, Any] | None = None,
    tracer_provider: Any = None,
) -> RecordedCall:
    """Records a model call as the GenAI span spanmeter's instrumentors emit, with the current ``tags(...)``.

    ``provider`` is ``gen_ai.provider.name`` (``openai``, ``anthropic``, ``gcp.gemini``, ``aws.bedrock``...),
    ``model`` the model asked for. Token counts are OpenTelemetry's: ``input_tokens`` includes cache reads and
    writes, ``output_tokens`` includes reasoning. Given token counts, ``error`` (an exception or an error type),
    ``end_time`` or ``duration`` (seconds or a timedelta), the call is recorded at once, ending now unless
    ``end_time``/``start_time`` say otherwise (naive datetimes are UTC). Without them, use it as a context
    manager: ``with record_call(provider=..., model=...) as call: ...; call.set_usage(...)``.
    """
    recorded = RecordedCall(tracer_provider, provider, model, operation, attributes or {})
    recorded.set_usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        reasoning_tokens=reasoning_tokens,
    )
    recorded.set_response(model=response_model, id=response_id, finish_reasons=finish_reasons)
    counts = (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens)
    done = any(v is not None for v in (*counts, error, end_time, duration))
    if not done:
        if start_time is not None:
            raise ValueError("record_call: start_time needs token counts, end_time or duration to record the call")
        return recorded
    start_ns, end_ns = _span_times(start_time, end_time, duration)
    return recorded.record(start_ns, end_ns, error)


def _span_times(start: datetime | None, end: datetime | None, duration: timedelta | float | None) -> tuple[int, int]:
    """(start, end) in ns since the epoch from any two of start, end and duration (end alone: no duration)."""
    if start is not None and end is not None and duration is not None:
        raise ValueError("record_call: give at most two of start_time, end_time and duration")
    length = _duration_ns(duration)
    if start is not None:
        start_ns = _ns("start_time", start)
        end_ns = _ns("end_time", end) if end is not None else start_ns + length if length is not None else None
        end_ns = end_ns if end_ns is not None else time.time_ns()
    else:
        end_ns = _ns("end_time", end) if end is not None else time.time_ns()
        start_ns = end_ns - (length or 0)
    if end_ns < start_ns:
        given = "end_time" if end is not None else "now (no end_time or duration)"
        raise ValueError(f"record_call: {given} is before start_time")
    return start_ns, end_ns


def _duration_ns(duration: timedelta | float | None) -> int | None:
    if duration is None:
        return None
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    # NaN is not below 0, and NaN or infinity would fail later without naming `duration`.
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise ValueError(f"record_call: duration must be seconds >= 0 or a timedelta, got {duration!r}")
    return round(seconds * 1e9)


def _ns(name: str, moment: datetime) -> int:
    if not isinstance(moment, datetime):
        raise ValueError(f"record_call: {name} must be a datetime, got {type(moment).__name__}")
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1) * 1000
