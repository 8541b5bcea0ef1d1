"""`/v1/keys` on the collector's HTTP port: what `spanmeter keys` asks when a collector holds the embedded store.

`GET /v1/keys` lists keys (never their secrets), `POST /v1/keys` with `{"project", "name", "role"}`
creates one and answers it once, `POST /v1/keys/{key_id}/revoke` revokes one. Admin keys only (or
anyone on loopback while keys are not required). This collector re-reads its keys at once after a
change; the others on the store within their refresh interval.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .api import StoreReader, query_response
from .auth import PRINCIPAL, KeyAuthenticator
from .keys import ROLES, Principal, create_key, read_keys, revoke_key

__all__ = ["add_key_routes"]


def add_key_routes(app: web.Application, reader: StoreReader, authenticator: KeyAuthenticator | None) -> None:
    database = reader.config.database

    def refreshed(action: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def run(client: Any) -> Any:
            result = action(client)
            if authenticator is not None:
                authenticator.refresh()
            return result

        return run

    async def listing(request: web.Request) -> web.Response:
        if (denied := _admin_only(request)) is not None:
            return denied
        return await query_response(reader, lambda client: [k.to_json() for k in read_keys(client, database)])

    async def create(request: web.Request) -> web.Response:
        if (denied := _admin_only(request)) is not None:
            return denied
        try:
            body = json.loads(await request.read())
            project, name, role = str(body["project"]), str(body["name"]), str(body.get("role", "ingest"))
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected a JSON object with "project", "name" and "role"'}, status=400)
        if role not in ROLES:
            return web.json_response({"error": f"role must be one of {', '.join(ROLES)}"}, status=400)

        def made(client: Any) -> dict[str, Any]:
            key, record = create_key(client, database, project, name, role)  # type: ignore[arg-type]
            return {"key": key, **record.to_json()}

        return await query_response(reader, refreshed(made))

    async def revoke(request: web.Request) -> web.Response:
        if (denied := _admin_only(request)) is not None:
            return denied
        key_id = request.match_info["key_id"]

        def revoked(client: Any) -> dict[str, Any] | None:
            try:
                return revoke_key(client, database, key_id).to_json()
            except LookupError:
                return None

        response = await query_response(reader, refreshed(revoked))
        if response.status == 200 and response.text == "null":
            return web.json_response({"error": f"no key with id {key_id!r}"}, status=404)
        return response

    app.router.add_get("/v1/keys", listing)
    app.router.add_post("/v1/keys", create)
    app.router.add_post("/v1/keys/{key_id}/revoke", revoke)


def _admin_only(request: web.Request) -> web.Response | None:
    principal: Principal | None = request.get(PRINCIPAL)
    if principal is not None and not principal.admin:
        return web.json_response({"error": f"the key {principal.key_id} is not an admin key"}, status=403)
    return None
