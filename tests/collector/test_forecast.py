"""Forecasts (collector/forecast.py): on synthetic daily series with a known trend and weekly pattern, fed to the
function; then end to end, eight weeks of spend sent through a collector, read back by `spanmeter forecast`,
`GET /v1/forecast` and a month budget's `projected_usd`."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spanmeter.budgets.windows import Window
from spanmeter.cli import main
from spanmeter.forecast import BAND, HISTORY_DAYS, fit, fit_series, forecast, month_end, seasonal_share
from spanmeter.service import Collector

from .budget_helpers import budget_overrides, spend
from .conftest import REPO, http_request, tracer_provider, wait_for_rows

# Busy weekdays, quiet weekends (Monday first), averaging 1.
PATTERN = np.array([1.2, 1.25, 1.2, 1.15, 1.0, 0.5, 0.4]) / np.mean([1.2, 1.25, 1.2, 1.15, 1.0, 0.5, 0.4])
FIRST = date(2026, 9, 7)
HORIZON = 20


def series(seed: int, days: int, sigma: float = 1.5, level: float = 20.0, slope: float = 0.15) -> tuple[Any, Any]:
    """Daily spend = (level + slope x day) x weekday factor + normal noise (sd `sigma`, 7.5 % of the level), over
    `days` of history and HORIZON days after; and the noise-free mean."""
    rng = np.random.default_rng(seed)
    dates = [FIRST + timedelta(days=k) for k in range(days + HORIZON)]
    mean = np.array([(level + slope * k) * PATTERN[d.weekday()] for k, d in enumerate(dates)])
    return np.maximum(mean + rng.normal(0, sigma, len(dates)), 0), mean


def predict(history: Any, days: int) -> tuple[float, float, float]:
    """(forecast, low, high) of the HORIZON days' total after `days` days of history, from midnight."""
    now = datetime.combine(FIRST + timedelta(days=days), datetime.min.time(), UTC)
    result = forecast(
        "total", fit(list(history[:days]), FIRST), Decimal(0), Decimal(0), now, now + timedelta(days=HORIZON), now
    )
    return float(result.expected), float(result.low), float(result.high)


def test_noise_free_trend_and_weekly_pattern_are_recovered() -> None:
    _, mean = series(0, 56)
    model = fit(list(mean[:56]), FIRST)
    assert model.method == "seasonal"
    assert np.allclose(model.factors, PATTERN, rtol=1e-9)
    assert model.slope == pytest.approx(0.15) and model.level == pytest.approx(20.0)
    expected, low, high = predict(mean, 56)
    assert expected == pytest.approx(mean[56:].sum(), rel=1e-9)
    assert low == pytest.approx(expected) == pytest.approx(high)  # no residuals, no band


def test_forecast_error_within_the_stated_bound() -> None:
    """Eight weeks of history, 20 days ahead, noise of 7.5 % of a day's level. The forecast's own sd (the noise of
    the fitted line and factors, extrapolated) is ~4 % of the total here (~12 USD of ~300), so: every one of 100
    seeds within 12 % (3 sd) of the true expected total, and the median within 2.5 %."""
    errors = []
    for seed in range(100):
        history, mean = series(seed, 56)
        expected, _, _ = predict(history, 56)
        errors.append(abs(expected - mean[56:].sum()) / mean[56:].sum())
    assert max(errors) <= 0.12
    assert float(np.median(errors)) <= 0.025


def test_band_covers_the_truth_at_the_stated_rate() -> None:
    """The 90 % band holds the realised total (noise and all) in 85-95 % of 300 seeds: 90 % give or take 3 binomial
    standard deviations (1.7 % each at 300). Measured: 91 %."""
    covered = 0
    for seed in range(300):
        history, _ = series(seed, 56)
        _, low, high = predict(history, 56)
        covered += low <= history[56:].sum() <= high
    assert BAND == 0.90
    assert 0.85 <= covered / 300 <= 0.95


def test_short_history_says_so_and_uses_no_weekday_pattern() -> None:
    history, _ = series(1, 10)
    model = fit(list(history[:10]), FIRST)
    assert model.method == "trend" and model.factors == (1.0,) * 7
    assert "only 10 full days" in model.note and "no weekday pattern" in model.note
    expected, low, high = predict(history, 10)
    assert low <= history[10:].sum() <= high  # a wide band rather than a confident wrong number
    assert (high - low) / expected > 0.3

    few = fit(list(history[:3]), FIRST)
    assert few.method == "flat" and "only 3 full day(s)" in few.note and few.slope == 0

    now = datetime(2026, 12, 3, 6, tzinfo=UTC)  # a quarter of the first day gone, 5 USD spent
    start, end = month_end(now)
    first_day = forecast(
        "total", fit_series({now.date(): Decimal(5)}, now.date()), Decimal(5), Decimal(5), start, end, now
    )
    assert first_day.method == "rate so far" and "no full day" in first_day.note
    assert first_day.expected == pytest.approx(Decimal(5) * 4 * 29, rel=Decimal("1e-9"))


def test_budget_projection_weighs_days_by_their_weekday() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday
    end = datetime(2027, 1, 1, tzinfo=UTC)
    now = datetime(2026, 12, 6, tzinfo=UTC)  # Tuesday to Saturday done
    factors = tuple(float(f) for f in PATTERN)
    share = seasonal_share(factors, start, end, now)
    assert share is not None
    done = sum(PATTERN[(start + timedelta(days=k)).weekday()] for k in range(5))
    whole = sum(PATTERN[(start + timedelta(days=k)).weekday()] for k in range(31))
    assert share == pytest.approx(done / whole)
    assert Window.projected(Decimal(100), start, end, now, factors) == (Decimal(100) / Decimal(repr(share))).quantize(
        Decimal("1e-12")
    )
    assert Window.projected(Decimal(100), start, end, now) == Decimal(620)  # the straight line: 31 / 5
    assert Window.projected(Decimal(100), start, end, now, None) == Decimal(620)


# --- end to end ---------------------------------------------------------------------------------------------------


def daily_usd(day: int) -> int:
    """Whole USD a day (the budget helpers price a token at 1 USD): trend and weekly pattern, no noise."""
    moment = datetime.now(UTC).date() - timedelta(days=HISTORY_DAYS - day)
    return round((40 + 0.5 * day) * PATTERN[moment.weekday()])


@pytest.fixture
def seeded(
    start_collector: Any, chdb_path: Path, database: str, tmp_path: Path
) -> tuple[Collector, list[str], dict[date, Decimal]]:
    collector = start_collector(
        budget_overrides([{"name": "monthly-total", "window": "month", "limit_usd": 100_000, "thresholds": [100]}])
    )
    provider = tracer_provider(collector)
    now = datetime.now(UTC)
    spent: dict[date, Decimal] = {}
    for day in range(HISTORY_DAYS):
        moment = datetime.combine(now.date() - timedelta(days=HISTORY_DAYS - day), datetime.min.time(), UTC)
        moment += timedelta(hours=12)
        spend(provider, daily_usd(day), moment, **{"spanmeter.tag.feature": "chat" if day % 2 else "search"})
        spent[moment.date()] = Decimal(daily_usd(day))
    spend(provider, 7, now - timedelta(minutes=1), **{"spanmeter.tag.feature": "chat"})
    spent[now.date()] = Decimal(7)
    wait_for_rows(collector, HISTORY_DAYS + 1, timeout=90)
    config = tmp_path / "pipelines.yaml"
    config.write_text((REPO / "pipelines.yaml").read_text())
    return collector, ["--config", str(config), "--store", f"chdb://{chdb_path}", "--database", database], spent


def test_forecast_command_api_and_budget_projection(
    seeded: tuple[Collector, list[str], dict[date, Decimal]], capsys: pytest.CaptureFixture[str]
) -> None:
    collector, args, spent = seeded
    now = datetime.now(UTC)
    model = fit_series(spent, now.date())
    assert model.method == "seasonal"

    # The budget processor reads the weekday factors at reconcile and projects with them.
    deadline = time.monotonic() + 20
    assert collector.budgets is not None
    while not np.allclose(collector.budgets.weekday_factors or (1.0,) * 7, model.factors, atol=0.02):
        assert time.monotonic() < deadline, f"the budget processor read {collector.budgets.weekday_factors}"
        time.sleep(0.1)
    _, _, body = http_request(collector, "/v1/budgets")
    budget = json.loads(body)["budgets"][0]
    month_start, month_stop = month_end(now)
    share = seasonal_share(collector.budgets.weekday_factors, month_start, month_stop, now)
    assert share is not None
    assert Decimal(budget["projected_usd"]) == pytest.approx(
        Decimal(budget["spend_usd"]) / Decimal(repr(share)), rel=Decimal("0.01")
    )

    assert main(["forecast", *args, "--by", "feature", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    total = report["month"][0]
    assert total["scope"] == "total" and total["method"] == "seasonal" and total["history_days"] == HISTORY_DAYS
    month_spent = sum((v for d, v in spent.items() if d >= month_start.date()), Decimal(0))
    assert Decimal(total["spent_usd"]) == month_spent
    independent = forecast("total", model, month_spent, spent[now.date()], month_start, month_stop, datetime.now(UTC))
    assert Decimal(total["forecast_usd"]) == pytest.approx(independent.expected, rel=Decimal("0.001"))
    assert Decimal(total["low_usd"]) <= Decimal(total["forecast_usd"]) <= Decimal(total["high_usd"])
    assert {item["scope"] for item in report["month"][1:]} == {"chat", "search"}
    [monthly] = report["budgets"]
    assert monthly["budget"] == "monthly-total" and Decimal(monthly["limit_usd"]) == 100_000
    assert Decimal(monthly["forecast_usd"]) >= Decimal(monthly["spent_usd"]) > 0

    assert main(["forecast", *args]) == 0
    table = capsys.readouterr().out
    assert "Spend to the end of the month" in table and "monthly-total" in table and "seasonal" in table

    status, _, body = http_request(collector, "/v1/forecast?by=feature")
    assert status == 200
    assert Decimal(json.loads(body)["month"][0]["forecast_usd"]) == pytest.approx(
        Decimal(total["forecast_usd"]), rel=Decimal("0.001")
    )
    status, _, body = http_request(collector, "/v1/forecast?by=colour")
    assert status == 400 and "by must be one of" in json.loads(body)["error"]
    status, _, body = http_request(collector, "/v1/forecast?by=feature&projects=a")
    assert status == 400 and json.loads(body)["error"].startswith("unknown parameter projects; the parameters are by")


def test_seasonal_share_equals_a_day_by_day_walk() -> None:
    """The constant-time weights against the obvious walk over each (part of a) day, on 2,000 random windows."""
    rng = np.random.default_rng(7)
    factors = tuple(float(f) for f in rng.random(7))

    def walk(a: datetime, b: datetime) -> float:
        total, moment = 0.0, a
        while moment < b:
            step = min(b, datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(), UTC))
            total += (step - moment) / timedelta(days=1) * factors[moment.weekday()]
            moment = step
        return total

    for _ in range(2000):
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=int(rng.integers(0, 400 * 86400)))
        end = start + timedelta(seconds=int(rng.integers(86400, 60 * 86400)))
        now = start + (end - start) * float(rng.random())
        share = seasonal_share(factors, start, end, now)
        if start.date() == (end - timedelta(microseconds=1)).date():
            assert share is None
            continue
        assert share == pytest.approx(walk(start, now) / walk(start, end), rel=1e-9, abs=1e-12)
