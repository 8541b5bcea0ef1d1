"""The collector's HTTP API, served on the OTLP/HTTP port: `GET /healthz` and `GET /metrics`."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .exporters import ClickHouseExporter
from .telemetry import CollectorMetrics

__all__ = ["add_api_routes"]


def add_api_routes(app: web.Application, exporter: ClickHouseExporter, metrics: CollectorMetrics) -> None:
    async def healthz(_: web.Request) -> web.Response:
        # Up while the store is failing (rows queue and are retried), but say so.
        body = {
            "status": "ok" if exporter.healthy else "degraded",
            "store": "ok" if exporter.healthy else "unavailable",
            "queued_rows": exporter.queued_rows,
        }
        return web.json_response(body, status=200)

    async def prometheus(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
