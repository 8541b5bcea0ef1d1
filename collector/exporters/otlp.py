"""The `otlp` exporter: forwards received OTLP requests, unchanged, to another OTLP/HTTP endpoint.

It lets spanmeter sit in front of an existing tracing backend: traces (GenAI or not), metrics
and logs reach it as the app sent them, except prompt and completion content, which is stripped
unless `forward_content` is set. Forwarding is best effort and never slows the receivers:
at most `_MAX_IN_FLIGHT` requests are outstanding, beyond that requests are counted and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableSequence

import aiohttp
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from ..privacy import CONTENT_ATTRIBUTES, CONTENT_PREFIXES, is_content, url_for_log
from ..telemetry import CollectorMetrics
from .config import OtlpExporterConfig

__all__ = ["OtlpForwarder", "without_content"]

logger = logging.getLogger(__name__)

_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}
_MAX_IN_FLIGHT = 64

# Byte strings one of which every request carrying content contains: a request with none of them (most, and
# every non-GenAI one) is forwarded as received, without being parsed again.
_CONTENT_MARKERS = tuple(
    sorted({name.encode() for name in CONTENT_ATTRIBUTES} | {prefix.encode() for prefix in CONTENT_PREFIXES})
)
_LOG_EVENT_MARKER = b"gen_ai."
"""GenAI events sent as log records (`gen_ai.user.message`, `gen_ai.choice`...) carry content in their body."""


def without_content(signal: str, body: bytes) -> bytes:
    """The request with prompt and completion content removed: the conventions' content attributes on spans
    and span events, and the bodies of GenAI event log records. Unchanged (the same bytes) when it has none."""
    if signal == "traces":
        if not any(marker in body for marker in _CONTENT_MARKERS):
            return body
        traces = ExportTraceServiceRequest.FromString(body)
        changed = False
        for resource_spans in traces.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    changed |= _strip(span.attributes)
                    for event in span.events:
                        changed |= _strip(event.attributes)
        return traces.SerializeToString() if changed else body
    if signal == "logs":
        if not any(marker in body for marker in (*_CONTENT_MARKERS, _LOG_EVENT_MARKER)):
            return body
        logs = ExportLogsServiceRequest.FromString(body)
        changed = False
        for resource_logs in logs.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    event = record.event_name or next(
                        (kv.value.string_value for kv in record.attributes if kv.key == "event.name"), ""
                    )
                    if event.startswith("gen_ai.") and record.HasField("body"):
                        record.ClearField("body")
                        changed = True
                    changed |= _strip(record.attributes)
        return logs.SerializeToString() if changed else body
    return body


def _strip(attributes: MutableSequence[KeyValue]) -> bool:
    """Delete content attributes in place; whether there were any."""
    found = False
    for index in range(len(attributes) - 1, -1, -1):
        if is_content(attributes[index].key):
            del attributes[index]
            found = True
    return found


class OtlpForwarder:
    def __init__(self, config: OtlpExporterConfig, metrics: CollectorMetrics) -> None:
        self._config = config
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"Content-Type": "application/x-protobuf", **self._config.headers},
            timeout=aiohttp.ClientTimeout(total=self._config.timeout),
        )

    def forward(self, signal: str, body: bytes) -> None:
        """Schedule a POST of a serialized Export*ServiceRequest; returns at once."""
        if self._session is None or len(self._tasks) >= _MAX_IN_FLIGHT:
            self._metrics.forwarded.labels(signal, "skipped").inc()
            return
        if not self._config.forward_content:
            try:
                body = without_content(signal, body)
            except DecodeError:  # the receiver parsed it already: cannot happen, but never forward content
                self._metrics.forwarded.labels(signal, "skipped").inc()
                return
        task = asyncio.get_running_loop().create_task(self._post(signal, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, signal: str, body: bytes) -> None:
        assert self._session is not None
        url = self._config.endpoint.rstrip("/") + _PATHS[signal]
        try:
            async with self._session.post(url, data=body) as response:
                outcome = "ok" if response.status < 300 else f"http_{response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = "error"
            # The endpoint's host only, and the error's kind: a URL may carry a token (path, query, userinfo),
            # and aiohttp's messages repeat the URL.
            logger.warning(
                "forwarding %s to %s failed: %s", signal, url_for_log(self._config.endpoint), type(exc).__name__
            )
        self._metrics.forwarded.labels(signal, outcome).inc()

    async def shutdown(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._config.timeout)
        if self._session is not None:
            await self._session.close()
