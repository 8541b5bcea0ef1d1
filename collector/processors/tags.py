"""The `tags` processor: tag rules from pipelines.yaml, then promotion of the tags that have
their own columns (`feature`, `user_id`, `session_id`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..config import TagsProcessorConfig
from ..otlp_values import as_str
from ..records import SpanRecord

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

    def __init__(self, config: TagsProcessorConfig) -> None:
        self._rules = [
            _CompiledRule(
                tag=rule.tag,
                scope=rule.from_.split(".", 1)[0],
                key=rule.from_.split(".", 1)[1],
                pattern=re.compile(rule.regex) if rule.regex else None,
            )
            for rule in config.rules
        ]

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


def promote(record: SpanRecord) -> None:
    """Tags with a column of their own fill it; a tag beats the plain span attribute."""
    tags = record.tags
    if not tags:
        return
    record.feature = tags.get("feature", record.feature)
    record.user_id = tags.get("user_id") or tags.get("user.id") or record.user_id
    record.session_id = tags.get("session_id") or tags.get("session.id") or record.session_id
