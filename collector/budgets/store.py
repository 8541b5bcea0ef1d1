"""What budgets read from and write to ClickHouse: stored spend, crossings (`budget_events`),
their deliveries (`budget_deliveries`) and the status Grafana shows (`budget_status`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from ..cluster import CLUSTER_INSERT_SETTINGS
from ..sampling import WEIGHT_SQL, weighed_sql
from .ledger import Buckets, Key, Totals
from .model import Budget, BudgetStatus, Crossing
from .runtime import Block, RuntimeBudget, read_blocks, read_runtime_budgets

__all__ = ["BudgetStore", "Delivery", "read_events"]

_ESTIMATES = f"sum({weighed_sql('total_cost')}), sum({WEIGHT_SQL}), countIf(sampling_threshold > 0)"
"""Spend and calls weighed by the calls each row stands for (probability sampling), and the rows sampled."""

_EVENT_COLUMNS = (
    "event_id",
    "created_at",
    "budget",
    "scope_value",
    "window_start",
    "window_end",
    "threshold_percent",
    "spend_usd",
    "limit_usd",
    "action",
    "collector_id",
)
_STATUS_COLUMNS = (
    "budget",
    "scope_value",
    "window_start",
    "window_end",
    "spend_usd",
    "limit_usd",
    "percent",
    "state",
    "projected_usd",
    "action",
    "updated_at",
)
_DELIVERY_COLUMNS = (
    "delivered_at",
    "event_id",
    "budget",
    "scope_value",
    "threshold_percent",
    "channel",
    "channel_type",
    "outcome",
    "attempts",
    "detail",
    "collector_id",
)


class Delivery:
    """One notification's outcome on one channel."""

    __slots__ = ("attempts", "channel", "channel_type", "crossing", "delivered_at", "detail", "outcome")

    def __init__(
        self, crossing: Crossing, channel: str, channel_type: str, outcome: str, attempts: int, detail: str
    ) -> None:
        self.crossing = crossing
        self.channel = channel
        self.channel_type = channel_type
        self.outcome = outcome
        self.attempts = attempts
        self.detail = detail
        self.delivered_at = datetime.now(UTC)


class BudgetStore:
    def __init__(self, client: Client, database: str, cluster: str | None = None) -> None:
        self._client = client
        self._database = database
        # On a cluster budget_events is a Distributed table: the claim must be on its shard before it is read back.
        self._claim_settings = dict(CLUSTER_INSERT_SETTINGS) if cluster else {}

    def _table(self, name: str) -> str:
        return f"{self._database}.{name}"

    def spend(
        self, index: int, budget: Budget, start: datetime, end: datetime, most_values: int = 0
    ) -> dict[Key, Buckets]:
        """The stored spend of one budget in [start, end), by each-values and bucket; for an `each` budget,
        at most `most_values` values (the costliest), as the collector tracks no more than that."""
        sql = budget.scope.sql("s")
        if budget.window.kind == "rolling":
            bucket = "toUnixTimestamp(toStartOfHour(timestamp))"
        else:
            bucket = "toUnixTimestamp({start:DateTime64(3, 'UTC')})"
        groups = [*sql.group, bucket]
        where = ["timestamp >= {start:DateTime64(3, 'UTC')}", "timestamp < {end:DateTime64(3, 'UTC')}", *sql.where]
        query = (
            f"SELECT {', '.join(groups)}, sum(total_cost), sum(input_tokens + output_tokens), count(), "
            f"{_ESTIMATES} "
            f"FROM {{database:Identifier}}.genai_spans WHERE {' AND '.join(where)} GROUP BY {', '.join(groups)}"
        )
        parameters = {"database": self._database, "start": start, "end": end, **sql.parameters}
        if sql.group and most_values:
            # Rows are values x buckets (hours, for a rolling window): keep the costliest values' rows.
            columns = ", ".join(sql.group)
            query += (
                f" ORDER BY sum(sum(total_cost)) OVER (PARTITION BY {columns}) DESC, {columns}"
                " LIMIT {most_rows:UInt64}"
            )
            hours = budget.window.hours if budget.window.kind == "rolling" else 1
            parameters["most_rows"] = most_values * max(1, hours)
        result: dict[Key, Buckets] = {}
        each = len(sql.group)
        for row in self._client.query(query, parameters=parameters).result_rows:
            values = tuple(str(v) for v in row[:each])
            result.setdefault((index, values), {})[int(row[each])] = Totals(
                Decimal(row[each + 1]),
                int(row[each + 2]),
                int(row[each + 3]),
                Decimal(row[each + 4]),
                Decimal(row[each + 5]),
                int(row[each + 6]),
            )
        return result

    def runtime_budgets(self) -> list[RuntimeBudget]:
        return read_runtime_budgets(self._client, self._database)

    def blocks(self, now: datetime) -> list[Block]:
        return read_blocks(self._client, self._database, now)

    def fired(self, since: datetime) -> set[tuple[str, str, datetime, int]]:
        """Crossings already written for windows starting at or after `since`."""
        rows = self._client.query(
            "SELECT budget, scope_value, window_start, threshold_percent FROM {database:Identifier}.budget_events "
            "WHERE window_start >= {since:DateTime64(3, 'UTC')}",
            parameters={"database": self._database, "since": since},
        ).result_rows
        return {(b, s, _utc(w), int(t)) for b, s, w, t in rows}

    def claim(self, crossing: Crossing) -> bool:
        """Write the crossing; True when this collector's row is the one kept, so it notifies.

        The insert carries the event id as its deduplication token: of several collectors (or a
        restarted one) writing the same crossing, ClickHouse keeps the first row only.
        """
        config = crossing.budget.config
        row = (
            crossing.event_id,
            crossing.created_at,
            config.name,
            crossing.scope_value,
            crossing.window_start,
            crossing.window_end,
            crossing.threshold,
            crossing.totals.cost,
            config.limit_usd,
            config.action,
            crossing.collector_id,
        )
        self._client.insert(
            self._table("budget_events"),
            [row],
            column_names=_EVENT_COLUMNS,
            settings={**self._claim_settings, "insert_deduplication_token": crossing.event_id},
        )
        kept = self._client.query(
            "SELECT collector_id FROM {database:Identifier}.budget_events WHERE event_id = {id:String} "
            "ORDER BY created_at LIMIT 1",
            parameters={"database": self._database, "id": crossing.event_id},
        ).result_rows
        return bool(kept) and kept[0][0] == crossing.collector_id

    def record_delivery(self, delivery: Delivery) -> None:
        crossing = delivery.crossing
        row = (
            delivery.delivered_at,
            crossing.event_id,
            crossing.budget.name,
            crossing.scope_value,
            crossing.threshold,
            delivery.channel,
            delivery.channel_type,
            delivery.outcome,
            min(delivery.attempts, 255),
            delivery.detail[:1000],
            crossing.collector_id,
        )
        self._client.insert(self._table("budget_deliveries"), [row], column_names=_DELIVERY_COLUMNS)

    def write_status(self, statuses: Sequence[BudgetStatus], now: datetime) -> None:
        rows = [
            (
                s.budget.name,
                s.scope_value,
                s.window_start,
                s.window_end,
                s.totals.cost,
                s.budget.config.limit_usd,
                float(s.percent),
                s.state,
                s.projected_usd,
                s.budget.config.action,
                now,
            )
            for s in statuses
        ]
        if rows:
            self._client.insert(self._table("budget_status"), rows, column_names=_STATUS_COLUMNS)


def read_events(client: Client, database: str, since: datetime) -> list[dict[str, Any]]:
    """Crossings created since `since`, newest first, each with its deliveries' outcomes."""
    query = (
        "SELECT e.event_id, e.created_at, e.budget, e.scope_value, e.window_start, e.window_end, "
        "e.threshold_percent, e.spend_usd, e.limit_usd, e.action, e.collector_id, "
        "groupArray((d.channel, d.outcome, d.attempts, d.detail)) AS deliveries "
        "FROM (SELECT * FROM {database:Identifier}.budget_events FINAL "
        "      WHERE created_at >= {since:DateTime64(3, 'UTC')}) AS e "
        "LEFT JOIN {database:Identifier}.budget_deliveries AS d ON d.event_id = e.event_id "
        "GROUP BY e.event_id, e.created_at, e.budget, e.scope_value, e.window_start, e.window_end, "
        "e.threshold_percent, e.spend_usd, e.limit_usd, e.action, e.collector_id "
        "ORDER BY e.created_at DESC, e.budget, e.scope_value, e.threshold_percent"
    )
    out = []
    for row in client.query(query, parameters={"database": database, "since": since}).result_rows:
        record = dict(zip(_EVENT_COLUMNS, row[:11], strict=True))
        for name in ("created_at", "window_start", "window_end"):
            record[name] = _utc(record[name]).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for name in ("spend_usd", "limit_usd"):
            record[name] = str(record[name])
        record["deliveries"] = [
            {"channel": c, "outcome": o, "attempts": int(a), "detail": d} for c, o, a, d in row[11] if c
        ]
        out.append(record)
    return out


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
