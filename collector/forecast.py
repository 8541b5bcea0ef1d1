"""Spend forecasts from the daily spend series: a robust trend times weekday factors, with a prediction band.

Why this model, in numpy and not statsmodels: the daily spend of LLM traffic is a level that drifts (more users, a
feature launched) times a weekly rhythm (office days against weekends), with outliers (a runaway job, a backfill).
A Theil-Sen line (the median of pairwise slopes) is not moved by a few outlier days the way least squares is, and
multiplicative weekday factors (medians of spend over the trend per weekday, averaging 1) follow the rhythm as the
level grows. That is a handful of medians on at most 56 numbers; statsmodels' seasonal decompositions or ETS would
add a large dependency for the same shape and need more history than a new project has.

The band: residuals (spend less trend x factor) give a standard deviation (the larger of 1.4826 x MAD and the
root mean square, for the parameters fitted: outlier days do not move the fit, but they do widen the band); the
variance of a total over the horizon adds each day's noise and the uncertainty of the
fitted line where it is extrapolated (the least-squares formula, which Theil-Sen's matches closely for normal
noise). The band is the central 90 % of a normal law of that variance; it never goes below what is already spent.

With less than two weeks of full days the weekday factors are not estimated (a single Monday says nothing about
Mondays): the forecast says so and uses trend only; with less than a week, a flat level (the median day); with no
full day yet, today's rate so far. A forecast says which of these it used (`method`).

Used by `spanmeter forecast`, `GET /v1/forecast`, and the budgets' `projected_usd` (`weekday_factors`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
from clickhouse_connect.driver.client import Client

__all__ = [
    "BAND",
    "BY",
    "BudgetForecast",
    "Fit",
    "Forecast",
    "ForecastReport",
    "ForecastRequest",
    "daily_spend",
    "fit",
    "fit_series",
    "forecast",
    "month_end",
    "parse_forecast_by",
    "run_forecast",
    "seasonal_share",
    "store_weekday_factors",
]

BAND = 0.90
"""The band's nominal coverage: a total falls outside it one time in ten."""
_Z = 1.6448536269514722  # the normal law's 95th percentile: a two-sided 90 % band
HISTORY_DAYS = 56
"""Full days a fit reads: eight of each weekday."""
SEASONAL_DAYS = 14
TREND_DAYS = 7
_MAD_TO_SD = 1.4826
_DAY = 86_400
_ROUNDS = 20
_THEIL_SEN_EFFICIENCY = 0.91  # its variance against least squares' for normal noise is 1 / 0.91
# Student's t 95th percentiles for 1..30 degrees of freedom: with few days the sigma itself is uncertain.
_T95 = (
    6.314,
    2.920,
    2.353,
    2.132,
    2.015,
    1.943,
    1.895,
    1.860,
    1.833,
    1.812,
    1.796,
    1.782,
    1.771,
    1.761,
    1.753,
    1.746,
    1.740,
    1.734,
    1.729,
    1.725,
    1.721,
    1.717,
    1.714,
    1.711,
    1.708,
    1.706,
    1.703,
    1.701,
    1.699,
    1.697,
)
_CENT_MICRO = Decimal("0.000000000001")
# --by value -> column of genai_spans_hourly (fixed: never user text)
BY: Mapping[str, str] = {
    "total": "''",
    "project": "project",
    "service": "service_name",
    "model": "model",
    "feature": "feature",
}
_DAILY = resources.files("spanmeter.queries").joinpath("daily_spend.sql").read_text(encoding="utf-8")

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Fit:
    """Expected spend of a day = max(0, level + slope x (day - origin)) x factors[weekday]."""

    origin: date
    level: float
    slope: float
    factors: tuple[float, ...]
    sigma: float  # the daily residuals' robust standard deviation
    days: int  # full days fitted
    method: str  # seasonal, trend, flat, rate so far, none
    note: str = ""
    parameters: int = 1  # fitted: level, slope, six weekday factors
    sigma_trend: float = 0.0  # the deviation of spend / factor about the line: what the line's uncertainty follows
    _t_mean: float = 0.0
    _sxx: float = 0.0

    def expected(self, day: date) -> float:
        trend = self.level + self.slope * (day - self.origin).days
        return max(0.0, trend) * self.factors[day.weekday()]


def _theil_sen(t: Floats, y: Floats) -> tuple[float, float]:
    """(intercept, slope): the median of pairwise slopes, then the median intercept."""
    i, j = np.triu_indices(len(t), k=1)
    slope = float(np.median((y[j] - y[i]) / (t[j] - t[i])))
    return float(np.median(y - slope * t)), slope


def _weekday_factors(days: Sequence[date], y: Floats, trend: Floats) -> tuple[float, ...]:
    """Per weekday the median of spend over trend, scaled to average 1 (days with no trend to divide by skipped)."""
    weekdays = np.array([day.weekday() for day in days])
    factors = np.ones(7)
    usable = trend > 1e-12
    for weekday in range(7):
        ratios = y[usable & (weekdays == weekday)] / trend[usable & (weekdays == weekday)]
        if len(ratios):
            factors[weekday] = float(np.median(ratios))
    mean = factors.mean()
    return tuple(float(f) for f in (factors / mean if mean > 0 else np.ones(7)))


def fit(daily: Sequence[float], first_day: date) -> Fit:
    """A fit of consecutive full days' spend, the first on `first_day`."""
    y = np.asarray(daily, dtype=np.float64)[-HISTORY_DAYS:]
    origin = first_day + timedelta(days=len(daily) - len(y))
    n = len(y)
    flat: tuple[float, ...] = (1.0,) * 7
    if n == 0:
        return Fit(origin, 0.0, 0.0, flat, 0.0, 0, "none", "no full day of spend yet", 0)
    days = [origin + timedelta(days=k) for k in range(n)]
    t = np.arange(n, dtype=np.float64)
    if n < TREND_DAYS:
        level = float(np.median(y))
        # Few days: the larger of the robust and the plain deviation (a robust one of 3 days can be near 0).
        sigma = max(_MAD_TO_SD * float(np.median(np.abs(y - level))), float(y.std(ddof=1))) if n > 1 else level
        note = f"only {n} full day(s) of spend: a flat level, no trend or weekday pattern"
        return Fit(origin, level, 0.0, flat, sigma, n, "flat", note, 1)
    intercept, slope = _theil_sen(t, y)
    factors = flat
    parameters = 2
    note = ""
    if n >= SEASONAL_DAYS:
        # Trend and factors each depend on the other: alternate until they settle (a few rounds).
        for _ in range(_ROUNDS):
            factors = _weekday_factors(days, y, intercept + slope * t)
            weights = np.array([factors[d.weekday()] for d in days])
            usable = weights > 1e-9
            previous = (intercept, slope)
            intercept, slope = _theil_sen(t[usable], y[usable] / weights[usable])
            if np.allclose(previous, (intercept, slope), rtol=1e-12, atol=1e-12):
                break
        factors = _weekday_factors(days, y, intercept + slope * t)
        parameters += 6
        method = "seasonal"
    else:
        method = "trend"
        note = f"only {n} full days of spend: trend only, no weekday pattern (it needs {SEASONAL_DAYS})"
    expected = np.maximum(intercept + slope * t, 0.0) * np.array([factors[d.weekday()] for d in days])
    residuals = y - expected
    sigma = _MAD_TO_SD * float(np.median(np.abs(residuals - np.median(residuals))))
    sigma *= math.sqrt(n / max(n - parameters, 1))
    # The robust deviation ignores outlier days for the fit's sake; the band must not: the larger of the two.
    sigma = max(sigma, float(np.sqrt((residuals**2).sum() / max(n - parameters, 1))))
    weights = np.array([factors[d.weekday()] for d in days])
    usable = weights > 1e-9
    off_line = y[usable] / weights[usable] - (intercept + slope * t[usable])
    sigma_trend = (
        _MAD_TO_SD * float(np.median(np.abs(off_line - np.median(off_line)))) * math.sqrt(n / (n - parameters))
    )
    t_mean = float(t.mean())
    sxx = float(((t - t_mean) ** 2).sum())
    return Fit(
        origin, intercept, slope, factors, sigma, n, method, note, parameters, max(sigma_trend, sigma), t_mean, sxx
    )


@dataclass(frozen=True)
class Forecast:
    """Spend over [start, end): what is spent by `now`, and the total expected at `end` with its band."""

    scope: str
    start: datetime
    end: datetime
    spent: Decimal
    expected: Decimal
    low: Decimal
    high: Decimal
    method: str
    days: int
    note: str

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "spent_usd": format(self.spent, "f"),
            "forecast_usd": format(self.expected, "f"),
            "low_usd": format(self.low, "f"),
            "high_usd": format(self.high, "f"),
            "band": BAND,
            "method": self.method,
            "history_days": self.days,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Forecast:
        return cls(
            scope=data["scope"],
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            spent=Decimal(data["spent_usd"]),
            expected=Decimal(data["forecast_usd"]),
            low=Decimal(data["low_usd"]),
            high=Decimal(data["high_usd"]),
            method=data["method"],
            days=int(data["history_days"]),
            note=data["note"],
        )


def forecast(
    scope: str, model: Fit, spent: Decimal, today_so_far: Decimal, start: datetime, end: datetime, now: datetime
) -> Forecast:
    """The total over [start, end) given `spent` in [start, now) (of which `today_so_far` since midnight): the
    rest of today and each day to `end`, each weighted by the part of it left in the window."""
    today = now.date()
    midnight = datetime.combine(today, datetime.min.time(), UTC)
    rest_of_today = 1.0 - (now - midnight) / timedelta(days=1)
    method, note = model.method, model.note
    if model.method == "none":  # no full day: today's rate so far, like a straight line
        fraction = max(1.0 - rest_of_today, 1e-9)
        model = Fit(today, float(today_so_far) / fraction, 0.0, (1.0,) * 7, float(today_so_far), 0, "rate so far")
        method, note = "rate so far", "no full day of spend yet: today's rate so far, no band worth the name"
    weights: list[tuple[date, float]] = []
    day = today
    while (moment := datetime.combine(day, datetime.min.time(), UTC)) < end:
        covered = (min(end, moment + timedelta(days=1)) - max(now, moment, start)) / timedelta(days=1)
        if covered > 0:
            weights.append((day, covered))
        day += timedelta(days=1)
    rest = sum(w * model.expected(d) for d, w in weights)
    if weights and weights[0][0] == today:  # today's spend so far already counts toward today's expected total
        expected_today = model.expected(today)
        rest -= weights[0][1] * expected_today
        rest += max(expected_today - float(today_so_far), 0.0) if rest_of_today > 0 else 0.0
    variance = model.sigma**2 * sum(w**2 for _, w in weights)
    if model.days >= TREND_DAYS and model._sxx > 0:
        factor_sum = sum(w * model.factors[d.weekday()] for d, w in weights)
        lever = sum(w * model.factors[d.weekday()] * ((d - model.origin).days - model._t_mean) for d, w in weights)
        line = factor_sum**2 / model.days + lever**2 / model._sxx
        variance += model.sigma_trend**2 * line / _THEIL_SEN_EFFICIENCY
    elif model.days:
        variance += model.sigma**2 * (sum(w for _, w in weights) ** 2) / model.days
    if model.method == "seasonal":  # each factor is a median of about days / 7 ratios
        per_weekday = [sum(w for d, w in weights if d.weekday() == weekday) for weekday in range(7)]
        # A factor's error is relative to the fitted level; the horizon's level scales it.
        fitted = max(model.level + model.slope * model._t_mean, 1e-12)
        middle = ((weights[0][0] - model.origin).days + (weights[-1][0] - model.origin).days) / 2
        ahead = max(model.level + model.slope * middle, 0.0)
        variance += (
            model.sigma**2 * sum(w**2 for w in per_weekday) * (math.pi / 2) / (model.days / 7) * (ahead / fitted) ** 2
        )
    half = _quantile(model.days - model.parameters) * math.sqrt(variance)
    expected = spent + _money(rest)
    return Forecast(
        scope=scope,
        start=start,
        end=end,
        spent=spent,
        expected=expected,
        low=max(spent, expected - _money(half)),
        high=expected + _money(half),
        method=method,
        days=model.days,
        note=note,
    )


def _quantile(freedom: int) -> float:
    return _T95[freedom - 1] if 1 <= freedom <= len(_T95) else (_T95[0] if freedom < 1 else _Z)


def _money(value: float) -> Decimal:
    return Decimal(repr(max(value, 0.0))).quantize(_CENT_MICRO)


def month_end(now: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) `now` is in."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def daily_spend(
    client: Client, database: str, by: str, now: datetime, since: datetime, project: str = ""
) -> dict[str, dict[date, Decimal]]:
    """Per group of `by` (BY), spend per UTC day from `since` up to `now` (today's partial day included), from the
    hourly rollup."""
    rows = client.query(
        _DAILY.replace("{group}", BY[by]),
        parameters={
            "database": database,
            "start": since.replace(tzinfo=None),
            "end": now.replace(tzinfo=None),
            "project": project,
        },
    ).result_rows
    out: dict[str, dict[date, Decimal]] = {}
    for group, day, spend in rows:
        out.setdefault(str(group), {})[day] = Decimal(spend)
    return out


def fit_series(series: Mapping[date, Decimal], today: date) -> Fit:
    """The fit of the full days before `today`, from the first day with spend (days without spend count as 0)."""
    days = sorted(day for day in series if day < today)
    if not days:
        return fit([], today)
    first = max(days[0], today - timedelta(days=HISTORY_DAYS))
    count = (today - first).days
    values = [float(series.get(first + timedelta(days=k), Decimal(0))) for k in range(count)]
    return fit(values, first)


def store_weekday_factors(client: Client, database: str, now: datetime) -> tuple[float, ...] | None:
    """The weekday factors of the store's total daily spend, or None with less than two weeks of it: what the
    budget processor weighs the rest of a window with (read at reconcile, not per batch)."""
    series = daily_spend(client, database, "total", now, now - timedelta(days=HISTORY_DAYS + 1)).get("", {})
    model = fit_series(series, now.date())
    return model.factors if model.method == "seasonal" else None


def seasonal_share(factors: Sequence[float] | None, start: datetime, end: datetime, now: datetime) -> float | None:
    """The share of [start, end)'s expected spend that falls in [start, now), days weighted by their weekday
    factor (None when there are no factors, or the window lies inside one day). In constant time: the budget
    processor asks it for every status, per batch."""
    if not factors or start.date() == (end - timedelta(microseconds=1)).date():
        return None
    whole = _weight(factors, start, end)
    return _weight(factors, start, min(max(now, start), end)) / whole if whole > 0 else None


def _weight(factors: Sequence[float], a: datetime, b: datetime) -> float:
    """The integral of the weekday factor over [a, b), in days (UTC)."""
    epoch_seconds_a, epoch_seconds_b = a.timestamp(), b.timestamp()
    if epoch_seconds_b <= epoch_seconds_a:
        return 0.0
    day_a, day_b = int(epoch_seconds_a // _DAY), int(epoch_seconds_b // _DAY)
    if day_a == day_b:
        return (epoch_seconds_b - epoch_seconds_a) / _DAY * factors[(day_a + 3) % 7]  # 1970-01-01 was a Thursday
    total = ((day_a + 1) * _DAY - epoch_seconds_a) / _DAY * factors[(day_a + 3) % 7]
    total += (epoch_seconds_b - day_b * _DAY) / _DAY * factors[(day_b + 3) % 7]
    whole_days = day_b - day_a - 1
    weeks, rest = divmod(whole_days, 7)
    total += weeks * sum(factors) + sum(factors[(day_a + 1 + k + 3) % 7] for k in range(rest))
    return total


_BUDGETS = resources.files("spanmeter.queries").joinpath("forecast_budgets.sql").read_text(encoding="utf-8")
_WINDOW_SPEND = resources.files("spanmeter.queries").joinpath("window_spend.sql").read_text(encoding="utf-8")


@dataclass(frozen=True)
class ForecastRequest:
    """`spanmeter forecast` / `GET /v1/forecast`: month-end spend per group of `by` (and in total), and each
    budget's spend at the end of its window."""

    by: str = "total"
    project: str = ""

    def __post_init__(self) -> None:
        parse_forecast_by(self.by)


def parse_forecast_by(text: str, name: str = "by") -> str:
    if text not in BY:
        raise ValueError(f"{name} must be one of {', '.join(BY)}; got {text!r}")
    return text


@dataclass(frozen=True)
class BudgetForecast:
    budget: str
    scope_value: str
    limit: Decimal
    forecast: Forecast

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "scope_value": self.scope_value,
            "limit_usd": format(self.limit, "f"),
            **self.forecast.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BudgetForecast:
        return cls(data["budget"], data["scope_value"], Decimal(data["limit_usd"]), Forecast.from_json(data))


@dataclass(frozen=True)
class ForecastReport:
    generated_at: datetime
    by: str
    project: str
    month: list[Forecast]
    budgets: list[BudgetForecast]

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "by": self.by,
            "project": self.project,
            "band": BAND,
            "month": [item.to_json() for item in self.month],
            "budgets": [item.to_json() for item in self.budgets],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ForecastReport:
        return cls(
            generated_at=datetime.fromisoformat(data["generated_at"]),
            by=data["by"],
            project=data["project"],
            month=[Forecast.from_json(item) for item in data["month"]],
            budgets=[BudgetForecast.from_json(item) for item in data["budgets"]],
        )


def run_forecast(
    client: Client, database: str, request: ForecastRequest, now: datetime | None = None
) -> ForecastReport:
    """Month-end forecasts per group (the total first), and per budget window in force: the budget's spend so far
    plus its share so far of the forecast spend to the window's end (the total's fit, the same weekdays)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    month_start, month_stop = month_end(now)
    since = min(month_start, datetime.combine(now.date(), datetime.min.time(), UTC) - timedelta(days=HISTORY_DAYS))
    groups = {"total": _sum_series(daily_spend(client, database, "total", now, since, request.project))}
    if request.by != "total":
        groups.update(daily_spend(client, database, request.by, now, since, request.project))
    month = []
    for name, series in groups.items():
        month.append(_forecast_series(name, series, month_start, month_stop, now))
    month[1:] = sorted(month[1:], key=lambda item: item.expected, reverse=True)
    total_fit = fit_series(groups["total"], now.date())
    budgets = []
    for budget, scope_value, start, end, spend, limit in client.query(
        _BUDGETS, parameters={"database": database, "now": now.replace(tzinfo=None)}
    ).result_rows:
        if request.project and _scope_project(str(scope_value)) != request.project:
            continue  # a project's forecast shows its own budgets only
        start, end = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
        everything = Decimal(
            client.query(
                _WINDOW_SPEND,
                parameters={
                    "database": database,
                    "start": start.replace(tzinfo=None),
                    "end": now.replace(tzinfo=None),
                    "project": request.project,
                },
            ).result_rows[0][0]
        )
        today = groups["total"].get(now.date(), Decimal(0))
        whole = forecast("total", total_fit, everything, today, start, end, now)
        share = Decimal(spend) / everything if everything > 0 else Decimal(0)
        budgets.append(
            BudgetForecast(
                str(budget),
                str(scope_value),
                Decimal(limit),
                Forecast(
                    scope=f"{budget} {scope_value}".strip(),
                    start=start,
                    end=end,
                    spent=Decimal(spend),
                    expected=_scaled(spend, whole.expected - everything, share),
                    low=_scaled(spend, whole.low - everything, share),
                    high=_scaled(spend, whole.high - everything, share),
                    method=whole.method,
                    days=whole.days,
                    note=whole.note,
                ),
            )
        )
    return ForecastReport(now, request.by, request.project, month, budgets)


def _scope_project(scope_value: str) -> str:
    """`project=a,user=u-1` -> a."""
    values = dict(part.split("=", 1) for part in scope_value.split(",") if "=" in part)
    return values.get("project", "")


def _scaled(spent: Decimal, rest: Decimal, share: Decimal) -> Decimal:
    return (Decimal(spent) + max(rest, Decimal(0)) * share).quantize(_CENT_MICRO)


def _sum_series(groups: Mapping[str, Mapping[date, Decimal]]) -> dict[date, Decimal]:
    total: dict[date, Decimal] = {}
    for series in groups.values():
        for day, spend in series.items():
            total[day] = total.get(day, Decimal(0)) + spend
    return total


def _forecast_series(
    name: str, series: Mapping[date, Decimal], start: datetime, end: datetime, now: datetime
) -> Forecast:
    spent = sum((spend for day, spend in series.items() if start.date() <= day <= now.date()), Decimal(0))
    today = series.get(now.date(), Decimal(0))
    return forecast(name, fit_series(series, now.date()), spent, today, start, end, now)
