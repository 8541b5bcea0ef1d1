"""anomaly: a day's calls, tokens or spend of one service, feature or user above the band its own history gives
for that weekday, so weekly seasonality (quiet weekends, busy Mondays) is not an anomaly.

The band of a checked day is the median of the same weekday in the `history_weeks` weeks before it (a day
without calls counts as 0) +/- max(`mad_multiplier` * 1.4826 * MAD, `min_relative_width` * median); a scope
needs calls on at least half of those days. Only rises are reported. Savings = the day's spend above the
median: a one-off cost, not scaled to a month (an anomaly is not expected to recur).
Checked days are the `recent_days` complete UTC days before the end of the period; their history is read from
the store whatever the period's start.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from .context import Context
from .model import Finding, money

__all__ = ["DIMENSIONS", "find"]

KIND = "anomaly"
DIMENSIONS = {"service": "service_name", "feature": "feature", "user": "user_id"}
"""Dimension -> its column; fixed expressions, never user text."""
METRICS = ("calls", "tokens", "spend")
_MAD_SCALE = 1.4826


def find(context: Context) -> list[Finding]:
    config = context.config.anomalies
    period = context.period
    last_day = period.end.date() - timedelta(days=1)  # the last complete UTC day
    first_checked = last_day - timedelta(days=config.recent_days - 1)
    history_start = first_checked - timedelta(weeks=config.history_weeks)
    checked_start = max(first_checked, period.start.date())
    bounds: dict[str, object] = {
        "history_start": _midnight(history_start),
        "checked_start": _midnight(checked_start),
        "checked_end": _midnight(last_day + timedelta(days=1)),
        "min_calls": config.min_calls,
    }
    found = []
    for dimension in config.dimensions:
        days: dict[tuple[str, str], dict[date, dict[str, Any]]] = defaultdict(dict)
        for row in context.rows(KIND, {"dimension": DIMENSIONS[dimension]}, **bounds):
            days[(row["project"], row["value"])][row["day"]] = row
        for (project, value), series in days.items():
            for day, row in series.items():
                if day < checked_start or row["calls"] < config.min_calls:
                    continue
                finding = _check(context, dimension, project, value, day, row, series)
                if finding is not None:
                    found.append(finding)
    return found


def _check(
    context: Context,
    dimension: str,
    project: str,
    value: str,
    day: date,
    row: dict[str, Any],
    series: dict[date, dict[str, Any]],
) -> Finding | None:
    config = context.config.anomalies
    history = [series.get(day - timedelta(weeks=k)) for k in range(1, config.history_weeks + 1)]
    if sum(1 for h in history if h is not None) * 2 < config.history_weeks:
        return None  # too little history to know what is usual
    bands: dict[str, dict[str, str]] = {}
    above = []
    for metric in METRICS:
        past = [Decimal(h[metric]) if h is not None else Decimal(0) for h in history]
        median = statistics.median(past)
        mad = statistics.median(abs(x - median) for x in past)
        half = max(
            Decimal(str(config.mad_multiplier * _MAD_SCALE)) * mad, Decimal(str(config.min_relative_width)) * median
        )
        low, high = max(median - half, Decimal(0)), median + half
        current = Decimal(row[metric])
        bands[metric] = {"value": money(current), "expected": money(median), "low": money(low), "high": money(high)}
        if current > high:
            above.append(metric)
    if not above:
        return None
    median_spend = Decimal(bands["spend"]["expected"])
    excess = max(Decimal(row["spend"]) - median_spend, Decimal(0))
    if excess < config.min_savings_usd:
        return None
    start = _midnight(day)
    return Finding(
        kind=KIND,
        scope={"project": project, dimension: value},
        start=start,
        end=start + timedelta(days=1),
        savings_usd_per_month=excess.quantize(Decimal("0.000001")),
        action=(
            f"{dimension} {value} on {day:%A %Y-%m-%d}: {', '.join(above)} above the usual band for that weekday "
            f"(spend ${money(Decimal(row['spend']))}, usually ${bands['spend']['expected']}): look for a loop, a "
            "retry storm, a new caller or abuse."
        ),
        evidence={"metrics_above": above, "bands": bands, "history_weeks": config.history_weeks},
        trace_ids=list(row["trace_ids"]),
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)
