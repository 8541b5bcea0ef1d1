"""Budget windows, all in UTC: the calendar day, the calendar month, or the last N hours.

Spend is kept in buckets: one per calendar window, one per hour for rolling windows (so an hour
drops out of a rolling window as a whole). A window is asked three things: its bounds now (which
buckets count), its period now (the identity of a threshold crossing: notified once per period),
and the bucket a span's start time falls in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from ..forecast import seasonal_share
from .config import BUDGET_WINDOW

__all__ = ["Clock", "Window", "system_clock"]

Clock = Callable[[], datetime]
_HOUR = 3600
_CENT_MICRO = Decimal("0.000000000001")  # the store's Decimal(38, 12)
_DAY = 86400


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Window:
    kind: str  # "day", "month" or "rolling"
    hours: int = 0  # rolling only

    @classmethod
    def parse(cls, text: str) -> Window:
        match = BUDGET_WINDOW.match(text)
        if match is None:
            raise ValueError(f"not a budget window: {text!r}")
        return cls("rolling", int(match.group(2))) if match.group(2) else cls(match.group(1))

    @property
    def label(self) -> str:
        return f"rolling {self.hours}h" if self.kind == "rolling" else self.kind

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """[start, end) of the spend that counts now. A rolling window is the current hour and the
        N-1 before it, so it ends at the next full hour, when its oldest hour drops out."""
        if self.kind == "rolling":
            hour = now.replace(minute=0, second=0, microsecond=0)
            return hour - timedelta(hours=self.hours - 1), hour + timedelta(hours=1)
        return self.period(now)

    def period(self, now: datetime) -> tuple[datetime, datetime]:
        """The window a threshold crossing belongs to: the calendar day or month, or for a rolling
        window the N-hour period aligned to the epoch (so each threshold fires at most once per N hours)."""
        if self.kind == "day":
            start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            return start, start + timedelta(days=1)
        if self.kind == "month":
            start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            return start, _next_month(start)
        length = self.hours * _HOUR
        seconds = int(now.timestamp())
        start = datetime.fromtimestamp(seconds - seconds % length, UTC)
        return start, start + timedelta(seconds=length)

    def bucket(self, timestamp_ns: int) -> int:
        """The bucket (its start, in epoch seconds) of a span that started at `timestamp_ns`."""
        seconds = timestamp_ns // 1_000_000_000
        if self.kind == "rolling":
            return seconds - seconds % _HOUR
        day = seconds - seconds % _DAY
        if self.kind == "day":
            return day
        return int(_month_start(day).timestamp())

    def buckets(self, timestamps_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """`bucket` of each timestamp; a month's start is found once per distinct day."""
        seconds = timestamps_ns // 1_000_000_000
        if self.kind == "rolling":
            return seconds - seconds % _HOUR
        days = seconds - seconds % _DAY
        if self.kind == "day" or not len(days):
            return days
        distinct, inverse = np.unique(days, return_inverse=True)
        months = [int(_month_start(day).timestamp()) for day in distinct.tolist()]
        return np.asarray(months, dtype=np.int64)[inverse.reshape(-1)]

    def bucket_bounds(self, now: datetime) -> tuple[int, int]:
        """`bounds(now)` in epoch seconds: a bucket counts when start <= bucket < end."""
        start, end = self.bounds(now)
        return int(start.timestamp()), int(end.timestamp())

    @staticmethod
    def projected(
        spend: Decimal, start: datetime, end: datetime, now: datetime, factors: Sequence[float] | None = None
    ) -> Decimal:
        """Spend at the window's end if it goes on at the rate seen so far in the window; with the store's weekday
        `factors` (forecast.py), a day counts by its factor, so a month seen only through quiet weekend days is not
        projected as if every day were a weekend."""
        share = seasonal_share(factors, start, end, now)
        if share is not None and 0 < share < 1:
            return (spend / Decimal(repr(share))).quantize(_CENT_MICRO)
        elapsed = Decimal((now - start) // timedelta(milliseconds=1))
        total = Decimal((end - start) // timedelta(milliseconds=1))
        if elapsed <= 0 or elapsed >= total:
            return spend
        return (spend * total / elapsed).quantize(_CENT_MICRO)


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


_MONTH_CACHE: dict[int, datetime] = {}


def _month_start(day_seconds: int) -> datetime:
    start = _MONTH_CACHE.get(day_seconds)
    if start is None:
        start = datetime.fromtimestamp(day_seconds, UTC).replace(day=1)
        if len(_MONTH_CACHE) > 4096:
            _MONTH_CACHE.clear()
        _MONTH_CACHE[day_seconds] = start
    return start
