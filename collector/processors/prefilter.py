"""The `genai` prefilter: sets aside, from a trace request's bytes, the spans that cannot be GenAI, before anything
is decoded (most of an app's whole OTLP stream is ordinary spans).

A span may be GenAI when its scope's name starts with a convention's prefix or one of its attributes' keys is a
marker: what `GenAIProcessor` reads. Requests are read in native code (`_scan`): checked as protobuf's parser
checks them, counted and split with no protobuf objects built. A request that code does not read exactly as
protobuf would is parsed, and split in Python from its bytes (`GenAIPrefilter.split`).
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..conventions import CONVENTIONS, Convention
from ..conventions.base import detection_keys
from .markers import MarkerSearch

try:
    from . import _scan
except ImportError:  # built without a C compiler: every request is parsed, then split in Python
    _scan = None  # type: ignore[assignment]

__all__ = ["GenAIPrefilter", "Split"]


@dataclass(frozen=True)
class Split:
    """A trace request's spans, parted."""

    spans: int
    """In the request."""
    skipped: int
    """Set aside: they cannot be GenAI."""
    kept: bytes | None
    """The request holding the others, protobuf-encoded (the body itself when none was set aside); None when
    every span was."""


class GenAIPrefilter:
    """Sets aside, from a request's bytes, the spans that cannot be GenAI, so that an ordinary span costs no
    Python work per attribute.

    In Python (`split`, for the requests the native scan does not read): a marker key's UTF-8 bytes lie inside
    the bytes of the span carrying it, whatever the encoder, so a span whose bytes hold no marker, in a scope no
    convention names, is not GenAI. Markers are looked for in one pass for all of them (`MarkerSearch`) in each
    scope's bytes, then in each span's of a scope holding one; the scopes and spans are located by their length
    prefixes alone. A marker in a value only makes a span a candidate: `GenAIProcessor` still decides, so no
    GenAI span is missed. A scope holding the commonest marker (`gen_ai.operation.name`) at least once per span is
    handed on whole without looking at its spans one by one: each of its spans may be GenAI, and any that is not
    is counted as such by the processor.
    """

    def __init__(self, conventions: tuple[Convention, ...] = CONVENTIONS, native: bool = True) -> None:
        markers, self._scopes = detection_keys(conventions)
        self._common = markers[0]
        self._marked = MarkerSearch(markers)
        self._native = (markers, tuple(scope.encode() for scope in self._scopes)) if native and _scan else None

    def scan(self, body: bytes) -> Split | None:
        """The request's spans parted by native code, which checks the body as protobuf's parser would; None when
        that code does not read it exactly as protobuf would (or is not built): parse it, then `split`."""
        if self._native is None:
            return None
        found = _scan.split(body, *self._native)
        return Split(*found) if found is not None else None

    def split(self, request: ExportTraceServiceRequest, body: bytes) -> Split:
        """`body` is `request`'s protobuf encoding. Nothing is set aside when its bytes are not laid out as
        expected (a group field)."""
        spans = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        subset, skipped = self._subset(request, body)
        if subset is None:
            return Split(spans, skipped, None)
        return Split(spans, skipped, body if subset is request else subset.SerializeToString())

    def _subset(self, request: ExportTraceServiceRequest, body: bytes) -> tuple[ExportTraceServiceRequest | None, int]:
        """(the request holding every span that may be GenAI, or None when there is none; how many spans were
        set aside). The request itself is returned when nothing is set aside, or when its bytes are not laid out as
        expected (a group field): then nothing is."""
        scopes = self._scopes
        named = [
            [scope.scope.name.startswith(scopes) for scope in resource.scope_spans]
            for resource in request.resource_spans
        ]
        if all(all(row) for row in named):
            return request, 0
        resource_ranges = _length_delimited(body, 0, len(body), 1)
        if resource_ranges is None or len(resource_ranges) != len(named):
            return request, 0
        picks: list[tuple[int, int, list[int] | None]] = []  # (resource, scope, spans: None for all)
        skipped = 0
        marked, common = self._marked, self._common
        for r, (resource, (start, end)) in enumerate(zip(request.resource_spans, resource_ranges, strict=True)):
            scope_ranges = _length_delimited(body, start, end, 2)
            if scope_ranges is None or len(scope_ranges) != len(named[r]):
                return request, 0
            for s, scope in enumerate(resource.scope_spans):
                if named[r][s]:
                    picks.append((r, s, None))
                    continue
                if not marked(body, *scope_ranges[s]):
                    skipped += len(scope.spans)
                    continue
                if body.count(common, *scope_ranges[s]) >= len(scope.spans):
                    picks.append((r, s, None))  # as many of the commonest marker as spans: most likely all GenAI
                    continue
                span_ranges = _length_delimited(body, *scope_ranges[s], 2)
                if span_ranges is None or len(span_ranges) != len(scope.spans):
                    return request, 0
                candidates = [index for index, (first, last) in enumerate(span_ranges) if marked(body, first, last)]
                skipped += len(span_ranges) - len(candidates)
                if candidates:
                    picks.append((r, s, candidates if len(candidates) < len(span_ranges) else None))
        if not skipped:
            return request, 0
        return (_subset_of(request, picks) if picks else None), skipped


def _length_delimited(body: bytes, start: int, end: int, number: int) -> list[tuple[int, int]] | None:
    """The byte ranges of field `number`'s length-delimited values in the message at body[start:end], in order
    (a repeated message field's elements, as a protobuf parser appends them); fields of other numbers or wire
    types skipped. None when the bytes hold a group or overrun the message."""
    ranges: list[tuple[int, int]] = []
    at = start
    try:
        while at < end:
            tag = body[at]
            at += 1
            if tag & 0x80:
                tag, at = _varint(body, at, tag)
            wire = tag & 7
            if wire == 2:
                length = body[at]
                at += 1
                if length & 0x80:
                    length, at = _varint(body, at, length)
                if tag >> 3 == number:
                    ranges.append((at, at + length))
                at += length
            elif wire == 0:
                while body[at] & 0x80:
                    at += 1
                at += 1
            elif wire == 1:
                at += 8
            elif wire == 5:
                at += 4
            else:
                return None
    except IndexError:
        return None
    return ranges if at == end else None


def _varint(body: bytes, at: int, first: int) -> tuple[int, int]:
    """A varint whose first byte (`first`, continuation bit set) was just read; (value, position after it)."""
    value = first & 0x7F
    shift = 7
    while True:
        byte = body[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _subset_of(
    request: ExportTraceServiceRequest, picks: list[tuple[int, int, list[int] | None]]
) -> ExportTraceServiceRequest:
    """A request with only the picked scopes and spans, each resource and scope as it was."""
    subset = ExportTraceServiceRequest()
    last = -1
    for r, s, spans in picks:
        resource = request.resource_spans[r]
        if r != last:
            into = subset.resource_spans.add(resource=resource.resource, schema_url=resource.schema_url)
            last = r
        scope = resource.scope_spans[s]
        kept = scope.spans if spans is None else [scope.spans[index] for index in spans]
        into.scope_spans.add(scope=scope.scope, schema_url=scope.schema_url, spans=kept)
    return subset
