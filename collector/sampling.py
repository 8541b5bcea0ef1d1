"""Probability sampling, counted honestly: the sampling threshold a span carries in its W3C tracestate.

OpenTelemetry's consistent probability sampling writes the threshold in the tracestate's `ot` member as
`th:HEX`, 1 to 14 hex digits right-padded with zeros to 56 bits: the rejection threshold T. The span was kept
with probability p = (2^56 - T) / 2^56, so it stands for 1/p spans (its adjusted count); `th:0` (or no `th`) is
1. Rows keep T itself (`genai_spans.sampling_threshold`, an integer), not 1/p as a float: T is what the sender
wrote, exactly, and the weight 2^56 / (2^56 - T) is a ratio of integers that sums of money take in Decimal.

Both readers read T with THRESHOLD_PATTERN (Python's `re` here, RE2 in the engine reader's SQL: the same
leftmost match and group). A `th` that is not 1 to 14 hex digits counts as no threshold: the span is stored
with weight 1, as OpenTelemetry's SDKs and the Collector treat an invalid threshold (a real call is never
refused for its tracestate).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

__all__ = [
    "COST_PLACES",
    "ESTIMATE_PLACES",
    "MAX_THRESHOLD",
    "THRESHOLD_PATTERN",
    "WEIGHT_SQL",
    "estimated_cost",
    "rounded_cost",
    "rounded_count",
    "threshold",
    "weighed_sql",
    "weight",
]

MAX_THRESHOLD = 1 << 56
"""2^56: a threshold is below it (14 hex digits), so a weight's denominator 2^56 - T is at least 1."""
_DIGITS = 14
THRESHOLD_PATTERN = r",[ \t]*ot=(?:[^,;]*;)*?th:([0-9a-fA-F]{1,14})(?:;|[ \t]*,)"
"""The `th` hex digits of the tracestate's `ot` member (list members separated by `,` with optional spaces or
tabs, `ot` sub-keys by `;`), searched in `,TRACESTATE,` so that it needs no `^` or `$`, which Python and RE2 read
differently (Python's `$` also matches before a final newline)."""
_THRESHOLD = re.compile(THRESHOLD_PATTERN)


def threshold(trace_state: str) -> int:
    """The rejection threshold T a span's tracestate carries; 0 (sampled with certainty) without a valid one."""
    if "th:" not in trace_state:
        return 0
    match = _THRESHOLD.search(f",{trace_state},")
    if match is None:
        return 0
    digits = match.group(1)
    return int(digits, 16) << 4 * (_DIGITS - len(digits))


ESTIMATE_PLACES = Decimal("1e-15")
"""Where a row's weighed share is cut in Python (budgets' running spend): 1e-15 a row, far below the 12 places
estimates are shown with. The reports' SQL cuts each row at 24 places."""
_ONE = Decimal(1)
COST_PLACES = Decimal("1e-12")
"""The places of genai_spans' cost columns (Decimal(18, 12)): estimated costs are shown rounded to them."""


def rounded_cost(estimate: Decimal) -> Decimal:
    """An estimated cost as shown: to the cost columns' 12 places, half to even."""
    return estimate.quantize(COST_PLACES, ROUND_HALF_EVEN)


def rounded_count(estimate: Decimal) -> int:
    """An estimated number of calls as shown: the nearest whole number."""
    return int(estimate.quantize(_ONE, ROUND_HALF_EVEN))


def weight(sampling_threshold: int) -> Decimal:
    """How many calls a row kept with this threshold stands for: 2^56 / (2^56 - T), to ESTIMATE_PLACES."""
    if not sampling_threshold:
        return _ONE
    with localcontext(prec=60):
        return (Decimal(MAX_THRESHOLD) / (MAX_THRESHOLD - sampling_threshold)).quantize(ESTIMATE_PLACES)


def estimated_cost(cost: Decimal, sampling_threshold: int) -> Decimal:
    """A row's cost weighed by the calls it stands for, to ESTIMATE_PLACES (exactly `cost` without sampling)."""
    if not sampling_threshold:
        return cost
    with localcontext(prec=60):
        return (cost * MAX_THRESHOLD / (MAX_THRESHOLD - sampling_threshold)).quantize(ESTIMATE_PLACES)


WEIGHT_SQL = (
    "if(sampling_threshold = 0, toDecimal256(1, 24), "
    f"toDecimal256({MAX_THRESHOLD}, 24) / ({MAX_THRESHOLD} - sampling_threshold))"
)
"""A genai_spans row's weight in SQL: Decimal(76, 24), cut at 24 places; a sum of n rows' is off by less than
n x 1e-24 before it is rounded to the 12 places shown. Rows not sampled skip the division (its result is 1): an `if`
branch is evaluated only on the rows taking it, five times cheaper on unsampled rows."""


def weighed_sql(cost: str) -> str:
    """A cost column of genai_spans times its row's weight, in Decimal(76, 24) (exactly the cost without
    sampling). `cost` is a column name, never user text."""
    weighed = f"toDecimal256({cost}, 24) * {MAX_THRESHOLD} / ({MAX_THRESHOLD} - sampling_threshold)"
    return f"if(sampling_threshold = 0, toDecimal256({cost}, 24), {weighed})"
