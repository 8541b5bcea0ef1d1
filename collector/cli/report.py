"""`spanmeter report`: requests, tokens and spend grouped by model, provider, service, feature,
user, session or any tag, as a table, JSON or CSV.

It reads the store directly; when a running collector holds the embedded store (one process per
data directory), it asks that collector's API instead.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal

from clickhouse_connect.driver.client import Client

from ..prices import UnknownModel
from ..report import GROUPS, ReportRequest, ReportRow, as_utc, parse_by, parse_what_if, run_report
from .common import (
    EXIT_CONFIG,
    CommandError,
    add_config_argument,
    add_store_arguments,
    fail,
    get_json,
    load_or_exit,
    positive_int,
    read_store,
)

__all__ = ["fetch_report", "register", "render", "run"]

FORMATS = ("table", "json", "csv")
_TABLE_COLUMNS = (
    ("requests", "requests"),
    ("input_tokens", "input"),
    ("output_tokens", "output"),
    ("cache_read_tokens", "cache read"),
    ("cache_write_tokens", "cache write"),
    ("reasoning_tokens", "reasoning"),
    ("total_cost", "cost (USD)"),
    ("unpriced_requests", "unpriced"),
)
_ESTIMATE_COLUMNS = (("estimated_requests", "est. requests"), ("estimated_cost", "est. cost (USD)"))


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("report", help="spend and tokens grouped by a dimension", description=__doc__)
    add_config_argument(parser)
    parser.add_argument("--by", default="model", help=f"group by {', '.join(GROUPS)} or tag:NAME (default: model)")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--since", default=None, help="a window ending now: 30m, 24h, 7d, 2w (default: 24h)")
    window.add_argument("--from", dest="start", type=_timestamp, help="range start, ISO 8601 (UTC if no offset)")
    parser.add_argument("--to", dest="end", type=_timestamp, help="range end with --from, ISO 8601 (default: now)")
    parser.add_argument("--project", default="", help="only this project")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument(
        "--limit", type=positive_int, default=0, metavar="N", help="only the N costliest groups (default: all)"
    )
    parser.add_argument(
        "--what-if",
        action="append",
        default=[],
        metavar="MODEL",
        help="also price the same calls on MODEL (any model genai-prices knows, or PROVIDER:MODEL); repeatable "
        "or a comma list",
    )
    add_store_arguments(parser)
    parser.set_defaults(run=run)


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return as_utc(value)


def run(args: argparse.Namespace) -> int:
    try:
        parse_by(args.by, "--by")
        what_if = parse_what_if(args.what_if)
        if args.start is not None:
            request = ReportRequest(args.by, args.start, args.end or datetime.now(UTC), args.project, what_if)
        else:
            if args.end is not None:
                return fail("--to goes with --from", EXIT_CONFIG)
            request = ReportRequest.since(args.by, args.since or "24h", args.project, name="--since", what_if=what_if)
    except ValueError as exc:
        return fail(str(exc), EXIT_CONFIG)

    rows = read_store(
        args,
        load_or_exit(args.config),
        local=lambda client, database: _local_report(client, database, request),
        remote=lambda base, database: fetch_report(base, request, database),
        what="report",
    )
    sys.stdout.write(render(rows, args.format, request, args.limit))
    return 0


def _local_report(client: Client, database: str, request: ReportRequest) -> list[ReportRow]:
    try:
        return run_report(client, database, request)
    except UnknownModel as exc:
        raise CommandError(str(exc), EXIT_CONFIG) from None


def fetch_report(base_url: str, request: ReportRequest, database: str) -> list[ReportRow]:
    query = urllib.parse.urlencode(
        {
            "by": request.by,
            "from": request.start.isoformat(),
            "to": request.end.isoformat(),
            "project": request.project,
            "database": database,
            **({"what_if": ",".join(request.what_if)} if request.what_if else {}),
        }
    )
    return [ReportRow.from_json(item) for item in get_json(f"{base_url.rstrip('/')}/v1/report?{query}")]


def render(rows: list[ReportRow], fmt: str, request: ReportRequest, limit: int = 0) -> str:
    """Rows come costliest first; `limit` keeps the first N."""
    if limit > 0:
        rows = rows[:limit]
    if fmt == "json":
        return json.dumps([row.to_json() for row in rows], indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        what_if = [f"what_if:{model}" for model in request.what_if]
        fields = [name for name in ReportRow.__dataclass_fields__ if name != "what_if"]
        writer = csv.DictWriter(buffer, fieldnames=fields + what_if)
        writer.writeheader()
        for row in rows:
            data = row.to_json()
            for model, cost in data.pop("what_if", {}).items():
                data[f"what_if:{model}"] = cost
            writer.writerow(data)
        return buffer.getvalue()
    return _table(rows, request, limit)


def _table(rows: list[ReportRow], request: ReportRequest, limit: int) -> str:
    span = f"{request.start:%Y-%m-%d %H:%M} .. {request.end:%Y-%m-%d %H:%M} UTC"
    if not rows:
        return f"No GenAI calls stored between {span}.\n"
    # Estimates (probability sampling) beside the exact sums of the rows stored, only when some group has them.
    estimates = _ESTIMATE_COLUMNS if any(row.estimated for row in rows) else ()
    header = [
        request.by,
        *(title for _, title in (*_TABLE_COLUMNS, *estimates)),
        *(f"on {model}" for model in request.what_if),
    ]
    body = [
        [
            row.group or "(none)",
            *(_cell(getattr(row, name)) for name, _ in _TABLE_COLUMNS),
            *(_estimate(getattr(row, name), row.estimated) for name, _ in estimates),
            *(_cell(row.what_if.get(model, Decimal(0))) for model in request.what_if),
        ]
        for row in rows
    ]
    totals = [f"top {limit} total" if limit else "total"]
    for column in (*_TABLE_COLUMNS, *estimates):
        total = _cell(sum((getattr(row, column[0]) for row in rows), Decimal(0) if "cost" in column[0] else 0))
        totals.append(_estimate(total, True) if column in estimates else total)
    for model in request.what_if:
        totals.append(_cell(sum((row.what_if.get(model, Decimal(0)) for row in rows), Decimal(0))))
    widths = [max(len(line[i]) for line in (header, *body, totals)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))])

    rule = "-" * len(line(header))
    title = f"Top {limit} by spend, by {request.by}" if limit else f"Spend by {request.by}"
    out = [f"{title}, {span}", line(header), rule, *(line(cells) for cells in body), rule, line(totals)]
    unpriced = sum(row.unpriced_requests for row in rows)
    if unpriced:
        out.append(f"{unpriced} calls used models with no known price: stored as unpriced, not counted as $0.")
    if request.what_if:
        out.append("on MODEL: the same calls' tokens priced on that model (genai-prices, at each call's time).")
    if estimates:
        out.append(
            "~ estimated: probability sampling (tracestate ot=th:) kept some of these calls; each counts as the "
            "calls it stands for. requests and cost are what was stored."
        )
    return "\n".join(out) + "\n"


def _estimate(value: object, estimated: bool) -> str:
    """An estimate marked `~`; a group without sampled rows shows its exact value unmarked."""
    text = value if isinstance(value, str) else _cell(value)
    return f"~{text}" if estimated else text


def _cell(value: object) -> str:
    if isinstance(value, Decimal):
        return f"{value:,.6f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
