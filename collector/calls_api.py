"""`GET /v1/calls` on the collector's HTTP port: recent calls, what `spanmeter calls` and `spanmeter tail`
ask when this collector holds the embedded store.

Parameters: project, service, model, feature, user, session, status (ok|error), min_cost (USD), since
(default 24h) or from/to, limit (1..1000, default 50), and cursor (page back) or after (follow); see
calls.py. Answers `{"calls": [...], "cursor": ..., "after": ...}`. A project key reads its own project only.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from .api import StoreReader, check_parameters, query_response, readable_database
from .auth import PRINCIPAL, AuthError, readable_project
from .calls import API_PARAMETERS, parse_calls_query, run_calls

__all__ = ["add_calls_routes"]


def add_calls_routes(app: web.Application, reader: StoreReader, follow: Callable[[], None] | None = None) -> None:
    """`follow`: called for each poll that follows new calls (`after`, as `spanmeter tail` asks), so that the
    collector stores them sooner while someone watches (`ClickHouseExporter.follow`)."""

    async def calls(request: web.Request) -> web.Response:
        try:
            check_parameters(request.query, API_PARAMETERS)
            query = parse_calls_query(request.query)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        principal = request.get(PRINCIPAL)
        try:
            query = query.with_project(readable_project(principal, query.filters.get("project", "")))
            database = readable_database(principal, request.query.get("database", reader.config.database), reader)
        except AuthError as exc:
            return web.json_response({"error": str(exc)}, status=403)
        if follow is not None and "after" in request.query:  # a reader allowed to see them follows
            follow()
        return await query_response(reader, lambda client: run_calls(client, database, query).to_json())

    app.router.add_get("/v1/calls", calls)
