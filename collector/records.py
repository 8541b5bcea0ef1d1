"""The row a GenAI span becomes: one field per `genai_spans` column (README.md, "The genai_spans table")."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

__all__ = ["COLUMNS", "SpanRecord"]

_ZERO = Decimal(0)

# Column order of genai_spans as the exporter writes it; `ingested_at` is filled at insert time.
COLUMNS: tuple[str, ...] = (
    "timestamp",
    "trace_id",
    "span_id",
    "parent_span_id",
    "project",
    "service_name",
    "environment",
    "operation",
    "provider",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "input_cost",
    "cache_read_cost",
    "cache_write_cost",
    "output_cost",
    "total_cost",
    "price_status",
    "price_source",
    "duration_ns",
    "status_code",
    "error_type",
    "finish_reasons",
    "user_id",
    "session_id",
    "conversation_id",
    "feature",
    "tags",
    "convention",
    "span_attributes",
    "resource_attributes",
    "content",
    "sampling_threshold",
)


class SpanRecord:
    """A GenAI span read into the contract's terms, on its way through the processors.

    ``attributes`` is the span's raw OTLP attribute list and ``resource`` the resource's attributes by
    key (AnyValue messages, undecoded), for later processors that need more than the columns.
    """

    __slots__ = (*COLUMNS, "attributes", "has_usage", "rejection", "resource", "response_id")

    timestamp: int  # ns since epoch, UTC
    trace_id: str
    span_id: str
    parent_span_id: str
    project: str
    service_name: str
    environment: str
    operation: str
    provider: str
    request_model: str
    response_model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    input_cost: Decimal
    cache_read_cost: Decimal
    cache_write_cost: Decimal
    output_cost: Decimal
    total_cost: Decimal
    price_status: str
    price_source: str
    duration_ns: int
    status_code: str
    error_type: str
    finish_reasons: list[str]
    user_id: str
    session_id: str
    conversation_id: str
    feature: str
    tags: dict[str, str]
    convention: str
    span_attributes: dict[str, str]
    resource_attributes: dict[str, str]
    content: dict[str, str]
    """Captured prompt and completion text (only with capture_content): a column of its own, with its own TTL."""
    sampling_threshold: int
    """The tracestate's `ot=th:` rejection threshold (sampling.py): the row stands for 2^56 / (2^56 - T) calls."""
    attributes: Any  # repeated KeyValue
    resource: dict[str, Any]
    has_usage: bool
    response_id: str
    """The provider's id for the call (`gen_ai.response.id`), to recognise one call reported twice."""
    """Whether the span reported any token counts: without them there is nothing to price."""
    rejection: str
    """Why a processor after `genai` refuses this row (a cost the column cannot hold); "" when stored.
    `DecodeResult.drop_rejected` answers such rows to the sender, per span."""

    def __init__(self) -> None:
        for name in ("input_cost", "cache_read_cost", "cache_write_cost", "output_cost", "total_cost"):
            setattr(self, name, _ZERO)
        self.has_usage = False
        self.response_id = ""
        self.rejection = ""
        self.price_status = "no_usage"
        self.price_source = ""
        self.tags = {}
        self.feature = ""
        self.user_id = ""
        self.session_id = ""
        self.content = {}
        self.sampling_threshold = 0

    @property
    def model(self) -> str:
        """The model that answered, else the one asked for: the name that is priced."""
        return self.response_model or self.request_model
