"""The Budgets dashboard's forecast panel, with the plugin's macros expanded, on a store holding a daily series
with a known trend and weekly pattern: its forecast for the rest of the month follows the truth."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from spanmeter.store import apply_schema

from .conftest import Runner, dashboards
from .plugin_macros import ALL, QueryContext, Variable

PATTERN = [1.2, 1.25, 1.2, 1.15, 1.0, 0.5, 0.4]  # Monday first
COLUMNS = ["hour", "project", "service_name", "provider", "model", "feature", "requests", "total_cost"]


def test_forecast_panel_follows_a_known_trend_and_weekly_pattern(store: Client, chdb_path: Path) -> None:
    """Noise-free spend (20 USD + 0.2 a day, times the weekday's factor) for 10 weeks. The panel's factors are means
    over the mean day, which a trend over the history leans by a few percent: each forecast day within 5 % of the
    truth, and the band (residual spread) narrow around it."""
    database = f"g_forecast_{uuid.uuid4().hex[:8]}"
    apply_schema(store, database)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    today = now.date()
    first = today - timedelta(days=70)
    mean = sum(PATTERN) / 7

    def truth(day: date) -> float:
        return (20 + 0.2 * (day - first).days) * PATTERN[day.weekday()] / mean

    rows = []
    for k in range(70):
        day = first + timedelta(days=k)
        at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
        rows.append([at, "p", "svc", "openai", "gpt-4o", "chat", 1, Decimal(repr(round(truth(day), 9)))])
    store.insert("genai_spans_hourly", rows, column_names=COLUMNS, database=database)

    board = dashboards()["budgets.json"]
    panel = next(p for p in board["panels"] if "forecast to its end" in p["title"])
    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_path}", database=database)
    try:
        ctx = QueryContext(now - timedelta(days=30), now, timedelta(hours=1))
        variables = {
            name: Variable(name, [ALL])
            for name in ("project", "service", "environment", "provider", "model", "feature")
        }
        result = Runner(client, database).run(panel["targets"][0]["rawSql"], variables, ctx)
    finally:
        client.close()
    by_day = {row[0].date(): dict(zip(result.columns, row, strict=True)) for row in result.rows}
    assert min(by_day) == today.replace(day=1) and len(by_day) >= 28
    ahead = [day for day in by_day if day > today]
    for day in ahead:
        row = by_day[day]
        assert row["actual"] is None
        assert abs(row["forecast"] - truth(day)) <= 0.05 * truth(day), (day, row, truth(day))
        assert row["low"] <= row["forecast"] <= row["high"]
        assert row["high"] - row["low"] <= 0.25 * truth(day)
    for day in (d for d in by_day if d < today):
        assert by_day[day]["actual"] == pytest.approx(truth(day), rel=1e-6)
        assert by_day[day]["forecast"] is None
