"""`POST /v1/calls`: LLM calls as flat JSON, for shell scripts and languages without GenAI instrumentation.

Each call becomes the OTLP span spanmeter's instrumentation emits for it (the GenAI semantic conventions'
attribute names, the tags under the names `tags()` gives them), and the request goes to the traces pipeline as
an OTLP/HTTP export does: durable in the write-ahead log before the answer, then read, priced, deduplicated,
tagged and budgeted by the same code as every span.

A body is taken whole or refused whole (400 naming each bad call's index and field), as an OTLP request is
decoded whole: the sender fixes the body and sends it again, and no call of it was stored meanwhile, so none is
stored twice. A call may carry an `id` of the sender's: its span id is derived from it, so a body sent again
soon after a lost answer is recognised as a resend (the collector's rule for the same trace and span id, over
the calls it stored recently).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Span, Status
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv._incubating.attributes import session_attributes, user_attributes
from opentelemetry.semconv._incubating.attributes.deployment_attributes import DEPLOYMENT_ENVIRONMENT_NAME
from opentelemetry.semconv.attributes import error_attributes, service_attributes
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, model_validator
from pydantic_core import from_json

from ..auth import PRINCIPAL, AuthError, KeyAuthenticator, require_sender
from ..conventions.otel_genai import TAG_PREFIX
from ..keys import Principal
from ..pipeline import Backpressure, TracesPipeline
from ..processors.genai import PROJECT_ATTRIBUTE
from ..telemetry import CollectorMetrics
from .config import HttpProtocolConfig
from .otlp_codec import BadRequest, BodyTooLarge, gunzip, split_traces

__all__ = ["CallIn", "CallsJsonReceiver", "CallsRefused", "calls_request", "parse_calls"]

PATH = "/v1/calls"
SCOPE = "spanmeter.calls_json"
"""The instrumentation scope of the spans made from JSON calls, so they can be told apart."""
JSON = "application/json"
_MIB = 1024 * 1024
_MAX_ERRORS = 20
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # the collector refuses spans starting before (README: Limits)
_LATEST = datetime(2262, 1, 1, tzinfo=UTC)  # past it, nanoseconds since the epoch overflow int64
_MAX_DURATION_MS = 366 * 86_400_000
_MAX_COUNT = 10**18  # what processors.genai.max_tokens_per_call may be at most
_SPECIAL_TAGS = {"user_id": user_attributes.USER_ID, "session_id": session_attributes.SESSION_ID}

TokenCount = Annotated[int, Field(strict=True, ge=0, le=_MAX_COUNT)]
Text = Annotated[str, StringConstraints(min_length=1)]
HexId = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]+$")]


class CallIn(BaseModel):
    """One call. Token counts are OpenTelemetry's: input includes cache reads and writes, output includes
    reasoning. Times: ISO 8601 (UTC without an offset) or seconds since the epoch; any two of start_time,
    end_time and duration_ms (end_time alone: duration 0; none: the call ends when it arrives)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Text
    model: Text
    operation: Text = ga.GenAiOperationNameValues.CHAT.value
    response_model: Text | None = None
    response_id: Text | None = None
    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    cache_read_tokens: TokenCount | None = None
    cache_write_tokens: TokenCount | None = None
    reasoning_tokens: TokenCount | None = None
    finish_reasons: list[str] | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration_ms: Annotated[float, Field(ge=0, le=_MAX_DURATION_MS, allow_inf_nan=False)] | None = None
    status: Literal["ok", "error"] | None = None
    error: Text | None = None
    service: Text | None = None
    project: Text | None = None
    environment: Text | None = None
    tags: dict[Text, str] = Field(default_factory=dict)
    id: Text | None = None
    trace_id: Annotated[HexId, StringConstraints(min_length=32, max_length=32)] | None = None
    parent_span_id: Annotated[HexId, StringConstraints(min_length=16, max_length=16)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CallIn:
        cached = (self.cache_read_tokens or 0) + (self.cache_write_tokens or 0)
        if cached > (self.input_tokens or 0):
            raise ValueError(
                f"cache_read_tokens + cache_write_tokens ({cached}) exceed input_tokens ({self.input_tokens or 0}); "
                "input_tokens counts every input token, cached ones included"
            )
        if (self.reasoning_tokens or 0) > (self.output_tokens or 0):
            raise ValueError(
                f"reasoning_tokens ({self.reasoning_tokens}) exceed output_tokens ({self.output_tokens or 0}); "
                "output_tokens counts reasoning tokens too"
            )
        if None not in (self.start_time, self.end_time, self.duration_ms):
            raise ValueError("give at most two of start_time, end_time and duration_ms")
        if self.status == "ok" and self.error is not None:
            raise ValueError('status "ok" with an error: leave status out, or set it to "error"')
        for name in ("start_time", "end_time"):
            moment = getattr(self, name)
            if moment is not None and not _EARLIEST <= _utc(moment) < _LATEST:
                raise ValueError(f"{name} is not between {_EARLIEST:%Y-%m-%d} and {_LATEST:%Y-%m-%d}")
        if self.start_time is not None and self.end_time is not None and _utc(self.end_time) < _utc(self.start_time):
            raise ValueError("end_time is before start_time")
        return self

    def times(self, received_ns: int) -> tuple[int, int]:
        """(start, end) in ns since the epoch."""
        length = round(self.duration_ms * 1_000_000) if self.duration_ms is not None else None
        if self.start_time is not None:
            start = _ns(self.start_time)
            if self.end_time is not None:
                return start, _ns(self.end_time)
            return start, start + length if length is not None else max(start, received_ns)
        end = _ns(self.end_time) if self.end_time is not None else received_ns
        return end - (length or 0), end

    def failed(self) -> bool:
        return self.status == "error" or self.error is not None


_CALLS = TypeAdapter(list[CallIn])


class CallsRefused(ValueError):
    """A body that is not one call or a list of calls; `problems` name each bad call's index (None for a single
    call) and field."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        super().__init__("; ".join(_describe(problem) for problem in problems))


def parse_calls(body: bytes) -> list[CallIn]:
    """The calls of a body holding one call object or a list of them; raises CallsRefused naming what is wrong."""
    try:
        data = from_json(body)
    except ValueError as exc:
        raise CallsRefused([{"index": None, "field": "", "message": f"the body is not JSON: {exc}"}]) from None
    single = isinstance(data, dict)
    if not single and not isinstance(data, list):
        raise CallsRefused([{"index": None, "field": "", "message": "expected a call object or a list of them"}])
    try:
        return _CALLS.validate_python([data] if single else data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False)[:_MAX_ERRORS]:
            index, *path = error["loc"]
            message = error["msg"].removeprefix("Value error, ")
            field = ".".join(str(part) for part in path)
            problems.append({"index": None if single else index, "field": field, "message": message})
        raise CallsRefused(problems) from None


def _describe(problem: dict[str, Any]) -> str:
    where = [] if problem["index"] is None else [f"call {problem['index']}"]
    where += [problem["field"]] if problem["field"] else []
    return ": ".join([*where, problem["message"]])


def calls_request(
    calls: Sequence[CallIn], received_ns: int, key_project: str = ""
) -> tuple[ExportTraceServiceRequest, list[tuple[bytes, bytes]]]:
    """The OTLP request of these calls (one resource per service, project and environment), and each call's
    (trace id, span id) in the calls' order. Built in place: constructing messages and copying them in costs
    several times more."""
    request = ExportTraceServiceRequest()
    ids: list[tuple[bytes, bytes]] = []
    scopes: dict[tuple[str | None, str | None, str | None], ScopeSpans] = {}
    for call in calls:
        identity = (call.service, call.project, call.environment)
        scope = scopes.get(identity)
        if scope is None:
            resource_spans = request.resource_spans.add()
            _set_attributes(
                resource_spans.resource.attributes,
                {
                    service_attributes.SERVICE_NAME: call.service,
                    PROJECT_ATTRIBUTE: call.project,
                    DEPLOYMENT_ENVIRONMENT_NAME: call.environment,
                },
            )
            scope = scopes[identity] = resource_spans.scope_spans.add()
            scope.scope.name = SCOPE
        span = scope.spans.add()
        _fill_span(span, call, received_ns, call.project or key_project)
        ids.append((span.trace_id, span.span_id))
    return request, ids


def _fill_span(span: Span, call: CallIn, received_ns: int, project: str) -> None:
    span.trace_id, span.span_id = _ids(call, project)
    if call.parent_span_id:
        span.parent_span_id = bytes.fromhex(call.parent_span_id)
    span.name = f"{call.operation} {call.model}"
    span.kind = Span.SPAN_KIND_CLIENT
    span.start_time_unix_nano, span.end_time_unix_nano = call.times(received_ns)
    attributes: dict[str, Any] = {
        ga.GEN_AI_OPERATION_NAME: call.operation,
        ga.GEN_AI_PROVIDER_NAME: call.provider,
        ga.GEN_AI_REQUEST_MODEL: call.model,
        ga.GEN_AI_RESPONSE_MODEL: call.response_model,
        ga.GEN_AI_RESPONSE_ID: call.response_id,
        ga.GEN_AI_USAGE_INPUT_TOKENS: call.input_tokens,
        ga.GEN_AI_USAGE_OUTPUT_TOKENS: call.output_tokens,
        ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: call.cache_read_tokens,
        ga.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: call.cache_write_tokens,
        ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: call.reasoning_tokens,
        ga.GEN_AI_RESPONSE_FINISH_REASONS: call.finish_reasons,
        # As the instrumentation's tags(): user_id and session_id under their conventions' names.
        **{_SPECIAL_TAGS.get(key, TAG_PREFIX + key): value for key, value in call.tags.items()},
    }
    if call.failed():
        error_type = call.error or "_OTHER"  # the conventions' value when the error has no type
        attributes[error_attributes.ERROR_TYPE] = error_type
        span.status.code = Status.STATUS_CODE_ERROR
        span.status.message = error_type
    _set_attributes(span.attributes, attributes)


def _ids(call: CallIn, project: str) -> tuple[bytes, bytes]:
    """Random ids, or ids derived from the sender's `id` (within its project), so a resend is the same span."""
    if call.id is None:
        trace_id, span_id = os.urandom(16), os.urandom(8)
    else:
        digest = hashlib.sha256("\x1f".join(("spanmeter.calls", project, call.id)).encode()).digest()
        trace_id, span_id = digest[:16], digest[16:24]
    return (bytes.fromhex(call.trace_id) if call.trace_id else trace_id), span_id


def _set_attributes(target: Any, attributes: dict[str, Any]) -> None:
    """Appends to a repeated KeyValue field: strings, ints, lists of strings; None is left out."""
    for key, value in attributes.items():
        if value is None:
            continue
        entry = target.add()
        entry.key = key
        if isinstance(value, str):
            entry.value.string_value = value
        elif isinstance(value, int):
            entry.value.int_value = value
        else:
            entry.value.array_value.values.extend(AnyValue(string_value=v) for v in value)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _ns(moment: datetime) -> int:
    return (_utc(moment) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


class CallsJsonReceiver:
    """Serves `POST /v1/calls` on the OTLP/HTTP port, with that listener's body limit and keys."""

    def __init__(
        self,
        config: HttpProtocolConfig,
        traces: TracesPipeline,
        metrics: CollectorMetrics,
        authenticator: KeyAuthenticator | None = None,
    ) -> None:
        self._traces = traces
        self._metrics = metrics
        self._authenticator = authenticator
        self._limit = config.max_request_body_size_mib * _MIB
        self._max_in_flight = config.max_concurrent_requests
        self._in_flight = 0

    def register(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        """As the OTLP/HTTP receiver's export: at most `max_concurrent_requests` at once (its own count)."""
        self._metrics.requests.labels("calls", "http").inc()
        if self._in_flight >= self._max_in_flight:
            reply = _error(503, "too many requests at once; retry")
            reply.headers["Retry-After"] = "1"
            return reply
        self._in_flight += 1
        try:
            return await self._handle(request)
        finally:
            self._in_flight -= 1

    async def _handle(self, request: web.Request) -> web.Response:
        received_ns = time.time_ns()
        principal: Principal | None = request.get(PRINCIPAL)
        if principal is not None:
            try:
                require_sender(principal)
            except AuthError as exc:
                return _error(403, str(exc))
        if request.content_type != JSON:
            return _error(415, f"Content-Type must be {JSON}, got {request.content_type or 'none'}")
        try:
            body = await request.read()
            encoding = request.headers.get("Content-Encoding", "").lower()
            if encoding == "gzip":
                body = gunzip(body, self._limit)
            elif encoding not in ("", "identity"):
                return _error(415, f"unsupported Content-Encoding {encoding!r}")
            # Off the event loop, as a body of many calls takes a while to check and convert (tens of µs a call).
            calls = await asyncio.to_thread(parse_calls, body)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body exceeds {self._limit} bytes")
        except BodyTooLarge as exc:
            return _error(413, str(exc))
        except BadRequest as exc:  # gzip that does not inflate
            return _error(400, str(exc))
        except CallsRefused as exc:
            return web.json_response({"error": str(exc), "errors": exc.problems}, status=400)

        key_project = ""
        if principal is not None and not principal.admin:
            key_project = principal.project
            foreign = [i for i, call in enumerate(calls) if call.project not in (None, principal.project)]
            if foreign:
                return _error(
                    403,
                    f"call {foreign[0]}: project: the key {principal.key_id} writes project {principal.project!r} only",
                )
        if principal is not None and self._authenticator is not None:
            wait = self._authenticator.throttle(principal, len(calls))
            if wait:
                self._metrics.spans_refused.labels("rate_limited").inc(len(calls))
                reply = _error(429, f"the key {principal.key_id} is over its rate limit; retry in {wait:.2f}s")
                reply.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                return reply
        try:
            otlp, spans = await asyncio.to_thread(calls_request, calls, received_ns, key_project)
            raw = otlp.SerializeToString()
        except (UnicodeEncodeError, ValueError) as exc:  # a string protobuf cannot carry
            return _error(400, f"a value cannot be stored: {exc}")
        try:
            split, _ = split_traces(self._traces.prefilter, raw)
            await self._traces.consume(split, raw, principal)
        except Backpressure as exc:
            reply = _error(503, str(exc))
            reply.headers["Retry-After"] = str(exc.retry_after)
            return reply
        ids = [{"trace_id": trace_id.hex(), "span_id": span_id.hex()} for trace_id, span_id in spans]
        return web.json_response({"accepted": len(calls), "calls": ids})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
