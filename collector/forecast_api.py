"""`GET /v1/forecast?by=service&project=P`: spend to the end of the month per group and in total, and each budget's
spend at the end of its window, with a band (forecast.py); what `spanmeter forecast` asks when a collector holds the
embedded store."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from .api import StoreReader, check_parameters, query_response
from .auth import PRINCIPAL, AuthError, readable_project
from .forecast import ForecastRequest, run_forecast

__all__ = ["add_forecast_routes"]


def add_forecast_routes(app: web.Application, reader: StoreReader) -> None:
    async def forecast(request: web.Request) -> web.Response:
        try:
            check_parameters(request.query, ("by", "project"))
            wanted = ForecastRequest(request.query.get("by", "total"), request.query.get("project", ""))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        try:
            wanted = replace(wanted, project=readable_project(request.get(PRINCIPAL), wanted.project))
        except AuthError as exc:
            return web.json_response({"error": str(exc)}, status=403)
        database = reader.config.database
        return await query_response(reader, lambda client: run_forecast(client, database, wanted).to_json())

    app.router.add_get("/v1/forecast", forecast)
