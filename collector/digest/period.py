"""Which period a digest covers: the day or the seven days that ended at the start of its send day (UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from .config import WEEKDAYS, DigestConfig

__all__ = ["DigestPeriod", "latest_due"]


@dataclass(frozen=True)
class DigestPeriod:
    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    @property
    def previous(self) -> DigestPeriod:
        """The period before, of the same length: what this one is compared with."""
        return DigestPeriod(self.start - self.length, self.start)

    @property
    def key(self) -> str:
        """Names the period in a claim token: the same in every collector."""
        return f"{self.start:%Y%m%dT%H%M}-{self.end:%Y%m%dT%H%M}"

    def label(self) -> str:
        last_day = self.end - timedelta(days=1)
        if last_day.date() == self.start.date():
            return f"{self.start:%a %d %b %Y}"
        return f"{self.start:%d %b} to {last_day:%d %b %Y}"


def latest_due(config: DigestConfig, now: datetime) -> DigestPeriod:
    """The most recent period whose digest is due at `now`: its send day's `at` has passed."""
    now = now.astimezone(UTC)
    hour, minute = config.send_time
    day = datetime.combine(now.date(), time(0, 0), tzinfo=UTC)
    if now < day + timedelta(hours=hour, minutes=minute):
        day -= timedelta(days=1)
    if config.schedule == "weekly":
        day -= timedelta(days=(day.weekday() - WEEKDAYS.index(config.weekday)) % 7)
    length = timedelta(days=7 if config.schedule == "weekly" else 1)
    return DigestPeriod(day - length, day)
