"""The `genai` processor: finds GenAI spans in an OTLP request and reads them into rows.

It is the only stage that walks OTLP messages. One pass over a span's attributes sets aside those
a convention table names; only those are decoded, the rest are kept, bounded, as strings. Spans a
convention marks as wrappers of model calls (workflows, chains, SDK wrapper spans repeating their
children's usage) are not rows: each call is counted once, on the span of the call itself.
"""

from __future__ import annotations

import ast
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.semconv._incubating.attributes import deployment_attributes as deployment
from opentelemetry.semconv.attributes import service_attributes as service

from .. import sampling
from ..conventions import CONVENTIONS, Convention, Field, normalize_provider
from ..conventions.base import AGGREGATE_OPERATIONS, JSON_PATH, TOKEN_FIELDS
from ..otlp_values import (
    MAX_TEXT_LENGTH,
    InvalidValue,
    as_count,
    as_str,
    as_str_list,
    as_text,
    preview,
    python_count,
    to_python,
    valid_text,
)
from ..privacy import Redactor, is_content
from ..records import SpanRecord
from .config import GenAIProcessorConfig

__all__ = [
    "DEFAULT_PROJECT",
    "MAX_COLUMN_LENGTH",
    "MAX_TIMESTAMP_NS",
    "MIN_TIMESTAMP_NS",
    "PROJECT_ATTRIBUTE",
    "DecodeResult",
    "GenAIProcessor",
]

DEFAULT_PROJECT = "default"
PROJECT_ATTRIBUTE = "spanmeter.project"
"""Resource attribute naming the project a service reports to (else `default`)."""

_STATUS = {Status.STATUS_CODE_UNSET: "UNSET", Status.STATUS_CODE_OK: "OK", Status.STATUS_CODE_ERROR: "ERROR"}
_OPERATIONS = frozenset(
    {
        "chat",
        "text_completion",
        "generate_content",
        "embeddings",
        "create_agent",
        "invoke_agent",
        "execute_tool",
    }
)
_MAX_ERRORS_REPORTED = 5
_MAX_SCOPES = 10_000  # scope names remembered; a sender inventing names cannot grow memory without end

MIN_TIMESTAMP_NS = 946_684_800 * 1_000_000_000
"""2000-01-01T00:00:00Z: a span starting earlier comes from an unset or broken clock."""
MAX_TIMESTAMP_NS = 2**63 - 1
"""What a signed 64-bit nanosecond timestamp (Arrow, ClickHouse DateTime64(9)) holds."""
ATTRIBUTE_REDACTION_LENGTH = 20
"""Attribute values (not content) this long or longer are redacted: the shortest credential a rule finds (an AWS
access key id) has 20 characters; shorter values (models, ids, counts) cost one compare."""
MAX_COLUMN_LENGTH = MAX_TEXT_LENGTH
"""Characters kept of a promoted string column (model, provider, user_id...), a tag value or an attribute
key (1024): longer values are truncated, like the tags processor's rule values."""


@dataclass
class DecodeResult:
    records: list[SpanRecord] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    non_genai: int = 0
    not_model_calls: int = 0
    """GenAI spans that wrap model calls (workflows, chains, SDK wrappers): their children are counted."""
    by_convention: Counter[str] = field(default_factory=Counter)
    tags_capped: int = 0
    """Spans whose tags were cut at `max_attributes`."""

    def reject(self, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < _MAX_ERRORS_REPORTED:
            self.errors.append(message)

    def drop_rejected(self) -> None:
        """Move the records a later processor rejected (`SpanRecord.rejection`, e.g. a cost the column
        cannot hold) out of `records`, into the rejections answered to the sender."""
        if not any(record.rejection for record in self.records):
            return
        kept = []
        for record in self.records:
            if record.rejection:
                self.reject(f"span {record.span_id}: {record.rejection}")
                self.by_convention[record.convention] -= 1
            else:
                kept.append(record)
        self.records = kept
        self.by_convention = +self.by_convention  # conventions left with no rows

    @property
    def message(self) -> str:
        if not self.rejected:
            return ""
        more = self.rejected - len(self.errors)
        suffix = f" (and {more} more)" if more > 0 else ""
        return "; ".join(self.errors) + suffix


class _Resource:
    """What every span of one resource shares, computed once per resource."""

    __slots__ = ("attributes", "environment", "project", "service_name", "stored")

    def __init__(self, attributes: dict[str, Any], config: GenAIProcessorConfig, redact: Redactor | None) -> None:
        self.attributes = attributes
        self.service_name = _text(attributes, service.SERVICE_NAME) or "unknown_service"
        self.environment = _text(attributes, deployment.DEPLOYMENT_ENVIRONMENT_NAME) or _text(
            attributes, deployment.DEPLOYMENT_ENVIRONMENT
        )
        self.project = _text(attributes, PROJECT_ATTRIBUTE) or DEFAULT_PROJECT
        self.stored = _bounded_strings(attributes, config, redact)


class GenAIProcessor:
    """Reads GenAI spans of any known convention into `SpanRecord`s; counts the others."""

    def __init__(self, config: GenAIProcessorConfig, conventions: tuple[Convention, ...] = CONVENTIONS) -> None:
        self._config = config
        self._conventions = conventions
        # Every attribute any convention reads or detects by: looked up once per attribute, in one pass.
        self._read_keys = frozenset().union(*(c.consumed for c in conventions))
        self._by_scope: dict[str, Convention | None] = {}
        rules = config.redaction
        own = [(rule.name, rule.regex, rule.replacement) for rule in rules.rules]
        self._redactor = Redactor(own, rules.builtin_rules, rules.disabled_rules)
        # Other attributes' values are redacted when long enough to hold a credential (ATTRIBUTE_REDACTION_LENGTH).
        self._attribute_redactor = self._redactor if rules.attributes and self._redactor.active else None

    def decode(self, request: ExportTraceServiceRequest, latest: int | None = None) -> DecodeResult:
        """`latest`: the latest start or end time accepted (ns); by default `max_future_skew` past now. A request
        read after it was accepted passes the time it arrived plus the skew."""
        result = DecodeResult()
        if latest is None:
            latest = self.latest_accepted(time.time_ns())
        for resource_spans in request.resource_spans:
            resource: _Resource | None = None
            for scope_spans in resource_spans.scope_spans:
                scoped = self._scope_convention(scope_spans.scope.name)
                for span in scope_spans.spans:
                    known, rest = self._split(span.attributes)
                    convention = scoped or self._convention_of(known)
                    if convention is None:
                        result.non_genai += 1
                        continue
                    if not _is_model_call(convention, known):
                        result.not_model_calls += 1
                        continue
                    if resource is None:
                        resource = _Resource(
                            _index(resource_spans.resource.attributes), self._config, self._attribute_redactor
                        )
                    try:
                        record, tags_capped = self._read(span, known, rest, convention, resource, latest)
                    except InvalidValue as exc:
                        name = preview(span.name)
                        result.reject(f"span {span.span_id[:16].hex() or '(no span_id)'} {name}: {exc}")
                        continue
                    result.records.append(record)
                    result.by_convention[convention.name] += 1
                    result.tags_capped += tags_capped
        return result

    @property
    def attribute_redactor(self) -> Redactor | None:
        """What redacts attribute values of ATTRIBUTE_REDACTION_LENGTH characters or more (None: nothing does)."""
        return self._attribute_redactor

    def latest_accepted(self, received_ns: int) -> int:
        """The latest start or end time accepted in a request received at `received_ns`."""
        return min(received_ns + int(self._config.max_future_skew * 1e9), MAX_TIMESTAMP_NS)

    def _scope_convention(self, scope: str) -> Convention | None:
        try:
            return self._by_scope[scope]
        except KeyError:
            found = next((c for c in self._conventions if c.scopes and scope.startswith(c.scopes)), None)
            if len(self._by_scope) >= _MAX_SCOPES:
                self._by_scope.clear()
            self._by_scope[scope] = found
            return found

    def _split(self, attributes: Any) -> tuple[dict[str, AnyValue], list[KeyValue]]:
        """One pass over a span's attributes: those a convention reads, and the rest (undecoded)."""
        known: dict[str, AnyValue] = {}
        rest: list[KeyValue] = []
        read = self._read_keys
        for kv in attributes:
            key = kv.key
            if key in read:
                known[key] = kv.value
            else:
                rest.append(kv)
        return known, rest

    def _convention_of(self, attributes: dict[str, AnyValue]) -> Convention | None:
        for convention in self._conventions:
            for marker in convention.markers:
                if marker in attributes:
                    return convention
        return None

    def _read(
        self,
        span: Span,
        known: dict[str, AnyValue],
        rest: list[KeyValue],
        convention: Convention,
        resource: _Resource,
        latest: int,
    ) -> tuple[SpanRecord, bool]:
        """The span's row, and whether some of its tags were left out (past `max_attributes`)."""
        if len(span.trace_id) != 16:
            raise InvalidValue(f"trace_id must be 16 bytes, got {len(span.trace_id)}")
        if len(span.span_id) != 8:
            raise InvalidValue(f"span_id must be 8 bytes, got {len(span.span_id)}")
        if len(span.parent_span_id) not in (0, 8):
            raise InvalidValue(f"parent_span_id must be empty or 8 bytes, got {len(span.parent_span_id)}")
        start = span.start_time_unix_nano
        end = span.end_time_unix_nano
        if not MIN_TIMESTAMP_NS <= start <= latest or end > latest:
            raise InvalidValue(self._time_problem(start, end, latest))
        record = SpanRecord()
        record.attributes = span.attributes
        record.resource = resource.attributes
        record.timestamp = start
        record.sampling_threshold = sampling.threshold(span.trace_state)
        # An end before the start (clocks disagreeing, an unset end) is a duration of 0: the call still counts.
        record.duration_ns = max(end - start, 0)
        record.trace_id = span.trace_id.hex()
        record.span_id = span.span_id.hex()
        record.parent_span_id = span.parent_span_id.hex()
        record.project = resource.project
        record.service_name = resource.service_name
        record.environment = resource.environment
        record.status_code = _STATUS.get(span.status.code, "UNSET")
        record.convention = convention.name
        record.resource_attributes = resource.stored

        values = _fields(known, convention)
        operation = values.get(Field.OPERATION, "")
        record.operation = (
            convention.operation_values.get(operation, operation)
            or _kind_operation(convention, known)
            or _operation_from_name(span.name)
        )
        record.provider = normalize_provider(convention.provider(values.get(Field.PROVIDER, "")))
        record.request_model = values.get(Field.REQUEST_MODEL, "")
        record.response_model = values.get(Field.RESPONSE_MODEL, "")
        record.finish_reasons = values.get(Field.FINISH_REASONS, [])
        record.error_type = values.get(Field.ERROR_TYPE, "")
        record.user_id = values.get(Field.USER_ID, "")
        record.session_id = values.get(Field.SESSION_ID, "")
        record.conversation_id = values.get(Field.CONVERSATION_ID, "")
        record.response_id = values.get(Field.RESPONSE_ID, "")
        record.tags, record.span_attributes, record.content, tags_capped = self._tags_and_rest(rest, convention)
        for key, tag in convention.field_tags:
            value = known.get(key)
            if value is not None:
                record.tags[tag] = _cut(as_str(value))
        if record.response_id:
            record.span_attributes["gen_ai.response.id"] = record.response_id
        if record.operation in AGGREGATE_OPERATIONS:
            _keep_aggregate_usage(record, known, convention)
        else:
            _read_tokens(record, values, convention)
            limit = self._config.max_tokens_per_call
            # Input includes cache and output reasoning (checked): these two bound every count of the row.
            if record.input_tokens > limit or record.output_tokens > limit:
                raise InvalidValue(_too_many_tokens(record, known, convention, limit))
        tags_capped |= _structured_tags(record.tags, known, convention, self._config.max_attributes)
        return record, tags_capped

    def _time_problem(self, start: int, end: int, latest: int) -> str:
        """Why a span's times cannot be stored (only called for a span that is rejected)."""
        skew = f"{self._config.max_future_skew:g}s (processors.genai.max_future_skew)"
        if start < MIN_TIMESTAMP_NS:
            return f"start_time_unix_nano {start} ({_iso(start)}) is before 2000-01-01T00:00:00Z"
        attribute, value = ("start_time_unix_nano", start) if start > latest else ("end_time_unix_nano", end)
        return f"{attribute} {value} ({_iso(value)}) is more than {skew} ahead of the collector's clock"

    def _tags_and_rest(
        self, rest: list[KeyValue], convention: Convention
    ) -> tuple[dict[str, str], dict[str, str], dict[str, str], bool]:
        """In one pass: tags; the other attributes as strings, bounded in count and length, values long enough
        to hold a credential redacted; prompt and completion text (any convention's content attributes: a span
        may carry another's) only with content capture on, in a column of its own, at most
        `max_content_per_span` characters in all, redacted; and whether tags past `max_attributes` were left out."""
        tags: dict[str, str] = {}
        kept: dict[str, str] = {}
        content: dict[str, str] = {}
        capped = False
        config = self._config
        limit = config.max_attribute_value_length
        most = config.max_attributes
        capture = config.capture_content
        content_limit = config.max_content_length
        room = config.max_content_per_span if capture else 0
        redactor = self._attribute_redactor
        tag_prefixes = convention.tag_prefixes
        # Locals and inline bounds (len and compare): this loop runs for every attribute of every span.
        for kv in rest:
            key = kv.key
            if tag_prefixes and key.startswith(tag_prefixes):
                for prefix in tag_prefixes:
                    if key.startswith(prefix):
                        name = key[len(prefix) :]
                        if name.startswith(convention.tag_skip):
                            break
                        if len(tags) < most:
                            text = as_str(kv.value)
                            tags[name if len(name) <= MAX_COLUMN_LENGTH else name[:MAX_COLUMN_LENGTH]] = (
                                text if len(text) <= MAX_COLUMN_LENGTH else text[:MAX_COLUMN_LENGTH]
                            )
                        else:
                            capped = True
                        break
            elif is_content(key):
                if room > 0 and len(content) < most:
                    text = as_str(kv.value)
                    text = text[: min(content_limit, room)]
                    room -= len(text)
                    content[key if len(key) <= MAX_COLUMN_LENGTH else key[:MAX_COLUMN_LENGTH]] = self._redactor.redact(
                        text
                    )
            elif len(kept) < most:
                text = as_str(kv.value)
                if len(text) > limit:
                    text = text[:limit]
                if redactor is not None and len(text) >= ATTRIBUTE_REDACTION_LENGTH:
                    text = redactor.redact(text)
                kept[key if len(key) <= MAX_COLUMN_LENGTH else key[:MAX_COLUMN_LENGTH]] = text
        return tags, kept, content, capped


def _is_model_call(convention: Convention, known: dict[str, AnyValue]) -> bool:
    if convention.wrapper_filter is not None:
        attribute, values = convention.wrapper_filter
        value = known.get(attribute)
        if value is not None and as_text(value) in values:
            return False
    if convention.call_filter is None:
        return True
    attribute, values = convention.call_filter
    value = known.get(attribute)
    return value is not None and as_text(value) in values


def _kind_operation(convention: Convention, known: dict[str, AnyValue]) -> str:
    if convention.call_filter is None or not convention.kind_operations:
        return ""
    value = known.get(convention.call_filter[0])
    return convention.kind_operations.get(as_text(value), "") if value is not None else ""


def _keep_aggregate_usage(record: SpanRecord, known: dict[str, AnyValue], convention: Convention) -> None:
    """An agent or tool span: a row without usage of its own; what it reports stays visible as attributes."""
    record.input_tokens = record.output_tokens = 0
    record.cache_read_tokens = record.cache_write_tokens = record.reasoning_tokens = 0
    record.has_usage = False
    for field_name in TOKEN_FIELDS:
        for key in convention.fields.get(field_name, ()):
            value = known.get(key)
            if value is not None:
                record.span_attributes[key] = _cut(as_str(value))


def _fields(attributes: dict[str, AnyValue], convention: Convention) -> dict[Field, Any]:
    """Each field's value from the first attribute present (strings cut to MAX_COLUMN_LENGTH by as_text)."""
    values: dict[Field, Any] = {}
    convert: Callable[[Any], Any]
    for name, keys in convention.fields.items():
        for key in keys:
            if JSON_PATH in key:
                found = _json_member(attributes, key)
                if found is None:
                    continue
                convert = python_count if name in TOKEN_FIELDS else _json_text
            else:
                found = attributes.get(key)
                if found is None:
                    continue
                if name in TOKEN_FIELDS:
                    convert = as_count
                elif name is Field.FINISH_REASONS:
                    convert = as_str_list
                else:
                    convert = as_text
            try:
                values[name] = convert(found)
            except InvalidValue as exc:
                raise InvalidValue(f"{key}: {exc}") from None
            break
    return values


def _too_many_tokens(record: SpanRecord, known: dict[str, AnyValue], convention: Convention, limit: int) -> str:
    """Which count is past the limit, naming the attributes it was read from (only for a rejected span)."""
    fields: tuple[Field, ...]
    if record.input_tokens > limit:
        side, count = "input", record.input_tokens
        fields = (Field.UNCACHED_INPUT_TOKENS, Field.INPUT_TOKENS, Field.CACHE_READ_TOKENS, Field.CACHE_WRITE_TOKENS)
    else:
        side, count = "output", record.output_tokens
        fields = (Field.OUTPUT_TOKENS, Field.REASONING_TOKENS)
    keys = [key for f in fields for key in convention.fields.get(f, ()) if key.partition(JSON_PATH)[0] in known]
    return (
        f"{', '.join(keys)}: {count} {side} tokens exceed the maximum of {limit:,} tokens per call "
        "(processors.genai.max_tokens_per_call)"
    )


def _json_text(value: Any) -> str:
    """A string field read from inside a JSON attribute."""
    try:
        text = valid_text(value if isinstance(value, str) else str(value))
    except RecursionError:  # a structure nested deeper than Python recurses: no name
        raise InvalidValue("nested too deeply to be a name") from None
    return _cut(text)


def _json_member(attributes: dict[str, AnyValue], path: str) -> Any:
    """`attr#a.b`: member a.b of the JSON object in attribute attr; None when any part is missing."""
    name, _, members = path.partition(JSON_PATH)
    value = attributes.get(name)
    if value is None:
        return None
    node = _parse_structured(name, as_str(value))
    for member in members.split("."):
        if not isinstance(node, dict) or member not in node:
            return None
        node = node[member]
    return node


def _parse_structured(name: str, text: str) -> Any:
    """JSON; or a Python literal's text, as some SDKs stringify dicts (`{'cache_read': 5}`)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise InvalidValue(f"{name}: neither JSON nor a literal: {preview(text)}") from None


def _structured_tags(tags: dict[str, str], known: dict[str, AnyValue], convention: Convention, limit: int) -> bool:
    """Tags from a JSON object attribute (at most `limit` tags in all) or a list attribute; True when some
    were left out for the limit."""
    capped = False
    for name in convention.tag_objects:
        value = known.get(name)
        if value is None:
            continue
        try:
            entries = json.loads(as_str(value)) if value.WhichOneof("value") == "string_value" else to_python(value)
            if not isinstance(entries, dict):
                continue
            for key, entry in entries.items():
                if len(tags) >= limit:
                    capped = True
                    break
                text = entry if isinstance(entry, str) else json.dumps(entry, separators=(",", ":"))
                tags[_cut(valid_text(key))] = _cut(valid_text(text))
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses: no tags from it
            continue
    for name in convention.tag_lists:
        value = known.get(name)
        if value is not None:
            tags[name] = _cut(",".join(as_str_list(value)))
    return capped


def _read_tokens(record: SpanRecord, values: dict[Field, Any], convention: Convention) -> None:
    cache_read = values.get(Field.CACHE_READ_TOKENS, 0)
    cache_write = values.get(Field.CACHE_WRITE_TOKENS, 0)
    uncached = values.get(Field.UNCACHED_INPUT_TOKENS)
    if uncached is not None:
        input_tokens = uncached + cache_read + cache_write
    else:
        input_tokens = values.get(Field.INPUT_TOKENS, 0)
        if convention.excludes_cache(record.provider):
            input_tokens += cache_read + cache_write
    output_tokens = values.get(Field.OUTPUT_TOKENS, 0)
    reasoning = values.get(Field.REASONING_TOKENS, 0)
    if convention.output_excludes_reasoning:
        output_tokens += reasoning
    if cache_read + cache_write > input_tokens:
        raise InvalidValue(
            f"cache read ({cache_read}) + cache write ({cache_write}) tokens exceed input tokens ({input_tokens}); "
            "input tokens must include cached tokens"
        )
    if reasoning > output_tokens:
        raise InvalidValue(
            f"reasoning tokens ({reasoning}) exceed output tokens ({output_tokens}); "
            "output tokens must include reasoning tokens"
        )
    record.input_tokens = input_tokens
    record.output_tokens = output_tokens
    record.cache_read_tokens = cache_read
    record.cache_write_tokens = cache_write
    record.reasoning_tokens = reasoning
    record.has_usage = any(
        field in values for field in (Field.INPUT_TOKENS, Field.UNCACHED_INPUT_TOKENS, Field.OUTPUT_TOKENS)
    )


def _cut(text: str) -> str:
    return text if len(text) <= MAX_COLUMN_LENGTH else text[:MAX_COLUMN_LENGTH]


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _index(attributes: Any) -> dict[str, Any]:
    return {kv.key: kv.value for kv in attributes}


def _text(attributes: dict[str, Any], key: str) -> str:
    value = attributes.get(key)
    return as_text(value) if value is not None else ""


def _operation_from_name(name: str) -> str:
    first = name.split(" ", 1)[0]
    return first if first in _OPERATIONS else ""


def _bounded_strings(
    attributes: dict[str, AnyValue], config: GenAIProcessorConfig, redactor: Redactor | None
) -> dict[str, str]:
    """Resource attributes as strings, bounded in count and length, redacted (process.command_args may hold a
    token)."""
    kept: dict[str, str] = {}
    limit = config.max_attribute_value_length
    for key, value in attributes.items():
        if len(kept) >= config.max_attributes:
            break
        text = as_str(value)
        text = text if len(text) <= limit else text[:limit]
        if redactor is not None and len(text) >= ATTRIBUTE_REDACTION_LENGTH:
            text = redactor.redact(text)
        kept[_cut(key)] = text
    return kept
