"""Scheduled spend digests: spend against the previous period, top movers, budgets, findings, sent once per
period over the budget processor's channels (`extensions: spanmeter_digest`).

Only the config model is imported here: `spanmeter.config` imports it to validate the file, and the other
modules (content, render, channels, scheduler, api) import the config in turn.
"""

from .config import WEEKDAYS, DigestConfig
from .period import DigestPeriod, latest_due

__all__ = ["WEEKDAYS", "DigestConfig", "DigestPeriod", "latest_due"]
