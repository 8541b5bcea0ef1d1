"""`GET /v1/budgets` (every budget's status, what the instrumentation's gate reads) and
`GET /v1/budgets/events?since=7d` (crossings and their deliveries), on the collector's HTTP port."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from ..api import StoreReader, query_response
from ..report import parse_since
from .model import iso
from .processor import BudgetProcessor
from .store import read_events

__all__ = ["add_budget_routes"]


def add_budget_routes(app: web.Application, budgets: BudgetProcessor | None, reader: StoreReader) -> None:
    async def status(_: web.Request) -> web.Response:
        entries = [s.to_json() for s in budgets.statuses()] if budgets is not None else []
        return web.json_response({"generated_at": iso(datetime.now(UTC)), "budgets": entries})

    async def events(request: web.Request) -> web.Response:
        try:
            since = datetime.now(UTC) - parse_since(request.query.get("since", "7d"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        database = reader.config.database
        return await query_response(reader, lambda client: read_events(client, database, since))

    app.router.add_get("/v1/budgets", status)
    app.router.add_get("/v1/budgets/events", events)
