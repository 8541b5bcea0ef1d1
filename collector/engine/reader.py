"""The ClickHouse engine reading whole GenAI rows from OTLP trace requests, as `GenAIProcessor.decode` does.

A batch of requests is flattened by `_flatten` (native code) to files of span rows in ClickHouse's Native format
(each row with its resource's columns, and each attribute's count and texts, read once in native code rather
than by an expression per attribute), or, where that module is not built, written to files of length-delimited
messages that ClickHouse's Protobuf format reads; one file per core, read in parallel, by ONE query generated
from the convention tables (the single source of truth) for the conventions present: those whose marker keys or
scope prefixes `_flatten` found while writing the rows, or, without it, whose markers or scopes occur in the
batch's bytes. Each span carries its position (request, resource, scope, span: the flattener's columns, or the
ARRAY JOINs' enumerations), so rows are put back in the reference's order. Ordinary spans are counted per scope
and dropped; each GenAI span is classified (model call or not) and read into the row's columns. The flattener
also hands back what it does not read exactly (see `_flatten.c`).

A span the reference reads marks its whole request for the Python reader (`EngineBatch.fallback`), which then
produces the exact rows or rejection messages, when:
- the reference would reject it: ids of the wrong length, times before 2000 or past `latest`, a count that is not
  a whole non-negative number, cache above input, reasoning above output, more than `max_tokens_per_call`;
- it needs what SQL does not do here: a JSON member (`attr#a.b`) reached, a tag object, content attributes with
  `capture_content` on (they are redacted and bounded in Python), more tags than `max_attributes` (the reference
  counts the spans whose tags it cut);
- a value would not be spelled exactly as Python spells it: a map, bytes or an array inside an array, a double
  Python prints with an exponent (or NaN, inf), an array string json.dumps would escape, a count written as text
  other than plain digits (at most 18), JSON list text other than plain strings, a non-ASCII provider (Unicode
  lower/strip);
- names clash where Python's dicts would merge them: a repeated attribute key, two keys of 1024 characters or
  more, two tags of one name.
Values are NOT redacted (`redaction.attributes`): whoever stores the table applies redaction to it afterwards.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from google.protobuf.internal.encoder import _VarintBytes  # the varint OTLP's own length prefix uses

from ..conventions import CONVENTIONS, Convention, Field
from ..conventions.base import AGGREGATE_OPERATIONS, JSON_PATH, TOKEN_FIELDS, base_attribute
from ..conventions.providers import PROVIDER_ALIASES
from ..exporters.clickhouse import ARROW_SCHEMA
from ..privacy import CONTENT_ATTRIBUTES, CONTENT_PREFIXES
from ..processors.config import GenAIProcessorConfig
from ..processors.genai import _OPERATIONS, DEFAULT_PROJECT, MIN_TIMESTAMP_NS, PROJECT_ATTRIBUTE
from ..processors.markers import MarkerSearch
from ..sampling import THRESHOLD_PATTERN
from . import sql

try:
    from . import _flatten
except ImportError:  # built without a C compiler: ClickHouse's Protobuf format reads the requests
    _flatten = None  # type: ignore[assignment]
from .sql import as_count, as_str, as_str_list, as_text, count_ok, cut, literal, literals, readable

__all__ = ["BATCH_SCHEMA", "SCHEMA_FILE", "STRUCTURE", "EngineBatch", "EngineReader", "write_length_delimited"]

SCHEMA_FILE = Path(__file__).with_name("otlp_traces.proto")
"""ClickHouse's `format_schema`: `f"{SCHEMA_FILE}:ExportTraceServiceRequest"`."""

_ATTRIBUTES = f"Array(Tuple(key String, value {sql.VALUE}))"
STRUCTURE = (
    f"resource_spans Array(Tuple(resource Tuple(attributes {_ATTRIBUTES}), "
    "scope_spans Array(Tuple(scope Tuple(name String), spans Array(Tuple("
    "trace_id String, span_id String, trace_state String, parent_span_id String, name String, "
    f"start_time_unix_nano UInt64, end_time_unix_nano UInt64, attributes {_ATTRIBUTES}, status Tuple(code Int32)))))))"
)
"""The columns ClickHouse reads each request into, matching `otlp_traces.proto`."""
_SPAN = (
    "Tuple(trace_id String, span_id String, trace_state String, parent_span_id String, name String, "
    f"start_time_unix_nano UInt64, end_time_unix_nano UInt64, attributes {_ATTRIBUTES}, status Tuple(code Int32))"
)
RESOURCE_KEYS = ("service.name", "deployment.environment.name", "deployment.environment", PROJECT_ATTRIBUTE)
"""The resource attributes the query reads fields from: `_flatten` hands their texts to each span's row."""
FLAT_COLUMNS = (
    ("request", "UInt64"),
    ("resource_index", "UInt64"),
    ("scope_index", "UInt64"),
    ("span_index", "UInt64"),
    ("span", _SPAN),
    ("scope_name", "String"),
    ("marked", "UInt8"),
    ("scope_unmarked", "UInt64"),
    ("decode_bad", "UInt8"),
    ("attribute_counts", "Array(Int64)"),
    ("unread", "UInt8"),
    ("attribute_texts", "Array(String)"),
    ("resource_keys", "Array(String)"),
    ("resource_values", "Array(String)"),
    ("resource_fields", "Array(String)"),
    ("resource_unread", "UInt8"),
    ("attribute_kinds", "Array(UInt8)"),
)
"""The Native blocks `_flatten` writes: a row per span (and one per scope without spans), positions 1-based as
arrayEnumerate gives them; `marked`: the span has a marker key; `scope_unmarked`: its scope's spans without one;
`decode_bad`: a request `_flatten` did not read (its one row), left to the Python reader; `attribute_counts`: each
attribute's value as `as_count` reads it where `count_ok`, else -1; `unread`: some attribute is not spelled by the
engine as by Python (not `readable`, or keys Python's dict would merge); `attribute_texts`: each attribute's
`as_text`. Then the span's resource, read once: its first `max_attributes` keys and `as_str` values, cut as
resource_attributes keeps them, and the texts of RESOURCE_KEYS, on its scopes' first rows only (`_batch` gives
what the query makes of them, RESOURCE_COLUMNS, to the others); `resource_unread` (as `unread`) on every row. In
this order. Last, `attribute_kinds`: each attribute's key as `Query._class` sorts it before its tag prefix (0 read by
a convention, 3 content, 2 other)."""
_READ_KIND, _CONTENT_KIND = 0, 3
"""`attribute_kinds` of a key some convention reads, and of content (any other key is 2)."""
RESOURCE_COLUMNS = ("resource_attributes", "service_name", "environment", "project")
"""The row's columns made from its resource alone: the query makes them on a scope's first row only."""
_FLAT_HEADER = tuple((name.encode(), kind.encode()) for name, kind in FLAT_COLUMNS)
_RESOURCE_KEY_BYTES = tuple(key.encode() for key in RESOURCE_KEYS)

EXTRA_COLUMNS = ("has_usage", "response_id", "request")
_COMPUTED = tuple(
    name
    for name in ARROW_SCHEMA.names
    if name
    not in {"input_cost", "cache_read_cost", "cache_write_cost", "output_cost", "total_cost", "price_status",
            "price_source", "feature", "content"}
)  # fmt: skip
"""ARROW_SCHEMA's columns the query computes; the others are the same on every row before pricing."""
_WHITESPACE = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"
"""What str.strip() removes from ASCII text (the provider is normalized only when ASCII)."""
_PARTS = max(1, min(os.cpu_count() or 1, 8))
"""Files a batch is split into, read by as many threads (chDB releases the GIL while it runs)."""
_READING_NICENESS = 10
"""The OS priority (nice) of the threads that read behind the receivers: the query's, and the flattener's."""
_SETTINGS: dict[str, str | int] = {
    "format_schema": f"{SCHEMA_FILE}:ExportTraceServiceRequest",
    "input_format_protobuf_oneof_presence": 1,
    "max_threads": _PARTS,
    # Blocks read bounded by their bytes, not by requests: a whole segment in one block took ~1 GB for 50,000
    # spans. A bound in requests (`max_block_size`) also bounds the spans' ARRAY JOIN, which then gave blocks of
    # one request (~512 spans), each paying every expression's fixed cost per block: blocks of ~4 MiB (a few
    # thousand spans) take ~1/3 less CPU, and less memory, than blocks of 16 requests.
    "max_block_size": 65_536,
    "input_format_max_block_size_bytes": 4 * 2**20,
    # A bound, whatever batch.max_rows is: past it the query fails and the Python reader reads the segment.
    "max_memory_usage": 2 * 2**30,
    # Analysis and planning of this one big query, not reading, is the fixed cost of a batch: these rewrites find
    # nothing to improve in it and take most of that time.
    "optimize_and_compare_chain": 0,
    "query_plan_enable_optimizations": 0,
    # The JIT looks up every expression in its cache of compiled code at each query: ~5-10 % of the query's CPU
    # at 50,000 spans, more than compiled code saves on blocks of a few thousand rows (bench/README.md).
    "compile_expressions": 0,
    # Reading runs behind answering: the query's threads (the exporter's own while it waits, with no GIL held)
    # at a lower OS priority, so on busy cores the receivers' thread is scheduled first.
    "os_thread_priority": _READING_NICENESS,
    # The rows come back to this process, not over a network: compressing them (LZ4, Arrow's default here) and
    # decompressing them again cost ~0.9 µs a span (bench/README.md), more than reading ~3x the bytes in memory.
    "output_format_arrow_compression_method": "none",
}
_EMPTY_TEXT = "''"
_TRACE_ID, _SPAN_ID, _PARENT, _START, _END = (
    f"tupleElement(span, '{name}')"
    for name in ("trace_id", "span_id", "parent_span_id", "start_time_unix_nano", "end_time_unix_nano")
)
_STATUS = "multiIf(status_code_ = 1, 'OK', status_code_ = 2, 'ERROR', 'UNSET')"


def write_length_delimited(path: Path, bodies: Iterable[bytes | memoryview]) -> None:
    """Requests as ClickHouse's `Protobuf` format reads many messages (each prefixed by its varint length), written
    over `path` body by body: not truncated first, so the file's pages in the page cache are reused, and with no
    joined copy of the bodies."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as file:
        for body in bodies:
            file.write(_VarintBytes(len(body)))
            file.write(body)
        file.truncate()


@dataclass
class EngineBatch:
    table: pa.Table
    """Rows of the requests the engine read: exactly the columns of exporters.clickhouse.ARROW_SCHEMA in that order
    and those types (costs 0 as Decimal(18,12), price_status "no_usage", price_source "", feature "", content {}),
    then three more columns: "has_usage" (bool), "response_id" (string), "request" (int32: index into `bodies`).
    Rows ordered by request, then by the order the reference emits them. Values identical to what
    to_arrow(GenAIProcessor(config).decode(request).records) gives for those requests (before pricing/tags),
    with one difference: attribute values are NOT redacted (`redaction.attributes`); redaction is applied to
    this table afterwards."""
    fallback: list[int] = field(default_factory=list)
    """Indexes of requests the engine did not read because some span in them needs what SQL does not do exactly:
    the caller decodes those with the reference GenAIProcessor. No row of theirs is in `table`."""
    non_genai: int = 0
    """Over the requests read (not fallback), as DecodeResult counts them."""
    not_model_calls: int = 0


class EngineReader:
    """Reads batches of OTLP trace requests into GenAI rows with one ClickHouse query per batch."""

    def __init__(
        self,
        config: GenAIProcessorConfig,
        client: Client,
        workdir: Path,
        conventions: tuple[Convention, ...] = CONVENTIONS,
        flatten: bool | None = None,
    ) -> None:
        """`flatten`: requests flattened to spans by `_flatten` (native code) before the query, rather than read
        with ClickHouse's Protobuf format and flattened by the query; by default when `_flatten` is built."""
        if flatten and _flatten is None:
            raise RuntimeError("spanmeter.engine._flatten is not built (a C compiler is needed at install)")
        self._flatten = _flatten is not None if flatten is None else flatten
        self._config = config
        self._client = client
        self._workdir = Path(workdir)
        self._conventions = conventions
        self._read_keys = sorted(frozenset().union(*(c.consumed for c in conventions)))
        self._queries: dict[tuple[int, ...], str] = {}
        self._flatteners = ThreadPoolExecutor(
            max_workers=max(1, _PARTS - 1), thread_name_prefix="spanmeter-flatten", initializer=_behind_receivers
        )
        self._probes = [_probes((*c.markers, *c.scopes)) for c in conventions]
        owned = [(index, probe) for index, probes in enumerate(self._probes, 1) for probe in probes]
        self._probe_owners = [index for index, _ in owned]
        self._probe_search = MarkerSearch([probe for _, probe in owned])
        # What _flatten looks for while it writes the rows, each with the conventions (bit i - 1: the i-th) it
        # finds: scope names' prefixes, and marker keys among the known keys.
        scopes = sorted({scope for c in conventions for scope in c.scopes})
        self._scopes = (
            tuple(scope.encode() for scope in scopes),
            tuple(sum(1 << i for i, c in enumerate(conventions) if scope in c.scopes) for scope in scopes),
        )
        # The known keys, each with its `attribute_kinds` (read by a convention, or content) and, for a marker (a
        # key its convention reads: Convention.consumed), the conventions it marks: one lookup a key in _flatten.
        kinds = {key: _CONTENT_KIND for key in CONTENT_ATTRIBUTES} | {key: _READ_KIND for key in self._read_keys}
        masks = {
            marker: sum(1 << i for i, c in enumerate(conventions) if marker in c.markers)
            for c in conventions
            for marker in c.markers
        }
        self._known = (
            tuple(key.encode() for key in kinds),
            bytes(kinds.values()),
            tuple(masks.get(key, 0) for key in kinds),
            tuple(prefix.encode() for prefix in CONTENT_PREFIXES),
        )
        for stale in self._workdir.glob("requests-*.bin"):  # a batch's files a killed run left under its names
            stale.unlink(missing_ok=True)

    def read(self, requests: Sequence[bytes] | pa.ChunkedArray, latest_ns: Sequence[int]) -> EngineBatch:
        """Rows of every request read by the engine; the others listed in `fallback`. `requests`: the WAL's binary
        column of their bodies, read where it is (no copy of a segment's bodies into bytes objects, nor of those
        into one buffer to search), or the bodies themselves."""
        if not len(requests):
            return EngineBatch(_EMPTY)
        if not isinstance(requests, pa.ChunkedArray):
            requests = pa.chunked_array([pa.array(requests, pa.large_binary())])
        bodies = _views(requests)
        self._workdir.mkdir(parents=True, exist_ok=True)
        # One file per core, read in parallel (a file is one stream); each named by its first request's index.
        # The files are kept between batches and overwritten in place (renamed for the query): pages a file
        # already has in the page cache are reused, where a new file's are allocated and zeroed (costly on VMs).
        tag = uuid.uuid4().hex
        size = -(-len(bodies) // min(_PARTS, len(bodies)))
        parts = [(self._workdir / f"part-{part}.bin", first) for part, first in enumerate(range(0, len(bodies), size))]
        paths = [(self._workdir / f"requests-{tag}-{first}.bin", slot) for slot, first in parts]
        if self._flatten:  # the conventions whose markers or scopes _flatten found
            found = self._flatten_parts([(bodies[first : first + size], first, str(slot)) for slot, first in parts])
            active = tuple(i for i in range(1, len(self._conventions) + 1) if found >> (i - 1) & 1)
        else:
            for slot, first in parts:
                write_length_delimited(slot, bodies[first : first + size])
            active = self._active(requests)
        query = self._queries.get(active)
        if query is None:
            query = Query(self._config, self._conventions, active, self._read_keys, self._flatten).sql()
            self._queries[active] = query
        for path, slot in paths:
            slot.rename(path)
        try:
            result = self._client.query_arrow(
                query,
                parameters={
                    "path": str(self._workdir / f"requests-{tag}-*.bin"),
                    "latest": [int(latest) for latest in latest_ns],
                },
                use_strings=True,
            )
        finally:
            for path, slot in paths:
                path.rename(slot)
        return _batch(result)

    def _flatten_parts(self, parts: list[tuple[list[memoryview], int, str]]) -> int:
        """Each part (bodies, index of the first, file) flattened on a thread of its own, the first on this one (the
        flattener holds no GIL): this thread's work between two queries is otherwise one core's while the other
        has only the insert of the segments before, or nothing. Returns the conventions found (a mask)."""
        scopes, scope_masks = self._scopes
        known, known_kinds, known_masks, content_prefixes = self._known
        limits = (self._config.max_attributes, self._config.max_attribute_value_length)

        def flatten(bodies: list[memoryview], first: int, path: str) -> int:
            return _flatten.flatten(
                bodies, first, scopes, scope_masks, _RESOURCE_KEY_BYTES, *limits, known, known_kinds, known_masks,
                content_prefixes, _FLAT_HEADER, path,
            )[1]  # fmt: skip

        others = [self._flatteners.submit(flatten, *part) for part in parts[1:]]
        try:
            found = flatten(*parts[0])
        finally:
            wait(others)  # none may still write a file when this returns or raises
        for other in others:
            found |= other.result()
        return found

    def _active(self, array: pa.ChunkedArray) -> tuple[int, ...]:
        """The conventions (1-based positions) some span of the batch may be read with, when the requests are not
        flattened (`_flatten` finds them itself): one of their probes (see `_probes`) occurs in its bytes. The
        others' SQL is left out of the query.

        One Hyperscan pass over each chunk's bytes finds every probe (~0.2 µs a span; a probe made of the end of
        one body and the start of the next only makes the query longer); without Hyperscan, `_active_by_regex`."""
        found = self._probe_search.occurring(_chunk_bytes(array))
        if found is None:
            return self._active_by_regex(array)
        return tuple(sorted({self._probe_owners[index] for index in found}))

    def _active_by_regex(self, array: pa.ChunkedArray) -> tuple[int, ...]:
        """`_active` with Arrow's RE2 (~1.2 µs a span): one pass looks for all probes not found yet at once, body
        after body; the first body holding one tells which conventions it holds, and the pass goes on after it
        for the others' probes: a batch is read about once, not once per probe."""
        remaining = dict(enumerate(self._probes, 1))
        found: set[int] = set()
        while remaining and len(array):
            pattern = "|".join(re.escape(probe.decode()) for probes in remaining.values() for probe in probes)
            hits = pc.match_substring_regex(array, pattern).to_numpy(zero_copy_only=False)
            first = int(np.argmax(hits))
            if not hits[first]:
                break
            body = array[first].as_py()
            for index in [i for i, probes in remaining.items() if any(probe in body for probe in probes)]:
                found.add(index)
                del remaining[index]
            array = array.slice(first + 1)
        return tuple(sorted(found))


def _behind_receivers() -> None:
    """A flattening thread at the query's priority: on busy cores (answering) the receivers' thread goes first."""
    if sys.platform.startswith("linux"):  # elsewhere setpriority would take the whole process's
        thread = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, thread) < _READING_NICENESS:  # never raised: that needs privileges
            os.setpriority(os.PRIO_PROCESS, thread, _READING_NICENESS)


def _views(column: pa.ChunkedArray) -> list[memoryview]:
    """Each value of a binary column as a view of its buffer."""
    views: list[memoryview] = []
    for chunk in column.chunks:
        offsets, data = _layout(chunk)
        views.extend(data[start:end] for start, end in pairwise(offsets.tolist()))
    return views


def _chunk_bytes(column: pa.ChunkedArray) -> list[memoryview]:
    """The bytes of each chunk's values of a binary column, one view a chunk (no copy)."""
    views = []
    for chunk in column.chunks:
        if len(chunk):
            offsets, data = _layout(chunk)
            views.append(data[int(offsets[0]) : int(offsets[-1])])
    return views


def _layout(chunk: pa.Array) -> tuple[np.ndarray, memoryview]:
    """A binary chunk's value offsets (len + 1 of them, the chunk's slice) and its data buffer."""
    _, offsets_buffer, data_buffer = chunk.buffers()
    width = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, width)[chunk.offset : chunk.offset + len(chunk) + 1]
    return offsets, memoryview(data_buffer) if data_buffer is not None else memoryview(b"")


def _probes(names: Sequence[str]) -> tuple[bytes, ...]:
    """Substrings that every one of `names` contains one of: the common prefix of the names sharing a first dotted
    part (the scopes of OpenLLMetry's 15 instrumentations, one probe). A span carrying a name carries its probe, so
    a batch without any probe of a convention has none of its spans; a probe found without its name only makes the
    query longer."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split(".", 1)[0], []).append(name)
    return tuple(min(group)[: _common(min(group), max(group))].encode() for group in groups.values())


def _common(first: str, last: str) -> int:
    """The length of the prefix two strings share (of the sorted first and last, all of a group's)."""
    return next((n for n, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))


_POSITION = ("request", "resource_index", "scope_index", "span_index")
_RESULT = (*_COMPUTED, "has_usage", "response_id", *_POSITION, "span_class", "bad", "scope_non_genai")
"""The query's columns: the row's, and what tells which requests fall back and how many spans were not rows."""


def _batch(result: pa.Table) -> EngineBatch:
    """The query's rows (GenAI spans, and the first of each scope) into the batch, in the reference's order.
    Counts are taken on the rows as they came; the rows kept are then put in order by ONE take of the row's
    columns (a take, then a filter, of every column cost ~3 µs a span), and given their scope's RESOURCE_COLUMNS
    by a take of those."""
    request = result.column("request").to_numpy()
    kind = result.column("span_class").to_numpy()
    bad = result.column("bad").to_numpy().astype(bool)
    fallback = np.unique(request[bad])
    read = ~np.isin(request, fallback)
    first = result.column("span_index").to_numpy() <= 1
    non_genai = int(result.column("scope_non_genai").to_numpy()[read & first].sum())
    not_model_calls = int(np.count_nonzero(read & (kind == 1)))
    order = np.lexsort([result.column(name).to_numpy() for name in reversed(_POSITION)])
    keep = (read & (kind == 2))[order]
    rows = _taken(result.select([*_COMPUTED, "has_usage", "response_id", "request"]), order[keep])
    # A scope's first row holds what its resource makes (_flatten writes the resource once a scope, not once a
    # span; the query keeps that row): each kept row takes its scope's, the first of its scope in this order.
    sorted_first = first[order]
    scope_first = pa.array(order[np.maximum.accumulate(np.where(sorted_first, np.arange(len(order)), 0))][keep])
    for name in RESOURCE_COLUMNS:
        rows = rows.set_column(rows.schema.get_field_index(name), name, result.column(name).take(scope_first))
    return EngineBatch(_finish(rows), [int(r) for r in fallback], non_genai, not_model_calls)


def _taken(table: pa.Table, indices: np.ndarray) -> pa.Table:
    """`table.take(indices)`, as slices where the indices run on by one: the query's rows come in its threads'
    blocks, each in order, so a segment's rows are a dozen runs, and slices copy nothing (a take of every column,
    the maps' included, cost ~1 µs a span)."""
    if not len(indices):
        return table.slice(0, 0)
    starts = np.flatnonzero(np.diff(indices) != 1) + 1
    if len(starts) > len(indices) // 64:  # scattered rows: one take beats many small slices
        return table.take(pa.array(indices))
    bounds = zip(np.concatenate(([0], starts)), np.concatenate((starts, [len(indices)])), strict=True)
    return pa.concat_tables([table.slice(int(indices[first]), int(end - first)) for first, end in bounds])


def _finish(rows: pa.Table) -> pa.Table:
    """ARROW_SCHEMA's columns in order (the constant ones made here), then has_usage, response_id, request."""
    count = rows.num_rows
    columns: list[pa.Array | pa.ChunkedArray] = []
    for schema_field in ARROW_SCHEMA:
        name, arrow_type = schema_field.name, schema_field.type
        if name == "timestamp":
            columns.append(rows.column(name).cast(pa.int64()).cast(arrow_type))
        elif name in _COMPUTED:
            columns.append(rows.column(name).cast(arrow_type))
        elif name == "content":
            columns.append(pa.MapArray.from_arrays(pa.array(np.zeros(count + 1, np.int32)), pa.array([], pa.string()),
                                                   pa.array([], pa.string())).cast(arrow_type))  # fmt: skip
        else:
            constant = Decimal(0) if pa.types.is_decimal(arrow_type) else "no_usage" if name == "price_status" else ""
            columns.append(pa.repeat(pa.scalar(constant, arrow_type), count))
    extra = [
        rows.column("has_usage").cast(pa.bool_()),
        rows.column("response_id").cast(pa.string()),
        rows.column("request").cast(pa.int32()),
    ]
    names = [*ARROW_SCHEMA.names, *EXTRA_COLUMNS]
    return pa.Table.from_arrays([*columns, *extra], names=names)


BATCH_SCHEMA = pa.schema(
    [*ARROW_SCHEMA, pa.field("has_usage", pa.bool_()), pa.field("response_id", pa.string()),
     pa.field("request", pa.int32())]
)  # fmt: skip
"""`EngineBatch.table`'s columns: the exporter's, then what duplicates and the caller need (EXTRA_COLUMNS)."""
_EMPTY = BATCH_SCHEMA.empty_table()


class Query:
    """The SELECT for one set of active conventions, generated from their tables."""

    def __init__(
        self,
        config: GenAIProcessorConfig,
        conventions: tuple[Convention, ...],
        active: tuple[int, ...],
        read_keys: Sequence[str],
        flat: bool = False,
    ) -> None:
        """`flat`: the query reads `_flatten`'s Native files (FLAT_COLUMNS), not the requests themselves."""
        self._config = config
        self._conventions = conventions
        self._active = active
        self._read_keys = read_keys
        self._flat = flat

    # --- per convention ------------------------------------------------------------------------

    def _by_convention(self, build: Callable[[Convention], str], default: str) -> str:
        """`build(convention)` for the span's convention (`conv`): one branch per distinct text, `default` for
        spans of none. One text for every active convention is the value on every row: a span of none (conv 0)
        is ordinary, and no later stage reads its values (its span_class is 0, its `bad` decode_bad alone), so
        the test of `conv` is left out (~6 ms of analysis a query where one convention is active)."""
        branches: dict[str, list[int]] = {}
        for index in self._active:
            branches.setdefault(build(self._conventions[index - 1]), []).append(index)
        if len(branches) == 1:
            return next(iter(branches))
        parts = [f"conv IN ({', '.join(map(str, indexes))}), {text}" for text, indexes in branches.items()]
        return f"multiIf({', '.join(parts)}, {default})" if parts else default

    def _scope_convention(self) -> str:
        branches = [
            f"{' OR '.join(f'startsWith(scope_name, {literal(p)})' for p in c.scopes)}, {i}" for i, c in self._scoped()
        ]
        return f"multiIf({', '.join(branches)}, 0)" if branches else "0"

    def _scoped(self) -> list[tuple[int, Convention]]:
        return [(i, self._conventions[i - 1]) for i in self._active if self._conventions[i - 1].scopes]

    def _marker_convention(self) -> str:
        branches = [
            f"hasAny(ks, {literals(c.markers)}), {i}" for i in self._active if (c := self._conventions[i - 1]).markers
        ]
        return f"multiIf({', '.join(branches)}, 0)" if branches else "0"

    def _marked(self, span: str) -> str:
        """Whether the span carries a marker of an active convention."""
        if self._flat:
            return "(marked = 1)"  # _flatten marked spans with every convention's markers; those it found are active
        markers = sorted({m for i in self._active for m in self._conventions[i - 1].markers})
        return f"hasAny(tupleElement(tupleElement({span}, 'attributes'), 'key'), {literals(markers)})"

    def _model_call(self, convention: Convention) -> str:
        """_is_model_call: not a wrapper, and (when the convention has one) passing its call filter."""
        condition = "1"
        if convention.wrapper_filter is not None:
            key, values = convention.wrapper_filter
            condition = f"NOT ({_text(key)} IN {_tuple(values)})"
        if convention.call_filter is not None:
            key, values = convention.call_filter
            condition += f" AND {_present(key)} AND {_text(key)} IN {_tuple(values)}"
        return condition

    def _kind_operation(self, convention: Convention) -> str:
        if convention.call_filter is None or not convention.kind_operations:
            return "''"
        key = convention.call_filter[0]
        mapping = convention.kind_operations
        return (
            f"if({_present(key)}, transform({_text(key)}, {literals(mapping)}, {literals(mapping.values())}, ''), '')"
        )

    def _count(self, index: str) -> str:
        if self._flat:  # -1 where not count_ok: the span falls back (counts_bad)
            return f"if({index} > 0, toInt128(attribute_counts[{index}]), 0)"
        return f"if({index} > 0, {as_count(f'vs[{index}]')}, 0)"

    def _count_ok(self, index: str) -> str:
        return f"attribute_counts[{index}] >= 0" if self._flat else count_ok(f"vs[{index}]")

    def _field_index(self, name: Field) -> str:
        """Position in the span's attributes of the first plain attribute present for the field (0: none)."""

        def pick(convention: Convention) -> str:
            keys = [key for key in convention.fields.get(name, ()) if JSON_PATH not in key]
            if not keys:
                return "0"
            *tried, last = keys  # the last key's position is 0 when it is absent too
            return (
                f"multiIf({', '.join(f'{_index(k)} > 0, {_index(k)}' for k in tried)}, {_index(last)})"
                if tried
                else _index(last)
            )

        return self._by_convention(pick, "0")

    def _json_reached(self, convention: Convention) -> str:
        """A field whose first attribute present is a JSON member's (`attr#a.b`): read in Python."""
        conditions = []
        for keys in convention.fields.values():
            for position, key in enumerate(keys):
                if JSON_PATH in key:
                    before = [k for k in keys[:position] if JSON_PATH not in k]
                    earlier = " OR ".join(_present(k) for k in before) or "0"
                    conditions.append(f"({_present(base_attribute(key))} AND NOT ({earlier}))")
        objects = [_present(name) for name in convention.tag_objects]
        return " OR ".join(conditions + objects) or "0"

    def _provider(self, convention: Convention) -> str:
        branches = [f"startsWith(provider_text, {literal(p)}), {literal(v)}" for p, v in convention.provider_prefixes]
        branches.append("provider_text != '', provider_text")
        return f"multiIf({', '.join(branches)}, {literal(convention.default_provider)})"

    def _excludes_cache(self, convention: Convention) -> str:
        if "*" in convention.input_excludes_cache:
            return "1"
        return f"provider IN {_tuple(convention.input_excludes_cache)}" if convention.input_excludes_cache else "0"

    def _tag_prefix(self, convention: Convention) -> str:
        """Per attribute: the length of the first tag prefix it starts with, else -1."""
        branches = [f"startsWith(k, {literal(p)}), {len(p.encode())}" for p in convention.tag_prefixes]
        body = f"multiIf({', '.join(branches)}, -1)" if branches else "-1"
        return f"arrayMap(k -> {body}, ks)"

    def _class(self, convention: Convention) -> str:
        """Per attribute: 1 a tag, 2 kept in span_attributes, 3 content; 0 read by a convention or dropped
        (tag_skip)."""
        skip = " OR ".join(f"startsWith(substring(k, l + 1), {literal(s)})" for s in convention.tag_skip) or "0"
        if self._flat:  # _flatten's attribute_kinds: the same tests of the key, in native code
            body = f"if(t = {_READ_KIND}, 0, if(l >= 0, if({skip}, 0, 1), t))"
            return f"arrayMap((t, k, l) -> {body}, attribute_kinds, ks, tag_prefix)"
        content = f"k IN {_tuple(CONTENT_ATTRIBUTES)}"
        if CONTENT_PREFIXES:
            content += " OR " + " OR ".join(f"startsWith(k, {literal(p)})" for p in CONTENT_PREFIXES)
        return (
            f"arrayMap((k, l) -> if(k IN {_tuple(self._read_keys)}, 0, if(l >= 0, if({skip}, 0, 1), "
            f"if({content}, 3, 2))), ks, tag_prefix)"
        )

    def _field_tags(self, convention: Convention, part: str) -> str:
        """Field attributes under a tag prefix that are also tags: names (`part` "keys") or values."""
        items = [
            f"if({_present(key)}, [{literal(tag) if part == 'keys' else cut(_str(key))}], [])"
            for key, tag in convention.field_tags
        ]
        return f"arrayConcat({', '.join(items)}, [])" if items else "[]"

    def _tag_lists(self, convention: Convention, part: str) -> str:
        items = [
            f"if({_present(name)}, [{literal(name) if part == 'keys' else _joined(name)}], [])"
            for name in convention.tag_lists
        ]
        return f"arrayConcat({', '.join(items)}, [])" if items else "[]"

    def _lists_ok(self, convention: Convention) -> str:
        return " AND ".join(f"{sql.list_ok(_value(n))}" for n in convention.tag_lists) or "1"

    def _aggregate_usage(self, convention: Convention) -> str:
        """_keep_aggregate_usage: of an agent or tool span, every token attribute present, in TOKEN_FIELDS' order
        (a key named twice where it first is: the same value), kept as an attribute."""
        keys = [key for name in TOKEN_FIELDS for key in convention.fields.get(name, ()) if JSON_PATH not in key]
        if not keys:
            return "[]"
        return f"if(aggregate, arrayFilter(k -> has(ks, k), {literals(dict.fromkeys(keys))}), [])"

    def _tags_bad(self, convention: Convention) -> str:
        """Two tags of one name (two prefixes, or a field or list tag): Python keeps one of them, in its way."""
        if len(convention.tag_prefixes) < 2 and not convention.field_tags and not convention.tag_lists:
            return "0"  # names are distinct keys less one prefix
        names = "arrayConcat(tag_names, field_tag_names, list_tag_names)"
        return f"arrayUniq({names}) != length({names})"

    # --- the query -----------------------------------------------------------------------------

    def sql(self) -> str:
        """The SELECT, with its settings: in the query rather than the session's (a chDB client sets and restores
        session settings around every query it is given them for: ~70 ms)."""
        settings = ", ".join(f"{name} = {literal(value)}" for name, value in _SETTINGS.items())
        if self._flat:
            flat = "SELECT *, {latest:Array(UInt64)}[request + 1] AS latest FROM file({path:String}, 'Native')"
            resource_and_scope = self._resource_columns() + self._scope_columns()
            spans = (
                f"SELECT * FROM ({_staged(flat, resource_and_scope)}) WHERE span_index <= 1 OR sconv > 0 OR marked = 1"
            )
            return f"SELECT {', '.join(_RESULT)} FROM ({_staged(spans, self._span_columns())})\nSETTINGS {settings}"
        source = f"file({{path:String}}, 'Protobuf', {literal(STRUCTURE)})"
        # The latest time accepted, once per request (an array indexed per span would be copied for each).
        # A message's place in the batch: its file's first request (in the file's name) plus its place in the file.
        numbered = (
            f"SELECT toUInt64(extract(_file, '-(\\d+)\\.bin$')) + _row_number AS request, resource_spans FROM {source}"
        )
        requests = f"SELECT *, {{latest:Array(UInt64)}}[request + 1] AS latest FROM ({numbered})"
        scopes = f"""SELECT request, latest, resource_index, resource_, scope_index, scope_spans_ FROM ({requests})
ARRAY JOIN resource_spans AS resource_, arrayEnumerate(resource_spans) AS resource_index
ARRAY JOIN tupleElement(resource_, 'scope_spans') AS scope_spans_,
  arrayEnumerate(tupleElement(resource_, 'scope_spans')) AS scope_index"""
        # One row per GenAI span, and the first row of each scope (or an empty one): it carries the scope's count
        # of ordinary spans. Files are read in parallel; `_batch` puts rows back in order.
        resource_and_scope = self._resource_columns() + self._scope_columns()
        spans = f"""SELECT *, span, span_index FROM ({_staged(scopes, resource_and_scope)})
LEFT ARRAY JOIN scope_all_spans AS span, arrayEnumerate(scope_all_spans) AS span_index
WHERE span_index <= 1 OR sconv > 0 OR {self._marked("span")}"""
        return f"SELECT {', '.join(_RESULT)} FROM ({_staged(spans, self._span_columns())})\nSETTINGS {settings}"

    def _resource_columns(self) -> list[tuple[str, str]]:
        """The span's resource: its attributes as the row keeps them, and the fields read from them."""
        config = self._config
        most = config.max_attributes
        limit = config.max_attribute_value_length
        if self._flat:  # _flatten read the resource (once) into the span's row

            def text(key: str) -> str:
                return f"resource_fields[{RESOURCE_KEYS.index(key) + 1}]"

            columns = [
                "mapFromArrays(resource_keys, resource_values) AS resource_attributes",
                "resource_unread = 1 AS resource_bad",
            ]
        else:

            def text(key: str) -> str:
                return f"rtexts[indexOf(rks, {literal(key)})]"

            attributes = "tupleElement(tupleElement(resource_, 'resource'), 'attributes')"
            columns = [
                f"tupleElement({attributes}, 'key') AS rks",
                f"tupleElement({attributes}, 'value') AS rvs",
                f"arrayMap(v -> {as_str('v')}, rvs) AS rstrs",
                f"arrayMap((v, s) -> {as_text('v', 's')}, rvs, rstrs) AS rtexts",
                f"mapFromArrays(arrayMap(k -> {cut('k')}, arraySlice(rks, 1, {most})), "
                f"arrayMap(s -> {cut('s', limit)}, arraySlice(rstrs, 1, {most}))) AS resource_attributes",
                f"(NOT arrayAll(v -> {readable('v')}, rvs) OR {_unusual_keys('rks')}) AS resource_bad",
            ]
        service, project = text("service.name"), text(PROJECT_ATTRIBUTE)
        current, deprecated = text("deployment.environment.name"), text("deployment.environment")
        columns += [
            f"if({service} != '', {service}, 'unknown_service') AS service_name",
            f"if({current} != '', {current}, {deprecated}) AS environment",
            f"if({project} != '', {project}, {literal(DEFAULT_PROJECT)}) AS project",
        ]
        return _aliased(columns)

    def _scope_columns(self) -> list[tuple[str, str]]:
        """The span's scope: its convention by name, and its count of ordinary spans."""
        if self._flat:
            return _aliased(
                [f"{self._scope_convention()} AS sconv", "if(sconv > 0, 0, scope_unmarked) AS scope_non_genai"]
            )
        return _aliased(
            [
                "tupleElement(tupleElement(scope_spans_, 'scope'), 'name') AS scope_name",
                f"{self._scope_convention()} AS sconv",
                "tupleElement(scope_spans_, 'spans') AS scope_all_spans",
                f"if(sconv > 0, 0, arrayCount(s -> NOT {self._marked('s')}, scope_all_spans)) AS scope_non_genai",
                "0 AS decode_bad",
            ]
        )

    def _span_columns(self) -> list[tuple[str, str]]:
        """Every column of a span's row, and of the reasons it may fall back, in the order they build on."""
        indexes = {name: self._field_index(name) for name in Field}
        # A field no active convention names is a constant (a constant index 0 is an error, not a default).
        read = {name for name, index in indexes.items() if index != "0"}
        columns = self._span_values()
        columns += [f"{indexes[name]} AS {_field(name)}" for name in Field if name in read]
        columns += self._field_values(read)
        columns += self._operation_provider_tokens(read)
        columns += self._tags_and_attributes()
        columns += self._fallback_reasons(read)
        columns += self._row(read)
        return _aliased(columns)

    def _span_values(self) -> list[str]:
        """Keys, values and `as_str` of every attribute; the convention and class of the span."""
        by = self._by_convention
        return [
            "tupleElement(tupleElement(span, 'attributes'), 'key') AS ks",
            "tupleElement(tupleElement(span, 'attributes'), 'value') AS vs",
            # _flatten wrote each attribute's as_str as its string_value, and its as_text
            "tupleElement(vs, 'string_value') AS strs" if self._flat else f"arrayMap(v -> {as_str('v')}, vs) AS strs",
            "attribute_texts AS texts" if self._flat else f"arrayMap((v, s) -> {as_text('v', 's')}, vs, strs) AS texts",
            f"if(sconv > 0, sconv, {self._marker_convention()}) AS conv",
            f"span_index > 0 AND (sconv > 0 OR {self._marked('span')}) AS genai",
            f"if(NOT genai, 0, if({by(self._model_call, '0')}, 2, 1)) AS span_class",
        ]

    def _field_values(self, read: set[Field]) -> list[str]:
        """Each field's value (`<field>_`): text, or a count read from the token fields' attributes only (a regex on
        every attribute costs ~5 µs a span)."""
        texts = [
            f"{f'texts[{_field(name)}]' if name in read else _EMPTY_TEXT} AS {name.value}_"
            for name in Field
            if name not in TOKEN_FIELDS and name is not Field.FINISH_REASONS
        ]
        counts = [
            f"{self._count(_field(name)) if name in read else 'toInt128(0)'} AS {name.value}_" for name in TOKEN_FIELDS
        ]
        return texts + counts

    def _operation_provider_tokens(self, read: set[Field]) -> list[str]:
        """The operation, the normalized provider and the token sums, as `_read_tokens` makes them."""
        by = self._by_convention
        limit = self._config.max_tokens_per_call
        operation_values = by(
            lambda c: (
                f"transform(operation_, {literals(c.operation_values)}, {literals(c.operation_values.values())}, "
                "operation_)"
                if c.operation_values
                else "operation_"
            ),
            "operation_",
        )
        return [
            f"{operation_values} AS operation_mapped",
            f"{by(self._kind_operation, _EMPTY_TEXT)} AS kind_operation",
            "substringIndex(tupleElement(span, 'name'), ' ', 1) AS name_operation",
            "if(operation_mapped != '', operation_mapped, if(kind_operation != '', kind_operation, "
            f"if(name_operation IN {_tuple(sorted(_OPERATIONS))}, name_operation, ''))) AS operation",
            "provider_ AS provider_text",
            f"{by(self._provider, 'provider_text')} AS provider_raw",
            f"trim(BOTH {literal(_WHITESPACE)} FROM lower(provider_raw)) AS provider_stripped",
            f"transform(provider_stripped, {literals(PROVIDER_ALIASES)}, {literals(PROVIDER_ALIASES.values())}, "
            "provider_stripped) AS provider",
            f"operation IN {_tuple(sorted(AGGREGATE_OPERATIONS))} AS aggregate",
            f"{by(self._excludes_cache, '0')} AS excludes_cache",
            f"{by(lambda c: '1' if c.output_excludes_reasoning else '0', '0')} AS excludes_reasoning",
            f"if({_present_field(Field.UNCACHED_INPUT_TOKENS, read)} > 0, "
            "uncached_input_tokens_ + cache_read_tokens_ + cache_write_tokens_, "
            "input_tokens_ + if(excludes_cache, cache_read_tokens_ + cache_write_tokens_, 0)) AS input_sum",
            "output_tokens_ + if(excludes_reasoning, reasoning_tokens_, 0) AS output_sum",
            "NOT aggregate AND (cache_read_tokens_ + cache_write_tokens_ > input_sum "
            "OR reasoning_tokens_ > output_sum "
            f"OR input_sum > {limit} OR output_sum > {limit}) AS tokens_bad",
        ]

    def _tags_and_attributes(self) -> list[str]:
        """Tags and span attributes from the attributes no convention reads. Lambdas take parallel arrays: one
        capturing an array (`ks[i]`) copies it for every element."""
        by = self._by_convention
        most = self._config.max_attributes
        limit = self._config.max_attribute_value_length
        # Tags from fields and lists only where an active convention has such tags: otherwise the arrays are
        # constants, whose concatenation still costs ~7 ms a query of 50,000 spans.
        structured = [
            alias
            for alias, text in (
                ("field_tag", by(lambda c: self._field_tags(c, "keys"), "[]")),
                ("list_tag", by(lambda c: self._tag_lists(c, "keys"), "[]")),
            )
            if text != "[]"
        ]
        tag_names = _concat(f"arraySlice(tag_names, 1, {most})", *(f"{alias}_names" for alias in structured))
        tag_values = _concat("tag_values", *(f"{alias}_values" for alias in structured))
        return [
            f"{by(self._tag_prefix, 'arrayMap(k -> -1, ks)')} AS tag_prefix",
            f"{by(self._class, 'arrayMap(k -> 2, ks)')} AS rest_class",
            f"arrayMap((k, l) -> {cut('substring(k, l + 1)')}, arrayFilter((k, c) -> c = 1, ks, rest_class), "
            "arrayFilter((l, c) -> c = 1, tag_prefix, rest_class)) AS tag_names",
            f"arrayMap(s -> {cut('s')}, arraySlice(arrayFilter((s, c) -> c = 1, strs, rest_class), 1, {most})) "
            "AS tag_values",
            f"{by(lambda c: self._field_tags(c, 'keys'), '[]')} AS field_tag_names",
            f"{by(lambda c: self._field_tags(c, 'values'), '[]')} AS field_tag_values",
            f"{by(lambda c: self._tag_lists(c, 'keys'), '[]')} AS list_tag_names",
            f"{by(lambda c: self._tag_lists(c, 'values'), '[]')} AS list_tag_values",
            f"mapFromArrays({tag_names}, {tag_values}) AS tags",
            f"arrayMap(k -> {cut('k')}, arrayFilter((k, c) -> c = 2, ks, rest_class)) AS kept_names",
            f"{by(self._aggregate_usage, '[]')} AS usage_names",
            "if(response_id_ != '', ['gen_ai.response.id'], []) AS response_name",
            f"mapFromArrays(arrayConcat(arraySlice(kept_names, 1, {most}), response_name, usage_names), "
            f"arrayConcat(arrayMap(s -> {cut('s', limit)}, "
            f"arraySlice(arrayFilter((s, c) -> c = 2, strs, rest_class), 1, {most})), "
            f"if(response_id_ != '', [response_id_], []), arrayMap(k -> {cut('strs[indexOf(ks, k)]')}, usage_names))) "
            "AS span_attributes",
        ]

    def _fallback_reasons(self, read: set[Field]) -> list[str]:
        """Why a span's request goes to the Python reader (see the module's docstring), one column each:
        ClickHouse's logical-expression pass costs seconds on one OR of them all."""
        by = self._by_convention
        tokens_ok = " AND ".join(f"({_field(n)} = 0 OR {self._count_ok(_field(n))})" for n in TOKEN_FIELDS if n in read)
        finish = _field(Field.FINISH_REASONS)
        reasons = {
            # _flatten looked at every attribute
            "read_bad": "unread = 1"
            if self._flat
            else f"NOT arrayAll(v -> {readable('v')}, vs) OR {_unusual_keys('ks')}",
            "ids_bad": f"length({_TRACE_ID}) != 16 OR length({_SPAN_ID}) != 8 OR length({_PARENT}) NOT IN (0, 8)",
            "times_bad": f"{_START} < {MIN_TIMESTAMP_NS} OR greatest({_START}, {_END}) > latest",
            "counts_bad": f"NOT ({tokens_ok or '1'})",
            "json_bad": by(self._json_reached, "0"),
            "provider_bad": "length(provider_raw) != lengthUTF8(provider_raw)",
            "finish_bad": (
                f"{finish} > 0 AND NOT {sql.list_ok(f'vs[{finish}]')}" if Field.FINISH_REASONS in read else "0"
            ),
            "lists_bad": f"NOT ({by(self._lists_ok, '1')})",
            "tags_bad": by(self._tags_bad, "0"),
            # Tags past max_attributes are left out and counted (`tags_capped`): the reference does both.
            "capped_bad": f"length(tag_names) > {self._config.max_attributes}",
            "attributes_bad": (
                "0"  # a key some convention reads is not among the kept ones
                if "gen_ai.response.id" in self._read_keys
                else "response_id_ != '' AND has(kept_names, 'gen_ai.response.id')"
            ),
            "content_bad": "has(rest_class, 3)" if self._config.capture_content else "0",
        }
        span_bad = " OR ".join(alias for alias in reasons if alias != "read_bad")
        return [
            *(f"{expression} AS {alias}" for alias, expression in reasons.items()),
            f"{span_bad} OR tokens_bad OR resource_bad AS span_bad",
            "decode_bad = 1 OR (span_class > 0 AND (read_bad OR (span_class = 2 AND span_bad))) AS bad",
        ]

    def _row(self, read: set[Field]) -> list[str]:
        """The row's columns as ARROW_SCHEMA names them (the resource's come from the scope's subquery)."""
        finish = _field(Field.FINISH_REASONS)
        finish_reasons = (
            f"if({finish} > 0, {as_str_list(f'vs[{finish}]', f'strs[{finish}]')}, [])"
            if Field.FINISH_REASONS in read
            else "CAST([], 'Array(String)')"
        )
        usage = " OR ".join(
            f"{_present_field(name, read)} > 0"
            for name in (Field.INPUT_TOKENS, Field.UNCACHED_INPUT_TOKENS, Field.OUTPUT_TOKENS)
        )
        return [
            f"{_START} AS timestamp",
            f"lower(hex({_TRACE_ID})) AS trace_id",
            f"lower(hex({_SPAN_ID})) AS span_id",
            f"lower(hex({_PARENT})) AS parent_span_id",
            "request_model_ AS request_model",
            "response_model_ AS response_model",
            "toUInt64(if(aggregate, 0, input_sum)) AS input_tokens",
            "toUInt64(if(aggregate, 0, output_sum)) AS output_tokens",
            "toUInt64(if(aggregate, 0, cache_read_tokens_)) AS cache_read_tokens",
            "toUInt64(if(aggregate, 0, cache_write_tokens_)) AS cache_write_tokens",
            "toUInt64(if(aggregate, 0, reasoning_tokens_)) AS reasoning_tokens",
            f"if({_END} > {_START}, {_END} - {_START}, 0) AS duration_ns",
            "tupleElement(tupleElement(span, 'status'), 'code') AS status_code_",
            f"{_STATUS} AS status_code",
            "error_type_ AS error_type",
            f"{finish_reasons} AS finish_reasons",
            "user_id_ AS user_id",
            "session_id_ AS session_id",
            "conversation_id_ AS conversation_id",
            f"{self._by_convention(lambda c: literal(c.name), _EMPTY_TEXT)} AS convention",
            f"NOT aggregate AND ({usage}) AS has_usage",
            "response_id_ AS response_id",
            # sampling.threshold: the same pattern (RE2 here), the hex digits right-padded to 56 bits.
            f"extract(concat(',', tupleElement(span, 'trace_state'), ','), {literal(THRESHOLD_PATTERN)}) AS th_digits",
            "if(th_digits = '', toUInt64(0), "
            "reinterpretAsUInt64(reverse(unhex(concat('00', rightPad(th_digits, 14, '0')))))) AS sampling_threshold",
        ]


def _field(name: Field) -> str:
    """The alias of the field's attribute position in the span (0: none present)."""
    return f"f_{sql.identifier(name.value)}"


def _present_field(name: Field, read: set[Field]) -> str:
    return _field(name) if name in read else "0"


def _aliased(columns: list[str]) -> list[tuple[str, str]]:
    """`expression AS alias` texts as (alias, expression)."""
    pairs = []
    for column in columns:
        expression, _, alias = column.rpartition(" AS ")
        pairs.append((sql.identifier(alias), expression))
    return pairs


_LEVELS_A_SELECT = 2
"""Dependency levels of columns computed in one SELECT of `_staged`."""


def _staged(source: str, columns: list[tuple[str, str]]) -> str:
    """SELECTs nested over `source`, each adding the columns of `_LEVELS_A_SELECT` levels: a column's level is one
    above the highest of the columns it reads. An alias used in the same SELECT is expanded by the analyzer into
    its whole expression at every use (chains of them grow the query tree, and its analysis time, many times
    over), a column of a subquery is read once; but every SELECT costs the analysis and the plan each of its
    ~150 columns (`SELECT *`) again. Two levels a SELECT, an alias expanded at most once, halve the SELECTs and
    take ~10 % off the query at 50,000 spans; three cost more than one where every convention is active."""
    depth: dict[str, int] = {}
    for alias, expression in columns:
        used = [depth[name] for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expression) if name in depth]
        depth[alias] = max(used, default=-1) + 1
    query = source
    for level in range(0, max(depth.values(), default=-1) + 1, _LEVELS_A_SELECT):
        added = ", ".join(
            f"{expression} AS {alias}"
            for alias, expression in columns
            if level <= depth[alias] < level + _LEVELS_A_SELECT
        )
        query = f"SELECT *, {added} FROM ({query})"
    return query


def _concat(*arrays: str) -> str:
    """The arrays one after another (one needs no concatenation)."""
    return arrays[0] if len(arrays) == 1 else f"arrayConcat({', '.join(arrays)})"


def _unusual_keys(keys: str) -> str:
    """Keys Python reads as a dict (the last of a repeated key wins), or two of which it may cut to one name (at
    1024 characters): not read by the engine. One long key is cut as Python does."""
    return f"(arrayUniq({keys}) != length({keys}) OR arrayCount(k -> length(k) >= 1024, {keys}) > 1)"


def _index(key: str) -> str:
    return f"indexOf(ks, {literal(key)})"


def _present(key: str) -> str:
    return f"({_index(key)} > 0)"


def _value(key: str, of: str = "vs") -> str:
    """The attribute's value (`vs`), as_str (`strs`) or as_text (`texts`): a default ('') when absent."""
    return f"{of}[{_index(key)}]"


def _str(key: str) -> str:
    return _value(key, "strs")


def _text(key: str) -> str:
    return _value(key, "texts")


def _joined(name: str) -> str:
    """_structured_tags' list tag: the labels joined by commas, cut."""
    return cut(f"arrayStringConcat({as_str_list(_value(name), _str(name))}, ',')")


def _tuple(values: Iterable[str]) -> str:
    """A set of names for `IN` (one element needs the trailing comma of a tuple)."""
    items = sorted(values)
    if not items:
        raise ValueError("an empty set of names")
    return "(" + ", ".join(literal(v) for v in items) + ("," if len(items) == 1 else "") + ")"
