"""`GET /v1/budgets` (every budget's status and the blocks in force, what the instrumentation's gate reads) and
`GET /v1/budgets/events?since=7d` (crossings and their deliveries), on the collector's HTTP port; the routes that
change budgets and blocks at runtime are in runtime_api.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from ..api import StoreReader, query_response
from ..auth import PRINCIPAL, AuthError, require_reader
from ..keys import Principal
from ..report import parse_since
from .config import BudgetProcessorConfig
from .model import iso
from .processor import BudgetProcessor
from .runtime import configured_budgets
from .runtime_api import add_runtime_routes
from .store import read_events
from .visibility import scope_values, visible_to

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["add_budget_routes", "no_budgets_reason"]


def add_budget_routes(
    app: web.Application, budgets: BudgetProcessor | None, reader: StoreReader, config: Config | None = None
) -> None:
    """`config` lets an empty answer say why it is empty (`reason`)."""
    reason = no_budgets_reason(config, budgets)

    async def status(request: web.Request) -> web.Response:
        principal: Principal | None = request.get(PRINCIPAL)  # any key of the project: the gate reads this
        entries = [s.to_json() for s in budgets.statuses()] if budgets is not None else []
        entries = [e for e in entries if visible_to(principal, e["scope"], e["values"])]
        blocks = [b.to_json() for b in budgets.blocks()] if budgets is not None else []
        blocks = [b for b in blocks if visible_to(principal, b["scope"], {}, blocks_all=True)]
        payload: dict[str, Any] = {"generated_at": iso(datetime.now(UTC)), "budgets": entries, "blocks": blocks}
        if principal is not None and not principal.admin:
            payload["project"] = principal.project  # the gate files its calls under it
        if not entries:
            payload["reason"] = reason
        return web.json_response(payload)

    async def events(request: web.Request) -> web.Response:
        principal: Principal | None = request.get(PRINCIPAL)
        try:
            require_reader(principal)
        except AuthError as exc:
            return web.json_response({"error": str(exc)}, status=403)
        try:
            since = datetime.now(UTC) - parse_since(request.query.get("since", "7d"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        database = reader.config.database
        scopes = {b.name: dict(b.config.scope) for b in budgets.budgets} if budgets is not None else {}

        def visible_events(client: Client) -> list[dict[str, Any]]:
            found = read_events(client, database, since)
            return [
                e for e in found if visible_to(principal, scopes.get(e["budget"], {}), scope_values(e["scope_value"]))
            ]

        return await query_response(reader, visible_events)

    app.router.add_get("/v1/budgets", status)
    app.router.add_get("/v1/budgets/events", events)
    add_runtime_routes(app, budgets, reader, configured_budgets(config))


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
