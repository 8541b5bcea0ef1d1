"""`GET /v1/findings?since=30d&project=P`: the findings over a period ending now, largest savings first; what
`spanmeter findings` asks when a collector holds the embedded store. A project key sees its own project's only;
`database=` (an admin key's) reads another database of the store, as `--database` does on the command line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from ..api import StoreReader, check_parameters, query_response, readable_database
from ..auth import PRINCIPAL, AuthError, readable_project
from ..processors.config import PricingProcessorConfig
from ..report import parse_since
from .model import Period
from .runner import run_findings

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["add_findings_routes", "pricing_config"]


def pricing_config(config: Config) -> PricingProcessorConfig | None:
    """The traces pipeline's pricing processor, whose overrides price what-ifs as calls are priced."""
    for processor_id in config.service.pipelines.traces.processors:
        body = config.processors.get(processor_id)
        if isinstance(body, PricingProcessorConfig):
            return body
    return None


def add_findings_routes(app: web.Application, reader: StoreReader, config: Config) -> None:
    pricing = pricing_config(config)

    async def findings(request: web.Request) -> web.Response:
        try:
            check_parameters(request.query, ("since", "project", "database"))
            period = Period.ending(parse_since(request.query.get("since", "30d")), request.query.get("project", ""))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        principal = request.get(PRINCIPAL)
        try:
            project = readable_project(principal, period.project)
            database = readable_database(principal, request.query.get("database", reader.config.database), reader)
        except AuthError as exc:
            return web.json_response({"error": str(exc)}, status=403)
        period = Period(period.start, period.end, project)
        return await query_response(
            reader,
            lambda client: {
                "generated_at": datetime.now(UTC).isoformat(),
                "start": period.start.isoformat(),
                "end": period.end.isoformat(),
                "findings": [f.to_json() for f in run_findings(client, database, period, config.findings, pricing)],
            },
        )

    app.router.add_get("/v1/findings", findings)
