"""Seeded data for the dashboard and alert tests: 15 days of steady, priced traffic (the clean dataset) and the
kinds of trouble the alert rules watch for, each of which can be laid over it. Times are relative to the wall
clock, since alert rules read `now()` the way Grafana runs them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from spanmeter.findings import FindingsConfig
from spanmeter.findings.store import write_run
from spanmeter.prices import refresh as refresh_prices
from spanmeter.sampling import threshold

TROUBLES = ("spike", "drift", "unpriced", "budget", "errors", "rejected")

SPAN_COLUMNS = [
    "timestamp", "trace_id", "span_id", "parent_span_id", "project", "service_name", "environment", "operation",
    "provider", "request_model", "response_model", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "input_cost", "cache_read_cost", "cache_write_cost", "output_cost",
    "total_cost", "price_status", "price_source", "duration_ns", "status_code", "error_type", "finish_reasons",
    "user_id", "session_id", "conversation_id", "feature", "tags", "convention", "span_attributes",
    "resource_attributes", "ingested_at", "sampling_threshold",
]  # fmt: skip

# project, service, environment, provider, model, operation, feature, convention, input tokens, $ per input token,
# $ per output token
SERIES = [
    ("acme", "chat-api", "prod", "openai", "gpt-4o-mini", "chat", "chat", "otel_genai", 1200, 1.5e-7, 6e-7),
    ("acme", "chat-api", "prod", "anthropic", "claude-sonnet-4", "chat", "summarize", "otel_genai", 1000, 3e-6, 1.5e-5),
    ("acme", "search", "staging", "openai", "text-embedding-3-small", "embeddings", "search", "openllmetry", 400, 2e-8,
     0),
    ("labs", "agent", "prod", "anthropic", "claude-haiku-4", "invoke_agent", "agent", "openinference", 800, 1e-6, 5e-6),
]  # fmt: skip

# Probability sampling (README: Sampled traces): half the summarize calls were kept at 10 % (each stands for
# 2^56 / (2^56 - T) = 9.99999999999999... calls, a weight with no short decimal), a third of the agent spans at 25 %;
# the dashboards show spend, requests and tokens estimated from them.
TEN_PERCENT = threshold("ot=th:e6666666666666")
QUARTER = threshold("ot=th:c")


def sampled(series: tuple[Any, ...], n: int) -> int:
    """The rejection threshold a seeded call of `series`, the `n`th of its series, was kept with (0: not sampled)."""
    if series[6] == "summarize" and n % 2 == 0:
        return TEN_PERCENT
    return QUARTER if series[6] == "agent" and n % 3 == 0 else 0


DAYS = 15
STEP = timedelta(minutes=10)
PRICE_SOURCE = "genai-prices 0.2.3"


def _cost(value: float) -> Decimal:
    return Decimal(f"{value:.12f}")


def span(
    at: datetime,
    series: tuple[Any, ...],
    n: int,
    *,
    input_tokens: int | None = None,
    output_tokens: int = 200,
    price_per_output: float | None = None,
    model: str | None = None,
    provider: str | None = None,
    status: str = "OK",
    error_type: str = "",
    unpriced: bool = False,
) -> list[Any]:
    project, service, env, series_provider, series_model, operation, feature, convention = series[:8]
    base_input, in_price, out_price = series[8], series[9], series[10]
    tokens_in = input_tokens if input_tokens is not None else base_input + (n % 7) * 10
    tokens_out = output_tokens if operation != "embeddings" else 0
    cache_read = tokens_in // 4 if series_provider == "anthropic" else 0
    if price_per_output is not None:
        out_price = price_per_output
    if unpriced:
        input_cost = cache_cost = output_cost = Decimal(0)
    else:
        input_cost = _cost((tokens_in - cache_read) * in_price)
        cache_cost = _cost(cache_read * in_price / 10)
        output_cost = _cost(tokens_out * out_price)
    user = f"user-{n % 5}"
    return [
        at,
        uuid.uuid4().hex,
        uuid.uuid4().hex[:16],
        "",
        project,
        service,
        env,
        operation,
        provider or series_provider,
        model or series_model,
        model or series_model,
        tokens_in,
        tokens_out,
        cache_read,
        0,
        0,
        input_cost,
        cache_cost,
        Decimal(0),
        output_cost,
        input_cost + cache_cost + output_cost,
        "unpriced" if unpriced else "priced",
        "" if unpriced else PRICE_SOURCE,
        (800 + (n % 11) * 70) * 1_000_000,
        status,
        error_type,
        ["stop"] if status == "OK" else [],
        user,
        f"session-{user}-{n // 6 % 20}",
        "",
        feature,
        {"feature": feature, "team": "core" if project == "acme" else "research", "user.id": user},
        convention,
        {},
        {"service.name": service},
        at + timedelta(milliseconds=1500 + (n % 5) * 300),
        sampled(series, n),
    ]


def clean_spans(now: datetime, drift: bool = False) -> list[list[Any]]:
    rows = []
    start = now.replace(second=0, microsecond=0) - timedelta(days=DAYS)
    steps = int(timedelta(days=DAYS) / STEP)
    for step in range(steps):
        at = start + step * STEP
        for series in SERIES:
            grown = drift and series[6] == "summarize" and at >= now - timedelta(days=7)
            rows.append(span(at, series, step, input_tokens=series[8] * 3 if grown else None))
    # A busy last quarter hour for chat-api, one call of 28 failing: the error-rate rule has data, and it is low.
    for n in range(28):
        status = "ERROR" if n == 0 else "OK"
        rows.append(span(now - timedelta(seconds=30 * n + 20), SERIES[0], n, status=status, error_type="timeout"))
    return rows


def trouble_spans(now: datetime, trouble: str) -> list[list[Any]]:
    if trouble == "spike":  # 300 costly calls in the last 25 minutes, of today: the daily threshold counts today's
        since_midnight = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
        step = min(5.0, (since_midnight - 11) / 299)
        return [
            span(now - timedelta(seconds=step * n + 10), SERIES[0], n, model="gpt-4o", price_per_output=5e-3)
            for n in range(300)
        ]
    if trouble == "unpriced":
        return [
            span(now - timedelta(minutes=n + 1), SERIES[0], n, model="acme-llm-9", provider="acme-ai", unpriced=True)
            for n in range(5)
        ]
    if trouble == "errors":  # a burst of rate limits
        return [
            span(now - timedelta(seconds=10 * n + 15), SERIES[0], n, status="ERROR", error_type="429")
            for n in range(40)
        ]
    return []


def budget_rows(now: datetime, exceeded: bool) -> tuple[list[list[Any]], list[list[Any]]]:
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month + timedelta(days=32)).replace(day=1)
    spend = Decimal(120 if exceeded else 40)
    status = [
        [
            "monthly-acme",
            "acme",
            month,
            next_month,
            spend,
            Decimal(100),
            float(spend),
            "exceeded" if exceeded else "ok",
            spend * 2,
            "notify",
            now - timedelta(seconds=30),
        ],
        ["daily-labs", "labs", now.replace(hour=0, minute=0, second=0, microsecond=0),
         now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1), Decimal(2), Decimal(50), 4.0,
         "ok", Decimal(5), "block", now - timedelta(seconds=30)],
    ]  # fmt: skip
    events = []
    if exceeded:
        for n, threshold in enumerate((50, 80, 100)):
            events.append(
                [
                    f"monthly-acme/acme/{month:%Y-%m}/{threshold}",
                    now - timedelta(hours=3 - n),
                    "monthly-acme",
                    "acme",
                    month,
                    next_month,
                    threshold,
                    Decimal(threshold + 1),
                    Decimal(100),
                    "notify",
                    "collector-1",
                ]
            )
    return status, events


STATUS_COLUMNS = [
    "budget", "scope_value", "window_start", "window_end", "spend_usd", "limit_usd", "percent", "state",
    "projected_usd", "action", "updated_at",
]  # fmt: skip
EVENT_COLUMNS = [
    "event_id", "created_at", "budget", "scope_value", "window_start", "window_end", "threshold_percent",
    "spend_usd", "limit_usd", "action", "collector_id",
]  # fmt: skip


REJECTION_COLUMNS = ["rejected_at", "letter_id", "rows", "span_ids", "error"]


def seed(client: Client, database: str, now: datetime, troubles: tuple[str, ...] = ()) -> None:
    """The clean dataset, with the given troubles laid over it, into `database` (schema already applied)."""
    now = now.astimezone(UTC)
    spans = clean_spans(now, drift="drift" in troubles)
    for trouble in troubles:
        spans += trouble_spans(now, trouble)
    client.insert("genai_spans", spans, column_names=SPAN_COLUMNS, database=database)
    refresh_prices(client, database)  # as a collector does at start: the Models dashboard prices on model_prices
    status, events = budget_rows(now, exceeded="budget" in troubles)
    client.insert("budget_status", status, column_names=STATUS_COLUMNS, database=database)
    if events:
        client.insert("budget_events", events, column_names=EVENT_COLUMNS, database=database)
    if "rejected" in troubles:  # rows the exporter set aside, as it records them
        rejections = [
            [now - timedelta(minutes=5 * n + 1), f"{n:032x}-202612", n + 1, ["00000000000000aa"], "Code: 469. ..."]
            for n in range(3)
        ]
        client.insert("ingest_rejections", rejections, column_names=REJECTION_COLUMNS, database=database)
    if "errors" in troubles:  # the failed calls were billed: the collector's stored findings hold a paid_failures
        write_run(client, database, FINDINGS, None, now)


FINDINGS = FindingsConfig.model_validate(
    {"interval": "60s", **{rule: {"min_savings_usd": 0} for rule in ("paid_failures", "right_size", "cache_unused")}}
)
"""Runs every minute (the run ends at the minute's start, before `now`), reporting any saving."""
