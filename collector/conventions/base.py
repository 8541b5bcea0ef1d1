"""The shape of a convention table."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Field(StrEnum):
    """Row fields a convention can fill from span attributes."""

    OPERATION = "operation"
    PROVIDER = "provider"
    REQUEST_MODEL = "request_model"
    RESPONSE_MODEL = "response_model"
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    CACHE_READ_TOKENS = "cache_read_tokens"
    CACHE_WRITE_TOKENS = "cache_write_tokens"
    REASONING_TOKENS = "reasoning_tokens"
    FINISH_REASONS = "finish_reasons"
    ERROR_TYPE = "error_type"
    USER_ID = "user_id"
    SESSION_ID = "session_id"
    CONVERSATION_ID = "conversation_id"


TOKEN_FIELDS = frozenset(
    {
        Field.INPUT_TOKENS,
        Field.OUTPUT_TOKENS,
        Field.CACHE_READ_TOKENS,
        Field.CACHE_WRITE_TOKENS,
        Field.REASONING_TOKENS,
    }
)


@dataclass(frozen=True)
class Convention:
    """One instrumentation convention: how to recognise its spans and where each field lives."""

    name: str
    """Stored in the `convention` column."""
    markers: tuple[str, ...]
    """A span carrying any of these attributes is read with this convention."""
    fields: dict[Field, tuple[str, ...]]
    """For each field, the attribute names to try, first present wins (current names first)."""
    tag_prefixes: tuple[str, ...] = ()
    """Attributes under these prefixes become tags (prefix removed)."""
    content_attributes: frozenset[str] = frozenset()
    """Prompt/completion text: dropped unless content capture is on."""
    content_prefixes: tuple[str, ...] = ()
    input_excludes_cache: bool = False
    """True where the source counts input tokens without cache reads and writes (Anthropic's meaning)."""
    consumed: frozenset[str] = field(init=False)
    """Attributes promoted to columns, so not repeated in span_attributes."""

    def __post_init__(self) -> None:
        names = {name for names in self.fields.values() for name in names}
        object.__setattr__(self, "consumed", frozenset(names))

    def is_content(self, key: str) -> bool:
        return key in self.content_attributes or key.startswith(self.content_prefixes)
