"""spanmeter instrumentation: exact GenAI spans with cost tags.

``tags()`` sets cost tags for the code inside; ``install_tag_processor()`` makes a tracer
provider stamp them (``opentelemetry-instrument`` does that automatically); the
instrumentors live in the provider subpackages and are found by ``opentelemetry-instrument``.
``enable_budget_gate()`` (or ``SPANMETER_BUDGET_URL``) makes them refuse calls over a ``block`` budget.
``SpanmeterASGIMiddleware``, ``SpanmeterWSGIMiddleware`` and ``SpanmeterDjangoMiddleware`` tag each
request's GenAI spans with its route template and user; they import no web framework.
``record_call()`` emits the same span for a call no instrumentor sees.
"""

from ._asgi import SpanmeterASGIMiddleware
from ._budget import (
    BudgetBlockedError,
    BudgetExceededError,
    BudgetUnavailableError,
    call_scope,
    disable_budget_gate,
    enable_budget_gate,
)
from ._django import SpanmeterDjangoMiddleware
from ._processor import TagSpanProcessor, install_tag_processor
from ._record import RecordedCall, record_call
from ._tags import TAG_PREFIX, attribute_name, current_tags, tags
from ._wsgi import SpanmeterWSGIMiddleware
from .version import __version__

__all__ = [
    "TAG_PREFIX",
    "BudgetBlockedError",
    "BudgetExceededError",
    "BudgetUnavailableError",
    "RecordedCall",
    "SpanmeterASGIMiddleware",
    "SpanmeterDjangoMiddleware",
    "SpanmeterWSGIMiddleware",
    "TagSpanProcessor",
    "__version__",
    "attribute_name",
    "call_scope",
    "current_tags",
    "disable_budget_gate",
    "enable_budget_gate",
    "install_tag_processor",
    "record_call",
    "tags",
]
