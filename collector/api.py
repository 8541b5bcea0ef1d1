"""The collector's HTTP API, served on the OTLP/HTTP port: `GET /healthz`, `GET /metrics`
and `GET /v1/report` (what `spanmeter report` asks when this collector holds the embedded store)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from clickhouse_connect.driver.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .config import ClickHouseExporterConfig
from .exporters import ClickHouseExporter
from .report import ReportRequest, run_report
from .store import StoreError, connect, first_line
from .telemetry import CollectorMetrics

__all__ = ["StoreReader", "add_api_routes", "query_response"]

T = TypeVar("T")


class StoreReader:
    """A read-only client of the collector's store, opened on first use, one query at a time."""

    def __init__(self, config: ClickHouseExporterConfig) -> None:
        self.config = config
        self._client: Client | None = None
        self._lock = threading.Lock()

    def report(self, request: ReportRequest, database: str) -> list[dict[str, object]]:
        return self.run(lambda client: [row.to_json() for row in run_report(client, database, request)])

    def run(self, query: Callable[[Client], T]) -> T:
        """Run `query` with the client, one at a time."""
        with self._lock:
            if self._client is None:
                self._client = connect(self.config.endpoint, self.config.username, self.config.password)
            return query(self._client)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


async def query_response(reader: StoreReader, query: Callable[[Client], Any]) -> web.Response:
    """Run a store query off the event loop; JSON, or the error: 503 when the store is unavailable."""
    try:
        result = await asyncio.to_thread(reader.run, query)
    except StoreError as exc:
        return web.json_response({"error": str(exc)}, status=503)
    except Exception as exc:  # a query error from ClickHouse
        return web.json_response({"error": first_line(exc)}, status=400)
    return web.json_response(result)


def add_api_routes(
    app: web.Application, exporter: ClickHouseExporter, metrics: CollectorMetrics, reader: StoreReader
) -> None:
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

    async def report(request: web.Request) -> web.Response:
        query = request.query
        try:
            report_request = ReportRequest(
                by=query.get("by", "model"),
                start=datetime.fromisoformat(query["from"]),
                end=datetime.fromisoformat(query["to"]),
                project=query.get("project", ""),
            )
        except KeyError as exc:
            return web.json_response({"error": f"missing query parameter {exc.args[0]}"}, status=400)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        database = query.get("database", reader.config.database)
        return await query_response(
            reader, lambda client: [row.to_json() for row in run_report(client, database, report_request)]
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/report", report)
    app.router.add_get("/metrics", prometheus)
