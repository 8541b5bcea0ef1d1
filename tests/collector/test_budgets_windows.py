"""Budget windows at their edges (UTC midnight, month end, rolling hours), with a controlled clock:
first the window arithmetic, then a real collector whose budgets run on the test's clock."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest

from spanmeter.budgets import Window
from spanmeter.service import CollectorThread

from .budget_helpers import Clock, budget_overrides, budget_status, hook_channel, spend, utc, webhook_server
from .conftest import tracer_provider, wait_for_rows


@pytest.mark.parametrize(
    ("window", "now", "start", "end"),
    [
        ("day", "2026-03-14T23:59:59.999", "2026-03-14T00:00", "2026-03-15T00:00"),
        ("day", "2026-03-15T00:00:00", "2026-03-15T00:00", "2026-03-16T00:00"),
        ("month", "2026-01-31T23:59:59.999", "2026-01-01T00:00", "2026-02-01T00:00"),
        ("month", "2026-02-01T00:00:00", "2026-02-01T00:00", "2026-03-01T00:00"),
        ("month", "2028-02-29T12:00:00", "2028-02-01T00:00", "2028-03-01T00:00"),  # leap year
        ("month", "2026-12-31T23:59:59", "2026-12-01T00:00", "2027-01-01T00:00"),  # year end
        ("rolling 3h", "2026-03-14T10:59:59", "2026-03-14T08:00", "2026-03-14T11:00"),
        ("rolling 3h", "2026-03-14T11:00:00", "2026-03-14T09:00", "2026-03-14T12:00"),
        ("rolling 2h", "2026-03-15T00:30:00", "2026-03-14T23:00", "2026-03-15T01:00"),  # across midnight
    ],
)
def test_bounds(window, now, start, end):
    assert Window.parse(window).bounds(utc(now)) == (utc(start), utc(end))


def test_buckets_and_periods_at_the_edges():
    day, month, rolling = Window.parse("day"), Window.parse("month"), Window.parse("rolling 6h")

    def ns(text):
        return int(utc(text).timestamp() * 1e9)

    assert day.bucket(ns("2026-01-31T23:59:59.999")) == int(utc("2026-01-31T00:00").timestamp())
    assert day.bucket(ns("2026-02-01T00:00:00")) == int(utc("2026-02-01T00:00").timestamp())
    assert month.bucket(ns("2026-01-31T23:59:59.999")) == int(utc("2026-01-01T00:00").timestamp())
    assert month.bucket(ns("2026-02-01T00:00:00")) == int(utc("2026-02-01T00:00").timestamp())
    assert rolling.bucket(ns("2026-02-01T05:59:59")) == int(utc("2026-02-01T05:00").timestamp())
    # A rolling window's crossings are grouped in N-hour periods aligned to the epoch.
    assert rolling.period(utc("2026-02-01T05:59:59")) == (utc("2026-02-01T00:00"), utc("2026-02-01T06:00"))
    assert rolling.period(utc("2026-02-01T06:00:00")) == (utc("2026-02-01T06:00"), utc("2026-02-01T12:00"))
    assert (
        Window.projected(Decimal(10), utc("2026-02-01T00:00"), utc("2026-02-02T00:00"), utc("2026-02-01T06:00")) == 40
    )


def test_day_and_month_reset_at_utc_midnight_and_month_end(make_config):
    clock = Clock(utc("2026-01-31T23:59:30"))
    with webhook_server() as hook:
        budgets = [
            {"name": "daily", "window": "day", "limit_usd": 10, "thresholds": [80], "channels": ["ops"]},
            {"name": "monthly", "window": "month", "limit_usd": 20, "thresholds": [80], "channels": ["ops"]},
        ]
        thread = CollectorThread(make_config(budget_overrides(budgets, {"ops": hook_channel(hook)})), clock)
        collector = thread.start()
        try:
            app = tracer_provider(collector)
            spend(app, 9, start=utc("2026-01-31T23:59:20"))
            spend(app, 8, start=utc("2026-01-20T12:00:00"))  # earlier this month: the month's, not the day's
            spend(app, 50, start=utc("2025-12-31T23:59:59"))  # last year: neither
            wait_for_rows(collector, 3)
            hook.wait_for(2)  # 9 of 10 today; 17 of 20 is 85 % of the month too
            by_budget = {r.json()["budget"]: r.json() for r in hook.requests}
            assert by_budget["daily"]["window_start"] == "2026-01-31T00:00:00.000Z"
            assert Decimal(by_budget["monthly"]["spend_usd"]) == 17
            assert by_budget["monthly"]["window_end"] == "2026-02-01T00:00:00.000Z"

            clock.now = utc("2026-02-01T00:00:05")  # a new day and a new month
            daily, monthly = budget_status(collector)
            assert (Decimal(daily["spend_usd"]), Decimal(monthly["spend_usd"])) == (0, 0)
            assert daily["resets_at"] == "2026-02-02T00:00:00.000Z"
            assert monthly["resets_at"] == "2026-03-01T00:00:00.000Z"

            spend(app, 9, start=utc("2026-02-01T00:00:01"))
            hook.wait_for(3)
            third = hook.requests[2].json()
            assert (third["budget"], third["window_start"]) == ("daily", "2026-02-01T00:00:00.000Z")
            assert third["event_id"] != by_budget["daily"]["event_id"]
            assert Decimal(budget_status(collector)[1]["spend_usd"]) == 9  # 45 % of February: no crossing
        finally:
            thread.stop()
        assert len(hook.requests) == 3


def test_rolling_window_drops_hours_as_they_age(make_config):
    clock = Clock(utc("2026-05-10T10:30:00"))
    thread = CollectorThread(
        make_config(budget_overrides([{"name": "r2h", "window": "rolling 2h", "limit_usd": 100}])), clock
    )
    collector = thread.start()
    try:
        app = tracer_provider(collector)
        spend(app, 6, start=utc("2026-05-10T09:10:00"))
        spend(app, 3, start=utc("2026-05-10T10:20:00"))
        spend(app, 40, start=utc("2026-05-10T08:59:59"))  # before the window
        wait_for_rows(collector, 3)
        (status,) = budget_status(collector)
        assert Decimal(status["spend_usd"]) == 9
        assert (status["window_start"], status["resets_at"]) == ("2026-05-10T09:00:00.000Z", "2026-05-10T11:00:00.000Z")
        clock.now = utc("2026-05-10T11:05:00")
        assert Decimal(budget_status(collector)[0]["spend_usd"]) == 3  # the 09:xx hour dropped out
        time.sleep(0.5)  # two reconciles later the store's sums agree
        assert Decimal(budget_status(collector)[0]["spend_usd"]) == 3
        clock.now += timedelta(hours=1)
        assert Decimal(budget_status(collector)[0]["spend_usd"]) == 0
    finally:
        thread.stop()
