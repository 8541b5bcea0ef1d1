"""`GET /v1/budgets` (every budget's status, what the instrumentation's gate reads) and
`GET /v1/budgets/events?since=7d` (crossings and their deliveries), on the collector's HTTP port."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..api import StoreReader, query_response
from ..config import BudgetProcessorConfig, Config
from ..report import parse_since
from .model import iso
from .processor import BudgetProcessor
from .store import read_events

__all__ = ["add_budget_routes", "no_budgets_reason"]


def add_budget_routes(
    app: web.Application, budgets: BudgetProcessor | None, reader: StoreReader, config: Config | None = None
) -> None:
    """`config` lets an empty answer say why it is empty (`reason`)."""
    reason = no_budgets_reason(config, budgets)

    async def status(_: web.Request) -> web.Response:
        entries = [s.to_json() for s in budgets.statuses()] if budgets is not None else []
        payload: dict[str, Any] = {"generated_at": iso(datetime.now(UTC)), "budgets": entries}
        if not entries:
            payload["reason"] = reason
        return web.json_response(payload)

    async def events(request: web.Request) -> web.Response:
        try:
            since = datetime.now(UTC) - parse_since(request.query.get("since", "7d"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        database = reader.config.database
        return await query_response(reader, lambda client: read_events(client, database, since))

    app.router.add_get("/v1/budgets", status)
    app.router.add_get("/v1/budgets/events", events)


def no_budgets_reason(config: Config | None, budgets: BudgetProcessor | None) -> str:
    """Why `GET /v1/budgets` lists nothing: none configured, or configured where nothing checks them."""
    if budgets is not None:
        if budgets.budgets:
            return "No spend yet in this window for the budgets with one entry per value (each)"
        return "No budgets configured: processors.budget.budgets is empty"
    if config is not None:
        for component_id, body in config.processors.items():
            if isinstance(body, BudgetProcessorConfig) and body.budgets:
                return (
                    f"Budgets are configured (processors.{component_id}: {len(body.budgets)}) but {component_id!r} "
                    "is not in service.pipelines.traces.processors, so the collector checks none: add it there "
                    "(after pricing and tags) and restart the collector"
                )
    return (
        "No budgets configured: add processors.budget to pipelines.yaml and budget to "
        "service.pipelines.traces.processors"
    )
