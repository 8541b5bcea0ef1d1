"""The shape of a convention table: data, so that adding an instrumentation's dialect means adding a
table, not branches in the processor."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Field(StrEnum):
    """Row fields a convention can fill from span attributes."""

    OPERATION = "operation"
    PROVIDER = "provider"
    REQUEST_MODEL = "request_model"
    RESPONSE_MODEL = "response_model"
    INPUT_TOKENS = "input_tokens"
    UNCACHED_INPUT_TOKENS = "uncached_input_tokens"
    """Input tokens that are neither cache reads nor writes: where a source reports them, input tokens are
    these plus the cache reads and writes, whatever the source's input count means."""
    OUTPUT_TOKENS = "output_tokens"
    CACHE_READ_TOKENS = "cache_read_tokens"
    CACHE_WRITE_TOKENS = "cache_write_tokens"
    REASONING_TOKENS = "reasoning_tokens"
    FINISH_REASONS = "finish_reasons"
    ERROR_TYPE = "error_type"
    USER_ID = "user_id"
    SESSION_ID = "session_id"
    CONVERSATION_ID = "conversation_id"
    RESPONSE_ID = "response_id"


TOKEN_FIELDS = frozenset(
    {
        Field.INPUT_TOKENS,
        Field.UNCACHED_INPUT_TOKENS,
        Field.OUTPUT_TOKENS,
        Field.CACHE_READ_TOKENS,
        Field.CACHE_WRITE_TOKENS,
        Field.REASONING_TOKENS,
    }
)

AGGREGATE_OPERATIONS = frozenset({"invoke_agent", "create_agent", "invoke_workflow", "execute_tool"})
"""Operations whose spans are rows but not model calls: any usage they report sums their children's
model calls, so it is kept among the span attributes and not counted again."""

JSON_PATH = "#"
"""In a field's attribute name, `attr#key.sub` reads `key.sub` inside attribute `attr`'s JSON text."""


def base_attribute(name: str) -> str:
    return name.split(JSON_PATH, 1)[0]


def detection_keys(conventions: Iterable[Convention]) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    """What makes a span GenAI, from the tables: every convention's marker attribute keys as UTF-8 bytes (as
    they appear in an OTLP body, protobuf or JSON) and its scope name prefixes. A span with neither is not read."""
    conventions = tuple(conventions)
    names = {marker for convention in conventions for marker in convention.markers}
    # The attributes most conventions read first: a GenAI span is then recognised by its first search.
    markers = sorted(names, key=lambda name: (-sum(name in c.consumed for c in conventions), name))
    scopes = tuple(dict.fromkeys(scope for convention in conventions for scope in convention.scopes))
    return tuple(marker.encode() for marker in markers), scopes


@dataclass(frozen=True)
class Convention:
    """One instrumentation's dialect: how to recognise its spans and where each field lives."""

    name: str
    """Stored in the `convention` column."""
    source: str
    """Where the source library defines these names (repository and file), for whoever updates the table."""
    fields: Mapping[Field, tuple[str, ...]]
    """For each field, the attributes to try, first present wins (current names first)."""
    markers: tuple[str, ...] = ()
    """A span carrying any of these attributes is read with this convention."""
    scopes: tuple[str, ...] = ()
    """...or a span whose instrumentation scope name starts with one of these."""
    call_filter: tuple[str, frozenset[str]] | None = None
    """(attribute, values): only spans whose attribute has one of these values are model calls. The others
    (workflow, chain, agent or SDK wrapper spans that repeat their children's usage) are not rows."""
    wrapper_filter: tuple[str, frozenset[str]] | None = None
    """(attribute, values): spans whose attribute has one of these values wrap model calls: not rows."""
    operation_values: Mapping[str, str] = field(default_factory=dict)
    """This convention's operation values -> gen_ai.operation.name, where they differ."""
    kind_operations: Mapping[str, str] = field(default_factory=dict)
    """call_filter values -> gen_ai.operation.name, for conventions that name no operation."""
    provider_prefixes: tuple[tuple[str, str], ...] = ()
    """Provider values as this convention writes them (by prefix) -> `gen_ai.provider.name`."""
    default_provider: str = ""
    """The provider when the span names none (an SDK that traces itself)."""
    tag_prefixes: tuple[str, ...] = ()
    """Attributes under these prefixes become tags, the prefix removed."""
    tag_skip: tuple[str, ...] = ()
    """Tags (prefix removed) starting with these are the instrumentation's own bookkeeping: not tags."""
    tag_objects: tuple[str, ...] = ()
    """Attributes holding a JSON object whose entries become tags."""
    tag_lists: tuple[str, ...] = ()
    """Attributes holding a list of labels: kept as one tag of the same name, comma-separated."""
    content_attributes: frozenset[str] = frozenset()
    """Prompt/completion text: dropped unless content capture is on."""
    content_prefixes: tuple[str, ...] = ()
    input_excludes_cache: frozenset[str] = frozenset()
    """Providers whose input count here excludes cache reads and writes (Anthropic's own meaning); `*` for all.
    Not applied when the span reports UNCACHED_INPUT_TOKENS."""
    output_excludes_reasoning: bool = False
    """True where the source counts output tokens without reasoning tokens (Gemini's candidates count)."""
    consumed: frozenset[str] = field(init=False)
    """Attributes read into columns or tags, so not repeated in span_attributes."""
    field_tags: tuple[tuple[str, str], ...] = field(init=False)
    """(attribute, tag) for field attributes under a tag prefix: they fill their column and stay tags
    (Vercel AI's `ai.telemetry.metadata.userId` is both user_id and the tag `userId`)."""

    def __post_init__(self) -> None:
        field_names = {base_attribute(name) for names in self.fields.values() for name in names}
        names = field_names | {*self.markers, *self.tag_objects, *self.tag_lists}
        for span_filter in (self.call_filter, self.wrapper_filter):
            if span_filter is not None:
                names.add(span_filter[0])
        object.__setattr__(self, "consumed", frozenset(names))
        object.__setattr__(self, "field_tags", tuple(self._field_tags(field_names)))

    def _field_tags(self, names: set[str]) -> list[tuple[str, str]]:
        tags: list[tuple[str, str]] = []
        for name in sorted(names):
            for prefix in self.tag_prefixes:
                if name.startswith(prefix):
                    tag = name[len(prefix) :]
                    if tag and not tag.startswith(self.tag_skip):
                        tags.append((name, tag))
                    break
        return tags

    def excludes_cache(self, provider: str) -> bool:
        return provider in self.input_excludes_cache or "*" in self.input_excludes_cache

    def provider(self, value: str) -> str:
        for prefix, provider in self.provider_prefixes:
            if value.startswith(prefix):
                return provider
        return value or self.default_provider
