"""Budgets and blocks changed at runtime, on the collector's HTTP port (what `spanmeter budget set|remove|list`
and `spanmeter block|unblock` ask when a collector holds the embedded store):

- `GET /v1/budgets/definitions`: every budget, configured or runtime (`source`), and whether a runtime one is
  shadowed by a configured one of the same name;
- `POST /v1/budgets/definitions` (a budget, as in pipelines.yaml, as JSON) and `DELETE /v1/budgets/definitions/NAME`;
- `GET /v1/budgets/blocks` (`?history=true`: every block and unblock), `POST /v1/budgets/blocks`
  (`{"scope": {...}, "reason": "...", "until": "2h"}`) and `DELETE /v1/budgets/blocks?scope=user=u-1`.

Changes need an admin key once keys are required; reads a key that may read, and a project's key sees only
the budgets and blocks of its project (and blocks of every project). This collector applies a change at
once, every other collector on the store at its next reconcile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from ..api import StoreReader
from ..auth import PRINCIPAL, AuthError, require_reader
from ..keys import Principal
from ..store import StoreError, first_line
from .config import BudgetConfig
from .processor import BudgetProcessor
from .runtime import (
    InvalidRequest,
    actor_of,
    definitions,
    lift_block,
    parse_budget,
    parse_until,
    raise_block,
    read_blocks,
    read_runtime_budgets,
    remove_budget,
    set_budget,
)
from .visibility import visible_to

__all__ = ["USER_HEADER", "add_runtime_routes"]

USER_HEADER = "X-Spanmeter-User"
"""The OS user a keyless caller (the CLI) says it is, audited as `user:NAME`; with a key, the key's id is."""


def add_runtime_routes(
    app: web.Application, budgets: BudgetProcessor | None, reader: StoreReader, configured: list[BudgetConfig]
) -> None:
    """`configured`: pipelines.yaml's budgets (those of the pipeline's budget processor when there is one)."""
    database = reader.config.database

    def config_budgets() -> list[BudgetConfig]:
        return list(budgets.config.budgets) if budgets is not None else configured

    async def run(request: web.Request, action: Callable[[Client, str], Any], admin: bool) -> web.Response:
        principal: Principal | None = request.get(PRINCIPAL)
        try:
            if admin and principal is not None and not principal.admin:
                raise AuthError(f"the key {principal.key_id} is not an admin key", forbidden=True)
            require_reader(principal)
        except AuthError as exc:
            return web.json_response({"error": str(exc)}, status=403)
        actor = actor_of(principal, request.headers.get(USER_HEADER, "")[:100])
        try:
            result = await asyncio.to_thread(reader.run, lambda client: action(client, actor))
        except InvalidRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except LookupError as exc:
            return web.json_response({"error": str(exc.args[0])}, status=404)
        except StoreError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        except Exception as exc:  # a query error from ClickHouse
            return web.json_response({"error": first_line(exc)}, status=400)
        if admin and budgets is not None:
            budgets.reconcile_soon()
        return web.json_response(result)

    async def body_of(request: web.Request) -> Any:
        try:
            return json.loads(await request.read() or b"null")
        except ValueError:
            return None

    async def list_definitions(request: web.Request) -> web.Response:
        return await run(
            request,
            lambda client, _: [
                d.to_json()
                for d in definitions(config_budgets(), read_runtime_budgets(client, database))
                if visible_to(request.get(PRINCIPAL), d.config.scope)
            ],
            admin=False,
        )

    async def set_definition(request: web.Request) -> web.Response:
        body = await body_of(request)

        def stored(client: Client, actor: str) -> dict[str, Any]:
            names = [b.name for b in config_budgets()]
            budget = set_budget(client, database, parse_budget(body), actor, names)
            return {"name": budget.config.name, "source": "runtime", "updated_by": budget.updated_by}

        return await run(request, stored, admin=True)

    async def remove_definition(request: web.Request) -> web.Response:
        name = request.match_info["name"]

        def removed(client: Client, actor: str) -> dict[str, Any]:
            return {"name": remove_budget(client, database, name, actor).config.name, "removed": True}

        return await run(request, removed, admin=True)

    async def list_blocks(request: web.Request) -> web.Response:
        history = request.query.get("history", "").lower() in ("1", "true", "yes")
        return await run(
            request,
            lambda client, _: [
                b.to_json()
                for b in read_blocks(client, database, datetime.now(UTC), history)
                if visible_to(request.get(PRINCIPAL), b.scope, blocks_all=True)
            ],
            admin=False,
        )

    async def block(request: web.Request) -> web.Response:
        body = await body_of(request)

        def raised(client: Client, actor: str) -> dict[str, Any]:
            if not isinstance(body, dict):
                raise InvalidRequest('expected a JSON object with "scope", "reason" and optionally "until"')
            until = parse_until(str(body["until"]) if body.get("until") else None, datetime.now(UTC))
            return raise_block(client, database, body.get("scope"), str(body.get("reason", "")), until, actor).to_json()

        return await run(request, raised, admin=True)

    async def unblock(request: web.Request) -> web.Response:
        scope, reason = request.query.get("scope", ""), request.query.get("reason", "")
        return await run(
            request, lambda client, actor: lift_block(client, database, scope, actor, reason).to_json(), admin=True
        )

    app.router.add_get("/v1/budgets/definitions", list_definitions)
    app.router.add_post("/v1/budgets/definitions", set_definition)
    app.router.add_delete("/v1/budgets/definitions/{name}", remove_definition)
    app.router.add_get("/v1/budgets/blocks", list_blocks)
    app.router.add_post("/v1/budgets/blocks", block)
    app.router.add_delete("/v1/budgets/blocks", unblock)
