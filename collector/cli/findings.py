"""`spanmeter findings`: where money goes to waste and what to do about it (right-size, cache unused, repeated
calls, paid failures, prompt growth, anomalies), with the savings a month each would bring, largest first.

It reads the store directly; when a running collector holds the embedded store, it asks that collector's API.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from decimal import Decimal

from ..findings.api import pricing_config
from ..findings.model import Finding, Period
from ..findings.runner import run_findings
from ..report import parse_since
from .common import EXIT_CONFIG, add_config_argument, fail, get_json, load_or_exit, positive_int, read_store

__all__ = ["register", "render", "run"]

FORMATS = ("table", "json")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "findings", help="what to change to spend less, and what it saves", description=__doc__
    )
    add_config_argument(parser)
    parser.add_argument("--since", default="30d", help="the period, ending now: 7d, 30d, 8w (default: 30d)")
    parser.add_argument("--project", default="", help="only this project")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--limit", type=positive_int, default=0, metavar="N", help="only the N largest savings")
    parser.add_argument("--store", help="ClickHouse endpoint instead of the config's (chdb://PATH or http(s)://...)")
    parser.add_argument("--database", help="database instead of the config's")
    parser.add_argument("--collector", help="collector API base URL, used when the store is held by a collector")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        period = Period.ending(parse_since(args.since, "--since"), args.project)
    except ValueError as exc:
        return fail(str(exc), EXIT_CONFIG)
    config = load_or_exit(args.config)
    found = read_store(
        args,
        config,
        local=lambda client, database: run_findings(client, database, period, config.findings, pricing_config(config)),
        remote=lambda base, database: fetch_findings(base, args.since, args.project, database),
        what="findings",
    )
    if args.limit:
        found = found[: args.limit]
    sys.stdout.write(render(found, args.format, period))
    return 0


def fetch_findings(base_url: str, since: str, project: str, database: str) -> list[Finding]:
    query = urllib.parse.urlencode({"since": since, "project": project, "database": database})
    answer = get_json(f"{base_url.rstrip('/')}/v1/findings?{query}")
    return [Finding.from_json(item) for item in answer["findings"]]


def render(found: list[Finding], fmt: str, period: Period) -> str:
    if fmt == "json":
        return json.dumps([finding.to_json() for finding in found], indent=2) + "\n"
    span = f"{period.start:%Y-%m-%d %H:%M} .. {period.end:%Y-%m-%d %H:%M} UTC"
    if not found:
        return f"No findings between {span}: nothing to change.\n"
    total = sum((f.savings_usd_per_month for f in found), Decimal(0))
    lines = [f"Findings, {span}: ${total:,.2f} a month to save", ""]
    for number, finding in enumerate(found, 1):
        lines.append(
            f"{number}. {finding.kind}  ${finding.savings_usd_per_month:,.2f}/month  {finding.describe_scope()}"
        )
        lines.append(f"   {finding.action}")
        if finding.trace_ids:
            lines.append(f"   e.g. trace {', '.join(finding.trace_ids)}")
    return "\n".join(lines) + "\n"
