"""The `spanmeter_digest` extension's settings: when a digest is sent, what it covers, where it goes."""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import Field, PositiveInt, field_validator

from ..config_types import Seconds, StrictModel

__all__ = ["WEEKDAYS", "DigestConfig"]

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class DigestConfig(StrictModel):
    """A daily or weekly spend digest to the budget processor's channels, sent once per period per store."""

    schedule: Literal["daily", "weekly"] = "weekly"
    """`daily` covers the day before the send day; `weekly` the seven days before it."""
    at: str = "08:00"
    """Time of day (UTC, HH:MM) the digest is due; it is sent at the first check after."""
    weekday: Weekday = "monday"
    """The send day of a weekly digest."""
    project: str = ""
    """Only this project's spend (empty: every project)."""
    channels: list[str] = Field(default_factory=list)
    """Names of channels declared under the budget processor's `channels:` (at least one to send)."""
    top: PositiveInt = Field(default=5, le=50)
    """Movers, budgets and findings listed."""
    check_interval: Seconds = 60.0
    """How often the collector checks whether a digest is due."""

    @field_validator("at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not _TIME.match(value):
            raise ValueError(f"expected a UTC time of day as HH:MM (e.g. 08:00), got {value!r}")
        return value

    @property
    def send_time(self) -> tuple[int, int]:
        hour, minute = self.at.split(":")
        return int(hour), int(minute)
