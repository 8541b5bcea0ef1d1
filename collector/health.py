"""Health in Kubernetes' terms, on the OTLP/HTTP port.

`GET /livez`: the process and its exporter and WAL threads run (else restart the process).
`GET /readyz`: the collector can take spans now: the WAL is writable and under its bound, and the
store has not been failing for longer than `unavailable_grace` (a short outage is what the WAL is for).
`GET /healthz` keeps its own meaning (served by `spanmeter.api`): up, with the store's state.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .exporters import ClickHouseExporter

__all__ = ["add_health_routes", "readiness"]

_FULL = 0.95
"""Of `queue.max_bytes`: past it the WAL is too close to refusing to call the collector ready."""


def readiness(exporter: ClickHouseExporter, grace: float) -> tuple[bool, dict[str, Any]]:
    """Whether the collector is ready, and the facts behind it."""
    wal = exporter.wal
    problems: list[str] = []
    if wal.write_error is not None and not wal.probe():
        problems.append(f"the write-ahead log cannot be written: {wal.write_error}")
    if wal.size >= _FULL * wal.max_bytes:
        problems.append(f"the write-ahead log is nearly full ({wal.size} of {wal.max_bytes} bytes)")
    failing = exporter.failing_for
    if failing > grace:
        problems.append(f"ClickHouse has been failing for {failing:.0f}s")
    body: dict[str, Any] = {
        "status": "ready" if not problems else "not ready",
        "problems": problems,
        "wal_bytes": wal.size,
        "wal_max_bytes": wal.max_bytes,
        "wal_rows": wal.rows,
        "wal_quarantined_segments": wal.quarantined,
        "store": "ok" if exporter.healthy else "unavailable",
    }
    return not problems, body


def add_health_routes(app: web.Application, exporter: ClickHouseExporter, grace: float) -> None:
    async def livez(_: web.Request) -> web.Response:
        alive = exporter.alive
        return web.json_response({"status": "alive" if alive else "dead"}, status=200 if alive else 503)

    async def readyz(_: web.Request) -> web.Response:
        ready, body = await asyncio.to_thread(readiness, exporter, grace)  # a probe write may block
        return web.json_response(body, status=200 if ready else 503)

    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
