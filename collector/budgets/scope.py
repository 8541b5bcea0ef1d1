"""Budget scopes: which spans a budget counts, and under which scope value.

A scope maps keys (project, service, environment, provider, model, feature, user, tag:NAME) to an
exact value, a `*` pattern, or `each`. A span is in scope when every pattern matches; `each` keys
split the budget into one per distinct (non-empty) value, named by its scope value
(`user=u-1`, or `service=a,user=u-1`; empty for a budget without `each`). The same scope is
matched in Python (spans as they arrive) and in SQL (the spend already stored), with the same
semantics: `*` is any run of characters, everything else is literal and case-sensitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..arrow_maps import map_lookup
from ..records import SpanRecord

__all__ = ["EACH", "Scope"]

EACH = "each"

_FIELDS: dict[str, Callable[[SpanRecord], str]] = {
    "project": lambda r: r.project,
    "service": lambda r: r.service_name,
    "environment": lambda r: r.environment,
    "provider": lambda r: r.provider,
    "model": lambda r: r.model,
    "feature": lambda r: r.feature,
    "user": lambda r: r.user_id,
}
_COLUMNS = {
    "project": "project",
    "service": "service_name",
    "environment": "environment",
    "provider": "provider",
    "model": "if(response_model != '', response_model, request_model)",
    "feature": "feature",
    "user": "user_id",
}


def _getter(key: str) -> Callable[[SpanRecord], str]:
    if key.startswith("tag:"):
        name = key[4:]
        return lambda r: r.tags.get(name, "")
    return _FIELDS[key]


def _table_column(table: pa.Table, key: str) -> pa.Array:
    """The column `_getter(key)` reads, as one array."""
    if key.startswith("tag:"):
        return pc.fill_null(map_lookup(table.column("tags"), key[4:]), "")
    if key == "model":
        response = table.column("response_model")
        return pc.if_else(pc.equal(response, ""), table.column("request_model"), response).combine_chunks()
    name = _COLUMNS[key]
    return table.column(name).combine_chunks()


def _matcher(pattern: str) -> Callable[[str], bool]:
    if pattern == "*":
        return lambda value: True
    if "*" not in pattern:
        return lambda value: value == pattern
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)
    return lambda value: regex.fullmatch(value) is not None


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


@dataclass(frozen=True)
class SqlScope:
    """WHERE conditions and GROUP BY expressions for genai_spans, with their query parameters."""

    where: list[str]
    group: list[str]
    parameters: dict[str, Any]


class Scope:
    def __init__(self, scope: Mapping[str, str]) -> None:
        self.patterns = dict(scope)
        self.each_keys = [key for key, value in scope.items() if value == EACH]
        self._filters = [
            (_getter(key), _matcher(value)) for key, value in scope.items() if value != EACH and value != "*"
        ]
        self._each = [_getter(key) for key in self.each_keys]
        self._table_filters = [(key, value) for key, value in scope.items() if value != EACH and value != "*"]

    def match(self, record: SpanRecord) -> tuple[str, ...] | None:
        """The span's `each` values (empty for a budget without `each`), or None when it is out of scope."""
        for get, matches in self._filters:
            if not matches(get(record)):
                return None
        if not self._each:
            return ()
        values = tuple(get(record) for get in self._each)
        return values if all(values) else None

    def match_table(self, table: pa.Table) -> tuple[npt.NDArray[np.bool_], list[pa.Array]]:
        """`match` for every row of a `genai_spans` table: the rows in scope, and the `each` columns (their
        values in those rows are the rows' `each` values). A `*` pattern is matched once per distinct value."""
        matched = np.ones(table.num_rows, dtype=bool)
        for key, pattern in self._table_filters:
            column = _table_column(table, key)
            if "*" not in pattern:
                found = pc.equal(column, pattern)
            else:
                encoded = column.dictionary_encode()
                matches = _matcher(pattern)
                found = pa.array([matches(value) for value in encoded.dictionary.to_pylist()], pa.bool_()).take(
                    encoded.indices
                )
            matched &= np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
        each = [_table_column(table, key) for key in self.each_keys]
        for column in each:
            matched &= np.asarray(pc.not_equal(column, "").to_numpy(zero_copy_only=False), dtype=bool)
        return matched, each

    def scope_value(self, values: tuple[str, ...]) -> str:
        """`user=u-1` (or `service=a,user=u-1`); empty without `each`."""
        return ",".join(f"{key}={value}" for key, value in zip(self.each_keys, values, strict=True))

    def sql(self, prefix: str) -> SqlScope:
        """Conditions over genai_spans; parameter names start with `prefix` to keep budgets apart."""
        where: list[str] = []
        group: list[str] = []
        parameters: dict[str, Any] = {}
        for index, (key, pattern) in enumerate(self.patterns.items()):
            if key.startswith("tag:"):
                parameters[f"{prefix}t{index}"] = key[4:]
                column = f"tags[{{{prefix}t{index}:String}}]"
            else:
                column = _COLUMNS[key]
            if pattern == EACH:
                group.append(column)
                where.append(f"{column} != ''")
            elif pattern != "*":
                parameters[f"{prefix}p{index}"] = _like(pattern) if "*" in pattern else pattern
                operator = "LIKE" if "*" in pattern else "="
                where.append(f"{column} {operator} {{{prefix}p{index}:String}}")
        return SqlScope(where, group, parameters)
