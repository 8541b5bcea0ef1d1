"""The collector's HTTP API, served on the OTLP/HTTP port: `GET /healthz`, `GET /metrics`
and `GET /v1/report` (what `spanmeter report` asks when this collector holds the embedded store).

A collector on an embedded store also writes where its API is into the store's directory
(`spanmeter-collector.json`), so `spanmeter report --store chdb://PATH` finds the collector holding
*that* store, and checks it through `/healthz` (which names the store) before trusting its answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from clickhouse_connect.driver.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .auth import PRINCIPAL, AuthError, readable_project
from .exporters import ClickHouseExporter
from .exporters.config import ClickHouseExporterConfig
from .keys import Principal
from .report import ReportRequest, parse_what_if, run_report
from .store import StoreError, connect, describe_endpoint, first_line
from .telemetry import CollectorMetrics

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "ADVERT_FILE",
    "ApiAdvert",
    "StoreReader",
    "add_api_routes",
    "advertise_api",
    "api_base_url",
    "query_response",
    "read_advert",
    "readable_database",
    "report_request",
    "store_identity",
]

T = TypeVar("T")

ADVERT_FILE = "spanmeter-collector.json"


def store_identity(endpoint: str) -> str:
    """The store an endpoint names, the same from any process: an embedded store by its real absolute
    path (relative paths are from the working directory), a server without credentials."""
    if endpoint.startswith("chdb://"):
        return "chdb://" + os.path.realpath(endpoint.removeprefix("chdb://"))
    return describe_endpoint(endpoint)


def api_base_url(config: Config, port: int | None = None) -> str | None:
    """The collector API's base URL, from the first OTLP/HTTP receiver (`port` when it was picked at bind)."""
    for _, receiver in sorted(config.receivers.items()):
        if receiver.protocols.http is not None:
            host, _, configured = receiver.protocols.http.endpoint.rpartition(":")
            host = "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host
            scheme = "https" if receiver.protocols.http.tls is not None else "http"  # TLS covers the API too
            return f"{scheme}://{host}:{port or configured}"
    return None


@dataclass(frozen=True)
class ApiAdvert:
    """This collector's API address, written into its embedded store's directory while it runs."""

    path: Path
    body: dict[str, Any]

    def withdraw(self) -> None:
        """Remove the file at stop, if it is still this collector's."""
        if read_advert(self.path.parent) == self.body:
            self.path.unlink(missing_ok=True)


def advertise_api(store: ClickHouseExporterConfig, base_url: str | None) -> ApiAdvert | None:
    """Write where this collector's API is into its embedded store's directory (none for a server store)."""
    if base_url is None or not store.endpoint.startswith("chdb://"):
        return None
    path = Path(store.endpoint.removeprefix("chdb://")) / ADVERT_FILE
    body = {"api": base_url, "pid": os.getpid(), "store": store_identity(store.endpoint), "database": store.database}
    # One temporary file per writer: two collectors of one process (tests, embedded uses) start together too.
    temporary = path.with_name(f".{ADVERT_FILE}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_text(json.dumps(body) + "\n", encoding="utf-8")
    os.replace(temporary, path)  # readers never see half a file
    return ApiAdvert(path, body)


def read_advert(store_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The advert of the collector holding this embedded store, if one wrote it (it may be stale)."""
    try:
        data = json.loads((Path(store_dir) / ADVERT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
            # Which store this is: `spanmeter report --store` checks it before asking for a report.
            "store_endpoint": store_identity(reader.config.endpoint),
            "database": reader.config.database,
        }
        return web.json_response(body, status=200)

    async def prometheus(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def report(request: web.Request) -> web.Response:
        query = request.query
        try:
            wanted = report_request(query)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        principal = request.get(PRINCIPAL)
        try:
            wanted = replace(wanted, project=readable_project(principal, wanted.project))
            database = readable_database(principal, query.get("database", reader.config.database), reader)
        except AuthError as exc:
            return web.json_response({"error": str(exc)}, status=403)
        return await query_response(
            reader, lambda client: [row.to_json() for row in run_report(client, database, wanted)]
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/report", report)
    app.router.add_get("/metrics", prometheus)


def check_parameters(query: Mapping[str, str], known: Iterable[str]) -> None:
    """Refuse a parameter the endpoint does not read (a typo would otherwise widen the answer silently)."""
    expected = list(known)
    unknown = sorted(set(query) - set(expected))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]}; the parameters are {', '.join(expected)}")


REPORT_PARAMETERS = ("by", "project", "what_if", "since", "from", "to", "database")


def readable_database(principal: Principal | None, database: str, reader: StoreReader) -> str:
    """The `database` parameter a read may name: only an admin key (or no keys at all) may read another database
    of the store. Public: /v1/report and /v1/calls (calls_api) both hold to it."""
    if database != reader.config.database and principal is not None and not principal.admin:
        raise AuthError(
            f"database={database!r}: the key {principal.key_id} reads database {reader.config.database!r} only",
            forbidden=True,
        )
    return database


def report_request(query: Mapping[str, str]) -> ReportRequest:
    """`GET /v1/report`'s parameters: `by` (default model), `project`, `what_if` (models to price the same calls
    on, repeated or a comma list), and the range as either
    `since` (a window ending now, e.g. 24h; the default) or `from` with optional `to` (ISO 8601, UTC
    without an offset; default now). Errors name these parameters, never the command line's flags."""
    check_parameters(query, REPORT_PARAMETERS)
    by, project = query.get("by", "model"), query.get("project", "")
    getall = getattr(query, "getall", None)  # what_if may be repeated, or a comma list
    what_if = parse_what_if(getall("what_if", []) if getall else [query.get("what_if", "")])
    if "from" not in query:
        if "to" in query:
            raise ValueError("to goes with from; give from (and optionally to), or since")
        return ReportRequest.since(by, query.get("since", "24h"), project, what_if=what_if)
    if "since" in query:
        raise ValueError("give either since or from/to, not both")
    end = _query_time(query, "to") if "to" in query else datetime.now(UTC)
    return ReportRequest(by, _query_time(query, "from"), end, project, what_if)


def _query_time(query: Mapping[str, str], name: str) -> datetime:
    try:
        return datetime.fromisoformat(query[name])
    except ValueError:
        raise ValueError(f"{name} is not an ISO 8601 time: {query[name]!r}") from None
