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

__all__ = ["MAX_THRESHOLD", "THRESHOLD_PATTERN", "threshold", "weight"]

MAX_THRESHOLD = 1 << 56
"""2^56: a threshold is below it (14 hex digits), so a weight's denominator 2^56 - T is at least 1."""
_DIGITS = 14
THRESHOLD_PATTERN = r"(?:^|,)[ \t]*ot=(?:[^,;]*;)*?th:([0-9a-fA-F]{1,14})(?:;|[ \t]*,|[ \t]*$)"
"""The `th` hex digits of the tracestate's `ot` member (list members separated by `,` with optional spaces or
tabs, `ot` sub-keys by `;`). No `^`-anchored alternation Python and RE2 would resolve differently."""
_THRESHOLD = re.compile(THRESHOLD_PATTERN)


def threshold(trace_state: str) -> int:
    """The rejection threshold T a span's tracestate carries; 0 (sampled with certainty) without a valid one."""
    if "th:" not in trace_state:
        return 0
    match = _THRESHOLD.search(trace_state)
    if match is None:
        return 0
    digits = match.group(1)
    return int(digits, 16) << 4 * (_DIGITS - len(digits))


def weight(sampling_threshold: int) -> float:
    """How many spans one kept with this threshold stands for (1/p), as a float for display."""
    return MAX_THRESHOLD / (MAX_THRESHOLD - sampling_threshold)
