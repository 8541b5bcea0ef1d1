"""`GET /v1/digest`: the digest that is due now, as JSON with its plain-text and HTML renderings (what
`spanmeter digest --preview` asks when a collector holds the embedded store)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from clickhouse_connect.driver.client import Client
from pydantic import ValidationError

from ..api import StoreReader, check_parameters, query_response, readable_database
from ..auth import PRINCIPAL, AuthError, readable_project
from .config import DigestConfig
from .content import Digest, FindingLine, FindingsSource, build_digest
from .period import DigestPeriod, latest_due
from .render import render_html, render_json, render_text

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["FINDINGS_HISTORY", "add_digest_routes", "configured_digest", "digest_document", "findings_source"]

FINDINGS_HISTORY = timedelta(days=30)
"""Findings in a digest look back this far from the period's end: growth and anomalies need weeks."""


OVERRIDES = ("schedule", "project", "top", "at", "weekday")
"""The digest's settings a request (GET /v1/digest's parameters, `spanmeter digest`'s flags) may change."""


def configured_digest(config: Config, overrides: Mapping[str, str] | None = None) -> DigestConfig:
    """The first `spanmeter_digest` extension's settings (defaults when there is none), with `overrides`
    (schedule, project, top) applied; a bad override raises ValueError naming it."""
    base = next((e for e in config.extensions.values() if isinstance(e, DigestConfig)), None)
    fields: dict[str, Any] = base.model_dump() if base is not None else {}
    for name in OVERRIDES:
        if overrides and name in overrides:
            fields[name] = overrides[name]
    try:
        return DigestConfig.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}") from None


def findings_source(config: Config) -> FindingsSource:
    """The costliest findings over the 30 days before a digest's end, priced as the pipeline prices calls."""
    from ..findings.api import pricing_config
    from ..findings.model import Period
    from ..findings.runner import run_findings

    pricing = pricing_config(config)

    def top_findings(client: Client, database: str, period: DigestPeriod, project: str, top: int) -> list[FindingLine]:
        window = Period(period.end - FINDINGS_HISTORY, period.end, project)
        found = run_findings(client, database, window, config.findings, pricing)
        return [FindingLine(f.kind, f.describe_scope(), f.action, f.savings_usd_per_month) for f in found[:top]]

    return top_findings


def digest_document(digest: Digest) -> dict[str, Any]:
    """The API's answer: the digest's data, and what the email's two parts would say."""
    return {"digest": render_json(digest), "text": render_text(digest), "html": render_html(digest)}


def add_digest_routes(app: web.Application, reader: StoreReader, config: Config) -> None:
    source = findings_source(config)

    async def digest(request: web.Request) -> web.Response:
        try:
            check_parameters(request.query, (*OVERRIDES, "database"))
            wanted = configured_digest(config, request.query)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        principal = request.get(PRINCIPAL)
        try:
            project = readable_project(principal, wanted.project)
            database = readable_database(principal, request.query.get("database", reader.config.database), reader)
        except AuthError as exc:
            return web.json_response({"error": str(exc)}, status=403)
        now = datetime.now(UTC)
        period = latest_due(wanted, now)
        return await query_response(
            reader,
            lambda client: digest_document(build_digest(client, database, period, project, wanted.top, source, now)),
        )

    app.router.add_get("/v1/digest", digest)
