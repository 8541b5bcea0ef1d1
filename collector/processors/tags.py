"""The `tags` processor: tag rules from pipelines.yaml, then promotion of the tags that have
their own columns (`feature`, `user_id`, `session_id`).

`process_table` is its twin on an Arrow batch, reading the `span_attributes` and `resource_attributes` map columns
where `process` reads the raw OTLP attributes. Those columns hold what the genai processor kept, so a rule is
read from them only where they hold the raw value for sure (`columnar_ok`, and the mask of rows that are not):
not for an attribute the genai processor never keeps there (read into a column or a tag by some convention,
content, a key of 1024 characters or more), nor in a row where the value may be cut
(`max_attribute_value_length`), redacted, or left out (the map at `max_attributes`), nor for rows of a convention
whose tag prefix takes the attribute. Regexes are Python's, run once per distinct value (RE2 differs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..arrow_maps import map_lookup
from ..conventions import CONVENTIONS, Convention
from ..otlp_values import as_str
from ..privacy import is_content
from ..records import SpanRecord
from .config import GenAIProcessorConfig, TagsProcessorConfig
from .genai import MAX_COLUMN_LENGTH

__all__ = ["TagsProcessor"]

_MAX_TAG_VALUE = 1024


@dataclass(frozen=True)
class _CompiledRule:
    tag: str
    scope: str  # "span" or "resource"
    key: str
    pattern: re.Pattern[str] | None

    def value(self, record: SpanRecord, span_attributes: dict[str, Any]) -> str | None:
        source = span_attributes if self.scope == "span" else record.resource
        raw = source.get(self.key)
        if raw is None:
            return None
        text = as_str(raw)
        if self.pattern is None:
            return text
        match = self.pattern.search(text)
        if match is None:
            return None
        return match.group("value") if "value" in self.pattern.groupindex else match.group(1)


class TagsProcessor:
    """Applies rules in order (a later rule overwrites an earlier one for the same tag)."""

    def __init__(
        self,
        config: TagsProcessorConfig,
        genai: GenAIProcessorConfig | None = None,
        conventions: tuple[Convention, ...] = CONVENTIONS,
    ) -> None:
        """`genai` and `conventions`: those of the genai processor that made the rows `process_table` reads."""
        self._rules = [
            _CompiledRule(
                tag=rule.tag,
                scope=rule.from_.split(".", 1)[0],
                key=rule.from_.split(".", 1)[1],
                pattern=re.compile(rule.regex) if rule.regex else None,
            )
            for rule in config.rules
        ]
        self._genai = genai or GenAIProcessorConfig()
        self._conventions = {convention.name: convention for convention in conventions}
        consumed = frozenset().union(*(c.consumed for c in conventions))
        self.columnar_ok = all(self._readable(rule, consumed) for rule in self._rules)
        """Whether `process_table` can read every rule's attribute from the columns (in most rows)."""

    def _readable(self, rule: _CompiledRule, consumed: frozenset[str]) -> bool:
        """Whether the genai processor keeps the rule's attribute in its map column (when not cut or capped)."""
        if len(rule.key) >= MAX_COLUMN_LENGTH:
            return False
        if rule.scope == "span" and (rule.key in consumed or is_content(rule.key) or rule.key == "gen_ai.response.id"):
            return False
        redaction = self._genai.redaction
        # A replacement the text cannot show (empty, or with group references) hides that a value was redacted.
        rules = redaction.rules
        return not (
            redaction.attributes
            and any(not r.replacement or "\\" in r.replacement for r in rules if r.replacement is not None)
        )

    def process(self, records: Iterable[SpanRecord]) -> None:
        reads_spans = any(rule.scope == "span" for rule in self._rules)
        for record in records:
            if self._rules:
                # Index the span's attributes only when a rule reads them.
                span_attributes = {kv.key: kv.value for kv in record.attributes} if reads_spans else {}
                for rule in self._rules:
                    value = rule.value(record, span_attributes)
                    if value:
                        record.tags[rule.tag] = value[:_MAX_TAG_VALUE]
            promote(record)

    def process_table(self, table: pa.Table) -> tuple[pa.Table, npt.NDArray[np.bool_]]:
        """`process` on the rows of an Arrow batch: the table with `tags`, `feature`, `user_id` and `session_id` as
        `process` leaves them, and the rows whose attributes the columns may not hold as sent (see the module's
        docstring): the caller processes those rows' records with `process` and uses their rows instead (their
        rows in the returned table are not to be used). Every row falls back when not `columnar_ok`."""
        rows = table.num_rows
        fallback = np.zeros(rows, dtype=bool)
        if not self.columnar_ok:
            return table, ~fallback
        additions: list[tuple[str, npt.NDArray[np.int64], pa.Array]] = []
        for rule in self._rules:
            column = table.column("span_attributes" if rule.scope == "span" else "resource_attributes")
            raw = map_lookup(column, rule.key, "last")
            present = _bools(raw.is_valid())
            fallback |= self._uncertain(table, rule, column, raw, present)
            values = raw if rule.pattern is None else _extract(rule.pattern, raw)
            lengths = pc.fill_null(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False)
            members = np.flatnonzero(np.asarray(lengths) > 0)
            if len(members):
                cut = pc.utf8_slice_codeunits(values.take(pa.array(members)), 0, _MAX_TAG_VALUE)
                additions.append((rule.tag, members, cut))
        tags = _with_tags(table.column("tags").combine_chunks(), additions) if additions else table.column("tags")
        return _promoted(table, tags), fallback

    def _uncertain(
        self,
        table: pa.Table,
        rule: _CompiledRule,
        column: pa.ChunkedArray,
        raw: pa.Array,
        present: Bools,
    ) -> Bools:
        """The rows where the map column may not hold the rule's attribute as sent."""
        config = self._genai
        sizes = np.diff(np.asarray(column.combine_chunks().offsets.to_numpy(), dtype=np.int64))
        uncertain = sizes >= config.max_attributes  # attributes past the cap were left out
        length = np.asarray(pc.fill_null(pc.utf8_length(raw), 0).to_numpy(zero_copy_only=False))
        uncertain |= present & (length >= config.max_attribute_value_length)
        redaction = config.redaction
        if redaction.attributes:
            # A value a rule changed holds the replacement of the last rule that changed it (built-in and unnamed
            # replacements all start `[REDACTED:`); a value holding none is the value as sent.
            marks = ["[REDACTED:", *(r.replacement for r in redaction.rules if r.replacement is not None)]
            redacted = np.zeros(len(raw), dtype=bool)
            for mark in marks:
                redacted |= _bools(pc.match_substring(raw, mark))
            uncertain |= present & redacted
        if rule.scope == "span":
            encoded = table.column("convention").combine_chunks().dictionary_encode()
            taken = [self._takes(name, rule.key) for name in encoded.dictionary.to_pylist()]
            uncertain |= np.asarray(taken, dtype=bool)[np.asarray(encoded.indices.to_numpy(), dtype=np.int64)]
        return uncertain

    def _takes(self, convention: str, key: str) -> bool:
        """Whether a span of this convention has the attribute read into a tag rather than kept in span_attributes."""
        found = self._conventions.get(convention)
        return found is None or (bool(found.tag_prefixes) and key.startswith(found.tag_prefixes))


Bools = npt.NDArray[np.bool_]


def _bools(values: pa.Array | pa.ChunkedArray) -> Bools:
    """A boolean Arrow column as numpy, null as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _extract(pattern: re.Pattern[str], values: pa.Array) -> pa.Array:
    """`_CompiledRule.value`'s regex step on each distinct value (null where it finds nothing)."""
    encoded = values.dictionary_encode()
    group = "value" if "value" in pattern.groupindex else 1
    found = []
    for text in encoded.dictionary.to_pylist():
        match = pattern.search(text)
        found.append(None if match is None else match.group(group))
    return pa.array(found, pa.string()).take(encoded.indices)


def _with_tags(tags: pa.MapArray, additions: list[tuple[str, npt.NDArray[np.int64], pa.Array]]) -> pa.MapArray:
    """`tags` with each addition's tag set in its rows, as `record.tags[tag] = value` in order would: a tag already
    there keeps its place and takes the last value, a new one goes after the others in the order first set."""
    offsets = np.asarray(tags.offsets.to_numpy(), dtype=np.int64)
    first, counts = offsets[0], np.diff(offsets)
    size = int(offsets[-1] - first)
    rows = [np.repeat(np.arange(len(tags), dtype=np.int64), counts)]
    order = [np.arange(size, dtype=np.int64) - (offsets[:-1] - first).repeat(counts)]
    keys = [tags.keys.slice(first, size)]
    values = [tags.items.slice(first, size)]
    for index, (tag, members, cut) in enumerate(additions):
        rows.append(members)
        order.append(np.full(len(members), size + index, dtype=np.int64))
        keys.append(pa.array([tag] * len(members), pa.string()))
        values.append(cut)
    row, rank = np.concatenate(rows), np.concatenate(order)
    key, value = pa.concat_arrays(keys), pa.concat_arrays(values)
    code = np.asarray(key.dictionary_encode().indices.to_numpy(), dtype=np.int64)
    by_entry = np.lexsort((rank, code, row))
    boundary = np.ones(len(row), dtype=bool)
    boundary[1:] = (row[by_entry][1:] != row[by_entry][:-1]) | (code[by_entry][1:] != code[by_entry][:-1])
    starts = np.flatnonzero(boundary)
    ends = np.append(starts[1:], len(row)) - 1
    place, last = by_entry[starts], by_entry[ends]  # the first entry of a tag gives its place, the last its value
    final = np.lexsort((rank[place], row[place]))
    place, last = place[final], last[final]
    new_offsets = np.zeros(len(tags) + 1, dtype=np.int32)
    np.cumsum(np.bincount(row[place], minlength=len(tags)), out=new_offsets[1:])
    return pa.MapArray.from_arrays(
        pa.array(new_offsets), key.take(pa.array(place)), value.take(pa.array(last)), type=tags.type
    )


def _promoted(table: pa.Table, tags: pa.Array | pa.ChunkedArray) -> pa.Table:
    """`promote` on columns: `feature`, `user_id`, `session_id` from the tags that name them."""
    joined = tags.combine_chunks() if isinstance(tags, pa.ChunkedArray) else tags  # once, not for each of 5 names

    def tag(name: str) -> pa.Array:
        return map_lookup(joined, name)

    def filled(value: pa.Array, otherwise: pa.Array) -> pa.Array:
        return pc.if_else(pc.fill_null(pc.not_equal(value, ""), False), value, otherwise)

    columns = {
        "tags": tags,
        "feature": pc.coalesce(tag("feature"), table.column("feature")),
        "user_id": filled(tag("user_id"), filled(tag("user.id"), table.column("user_id"))),
        "session_id": filled(tag("session_id"), filled(tag("session.id"), table.column("session_id"))),
    }
    for name, column in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table


def promote(record: SpanRecord) -> None:
    """Tags with a column of their own fill it; a tag beats the plain span attribute."""
    tags = record.tags
    if not tags:
        return
    record.feature = tags.get("feature", record.feature)
    record.user_id = tags.get("user_id") or tags.get("user.id") or record.user_id
    record.session_id = tags.get("session_id") or tags.get("session.id") or record.session_id
