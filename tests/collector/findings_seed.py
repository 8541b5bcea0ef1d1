"""Seeded traffic for the findings tests: steady clean traffic, and one scope per kind of waste, inserted into a
chDB store as the collector stores rows. Costs are genai-prices' (`calc_price`), so each test can compute the
savings it expects from genai-prices independently of the findings' own pricing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import genai_prices
from clickhouse_connect.driver.client import Client

COLUMNS = [
    "timestamp", "trace_id", "span_id", "project", "service_name", "environment", "operation", "provider",
    "request_model", "response_model", "input_tokens", "output_tokens", "cache_read_tokens", "input_cost",
    "cache_read_cost", "output_cost", "total_cost", "price_status", "price_source", "status_code", "error_type",
    "user_id", "feature", "convention", "span_attributes",
]  # fmt: skip
PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic"}
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
"""The end of the findings' period in these tests: the last complete hour."""
LAST_DAY = END.replace(hour=0) - timedelta(days=1)
"""The last complete UTC day before END, the day the anomaly is put on."""


def price(provider: str, model: str, input_tokens: int, output_tokens: int, cache_read: int = 0) -> Any:
    usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read)
    return genai_prices.calc_price(usage, model, provider_id=PROVIDER_IDS[provider])


@dataclass
class Calls:
    """Rows to insert, built call by call."""

    rows: list[list[Any]] = field(default_factory=list)

    def add(
        self,
        at: datetime,
        service: str,
        feature: str,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        user: str = "",
        prefix_hash: str = "",
        status: str = "OK",
        error_type: str = "",
        project: str = "acme",
    ) -> Decimal:
        """One call; returns its cost."""
        cost = price(provider, model, input_tokens, output_tokens)
        attributes = {"gen_ai.request.temperature": "0"}
        if prefix_hash:
            attributes["spanmeter.prompt.prefix_hash"] = prefix_hash
        self.rows.append(
            [at, uuid.uuid4().hex, uuid.uuid4().hex[:16], project, service, "prod", "chat", provider, model, model,
             input_tokens, output_tokens, 0, cost.input_price, Decimal(0), cost.output_price, cost.total_price,
             "priced", "genai-prices", status, error_type, user, feature, "otel_genai", attributes]
        )  # fmt: skip
        total: Decimal = cost.total_price
        return total

    def insert(self, client: Client, database: str) -> None:
        client.insert(f"{database}.genai_spans", self.rows, column_names=COLUMNS)


def clean(calls: Calls) -> None:
    """40 days of steady traffic none of the rules should flag: a chat service with long prompts (one call an
    hour, a unique prompt each), steady users, and short calls already on the cheapest candidate."""
    start = END - timedelta(days=40)
    for hour in range(40 * 24):
        at = start + timedelta(hours=hour, minutes=7)
        calls.add(at, "chat", "chat", "openai", "gpt-4o", 2500, 400, user=f"u-{hour % 3}",
                  prefix_hash=uuid.uuid4().hex[:16])  # fmt: skip
        calls.add(at, "support", "triage", "openai", "gpt-4.1-nano", 150, 3)
    for day in range(41):  # a weekly report: 120 calls on Mondays, 25 on other days (weekly seasonality)
        midnight = LAST_DAY - timedelta(days=day)
        for n in range(120 if midnight.weekday() == 0 else 25):
            calls.add(midnight + timedelta(minutes=5 * n + 3), "reports", "weekly", "openai", "gpt-4.1-nano", 150, 3)
    for day in range(40):  # a steady heavy user: 25 calls every day
        for n in range(25):
            calls.add(start + timedelta(days=day, minutes=30 * n + 11), "batch", "tagging", "openai", "gpt-4o-mini",
                      100, 60, user="u-heavy")  # fmt: skip
