"""OTLP request bodies in and responses out, for both transports: protobuf, and JSON as the OTLP
spec defines it (lowerCamelCase keys, trace and span ids as hex rather than base64)."""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..processors.prefilter import GenAIPrefilter, Split

try:
    from ..processors import _scan
except ImportError:  # built without a C compiler: every metrics and logs request is parsed to be counted
    _scan = None  # type: ignore[assignment]

__all__ = [
    "SIGNALS",
    "BadRequest",
    "BodyTooLarge",
    "Signal",
    "count_items",
    "count_protobuf",
    "gunzip",
    "parse_json",
    "parse_protobuf",
    "split_traces",
]


class BadRequest(ValueError):
    """A body that is not a valid OTLP request; the message says what is wrong."""


class BodyTooLarge(BadRequest):
    pass


@dataclass(frozen=True)
class Signal:
    name: str
    request: type[Message]
    response: type[Message]


SIGNALS = {
    "traces": Signal("traces", ExportTraceServiceRequest, ExportTraceServiceResponse),
    "metrics": Signal("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "logs": Signal("logs", ExportLogsServiceRequest, ExportLogsServiceResponse),
}

_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_MAX_JSON_DEPTH = 100
"""As deep as protobuf's own parsers go (upb's and json_format's limit): deeper is not an OTLP request."""


def parse_protobuf(signal: Signal, body: bytes) -> Message:
    message = signal.request()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise BadRequest(f"body is not a valid protobuf {signal.request.__name__}: {exc}") from None
    return message


def split_traces(prefilter: GenAIPrefilter, body: bytes, as_json: bool = False) -> tuple[Split, bytes]:
    """A trace request (OTLP/JSON with `as_json`) parted by `prefilter`, and its protobuf encoding; BadRequest when
    the body is not one. Protobuf is read by native code that checks it as protobuf's parser does, without building
    the messages (parsing them was half of what answering a request of ordinary spans cost); a body that code does
    not read exactly as protobuf would is parsed."""
    request = None
    if as_json:
        request = parse_json(SIGNALS["traces"], body)
        body = request.SerializeToString()
    split = prefilter.scan(body)
    if split is None:
        if request is None:
            request = parse_protobuf(SIGNALS["traces"], body)
        split = prefilter.split(request, body)  # type: ignore[arg-type]
    return split, body


def count_protobuf(signal: Signal, body: bytes) -> int:
    """The metrics or log records of a metrics or logs request's protobuf body; BadRequest when it is not one. They
    are counted by native code that checks the body as protobuf's parser would, building no message (the collector
    needs only the count, and forwards the bytes); a body that code does not read exactly as protobuf would is
    parsed."""
    if _scan is not None:
        found = _scan.count(body, signal.name)
        if found is not None:
            return found
    return count_items(signal.name, parse_protobuf(signal, body))


def parse_json(signal: Signal, body: bytes) -> Message:
    try:
        data = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError too (invalid UTF-8); and integers past 4300 digits
        raise BadRequest(f"body is not valid JSON: {_cut(str(exc))}") from None
    except RecursionError:
        raise BadRequest(f"body is JSON nested more than {_MAX_JSON_DEPTH} levels deep") from None
    if not isinstance(data, dict):
        raise BadRequest(f"body must be a JSON object ({signal.request.__name__}), got {type(data).__name__}")
    _hex_ids_to_base64(data, "", 0)
    try:
        # Unknown fields are ignored, as the OTLP spec asks of receivers.
        return json_format.ParseDict(data, signal.request(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadRequest(f"body is not a valid OTLP/JSON {signal.request.__name__}: {_cut(str(exc))}") from None
    except (UnicodeEncodeError, SystemError) as exc:
        # JSON may escape a lone surrogate ("\ud800"), which no UTF-8 string holds; upb raises a SystemError
        # caused by the UnicodeEncodeError when such a key is looked up.
        if not isinstance(exc, UnicodeError) and not isinstance(exc.__cause__, UnicodeError):
            raise
        raise BadRequest("body holds a string that is not valid Unicode (a lone surrogate such as \\ud800)") from None


def _hex_ids_to_base64(node: Any, path: str, depth: int) -> None:
    if depth > _MAX_JSON_DEPTH:
        raise BadRequest(f"{_cut(path)}: JSON nested more than {_MAX_JSON_DEPTH} levels deep")
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else key
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise BadRequest(f"{_cut(where)}: {_cut(repr(value))} is not a hex-encoded id") from None
            else:
                _hex_ids_to_base64(value, where, depth + 1)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _hex_ids_to_base64(value, f"{path}[{index}]", depth + 1)


def _cut(text: str, limit: int = 200) -> str:
    """A message quoting the sender's data stays short (a value can be megabytes)."""
    return text if len(text) <= limit else f"{text[:limit]}..."


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress, refusing to inflate beyond `limit` bytes (a small body can expand enormously)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"Content-Encoding is gzip but the body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise BodyTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise BadRequest("Content-Encoding is gzip but the body is truncated")
    return out


def count_items(signal: str, message: Message) -> int:
    """Spans, metrics or log records in a request: for counting, without decoding attributes."""
    if signal == "traces":
        return sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)  # type: ignore[attr-defined]
    if signal == "metrics":
        return sum(len(s.metrics) for r in message.resource_metrics for s in r.scope_metrics)  # type: ignore[attr-defined]
    return sum(len(s.log_records) for r in message.resource_logs for s in r.scope_logs)  # type: ignore[attr-defined]
