"""What every rule is given: the store, the period, the thresholds and the prices."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from .config import FindingsConfig
from .model import Finding, Period
from .prices import Prices
from .queries import query

__all__ = ["Context", "scope_of"]

SCOPE_KEYS = ("project", "service", "feature", "provider", "model")
CALLS_IN_PERIOD = """timestamp >= {start:DateTime64(9, 'UTC')}
      AND timestamp < {end:DateTime64(9, 'UTC')}
      AND ({project:String} = '' OR project = {project:String})
      AND operation NOT IN ('invoke_agent', 'create_agent', 'invoke_workflow', 'execute_tool')"""
"""`{calls_in_period}` in a rule's SQL: model calls (agent and tool spans are rows, not calls) of the period and
project. Still parameters: only this fixed text is put in."""
SCOPE_COLUMNS = """project,
    service_name AS service,
    feature,
    provider,
    if(response_model != '', response_model, request_model) AS model"""
"""`{scope_columns}` in a rule's SQL: the columns of SCOPE_KEYS (a model is the one that answered, else the one
asked for)."""


@dataclass(frozen=True)
class Context:
    client: Client
    database: str
    period: Period
    config: FindingsConfig
    prices: Prices

    def rows(self, name: str, replace: dict[str, str] | None = None, **parameters: Any) -> list[dict[str, Any]]:
        """The named rule query's rows; `replace` fills fixed expressions (never user text) into the SQL."""
        text = query(name).replace("{calls_in_period}", CALLS_IN_PERIOD).replace("{scope_columns}", SCOPE_COLUMNS)
        for key, expression in (replace or {}).items():
            text = text.replace("{" + key + "}", expression)
        # Sums are named after their columns (input_tokens...): aggregates read the columns, not the sums.
        result = self.client.query(
            text,
            parameters=self.period.parameters(self.database) | parameters,
            settings={"prefer_column_name_to_alias": 1},
        )
        return list(result.named_results())

    def finding(
        self,
        kind: str,
        row: dict[str, Any],
        savings: Decimal,
        action: str,
        evidence: dict[str, Any],
        scope: dict[str, str] | None = None,
    ) -> Finding:
        """A finding over the whole period, scoped by the row's scope columns unless `scope` is given."""
        return Finding(
            kind=kind,
            scope=scope if scope is not None else scope_of(row),
            start=self.period.start,
            end=self.period.end,
            savings_usd_per_month=savings,
            action=action,
            evidence=evidence,
            trace_ids=list(row["trace_ids"]),
        )


def scope_of(row: dict[str, Any], *keys: str) -> dict[str, str]:
    """The scope columns a row has, as strings (those that are empty stay out)."""
    return {key: str(row[key]) for key in (keys or SCOPE_KEYS) if key in row and row[key] != ""}
