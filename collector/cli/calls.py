"""`spanmeter calls`: the latest calls, one line each, newest first, with filters; a table, JSON or CSV.

Pages back with `--cursor`, the position the previous page printed: a keyset on (start time, span id),
so a page never shifts while new calls are stored. It reads the store directly; when a running
collector holds the embedded store (one process per data directory), it asks that collector's API.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import urllib.parse
from collections.abc import Sequence
from decimal import Decimal

from ..calls import MAX_LIMIT, PARAMETERS, CallRow, CallsPage, CallsQuery, parse_calls_query, run_calls
from .common import EXIT_CONFIG, add_config_argument, fail, get_json, load_or_exit, read_store

__all__ = [
    "add_filter_arguments",
    "aligned",
    "cost_cell",
    "fetch_calls",
    "query_from_args",
    "register",
    "render_table",
    "run",
]

FORMATS = ("table", "json", "csv")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("calls", help="the latest calls, with filters", description=__doc__)
    add_filter_arguments(parser)
    parser.add_argument("--since", help="calls that started in a window ending now: 30m, 24h, 7d (default: 24h)")
    parser.add_argument("--from", dest="from_", metavar="FROM", help="range start, ISO 8601 (UTC if no offset)")
    parser.add_argument("--to", help="range end with --from, ISO 8601 (default: none)")
    parser.add_argument("--limit", default="50", help=f"calls per page, 1 to {MAX_LIMIT} (default: 50)")
    parser.add_argument("--cursor", help="the next page: the position the previous page printed")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.set_defaults(run=run)


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The filters `calls` and `tail` share, and where to read."""
    add_config_argument(parser)
    for name in PARAMETERS:
        flag = "--" + name.replace("_", "-")
        if name == "status":
            parser.add_argument(flag, choices=("ok", "error"), help="only calls that succeeded, or failed")
        elif name == "min_cost":
            parser.add_argument(flag, metavar="USD", help="only calls that cost at least this much (exact)")
        else:
            parser.add_argument(flag, metavar=name.upper(), help=f"only this {name}")
    parser.add_argument("--store", help="ClickHouse endpoint instead of the config's (chdb://PATH or http(s)://...)")
    parser.add_argument("--database", help="database instead of the config's")
    parser.add_argument("--collector", help="collector API base URL, used when the store is held by a collector")


def query_from_args(args: argparse.Namespace, default_since: str | None = "24h") -> CallsQuery:
    """The command line's filters through the API's own parser, so both accept and refuse the same;
    its errors name the flags."""
    values = {
        name: str(value)
        for name in (*PARAMETERS, "since", "to", "limit", "cursor")
        if (value := getattr(args, name, None)) is not None
    }
    if getattr(args, "from_", None) is not None:
        values["from"] = args.from_
    return parse_calls_query(values, lambda name: "--" + name.replace("_", "-"), default_since=default_since)


def run(args: argparse.Namespace) -> int:
    try:
        query = query_from_args(args)
    except ValueError as exc:
        return fail(str(exc), EXIT_CONFIG)
    page = read_store(
        args,
        load_or_exit(args.config),
        local=lambda client, database: run_calls(client, database, query),
        remote=lambda base, database: fetch_calls(base, query, database),
        what="calls",
    )
    if args.format == "json":
        sys.stdout.write(json.dumps(page.to_json(), indent=2) + "\n")
    elif args.format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["time", *CallRow.__dataclass_fields__])
        writer.writeheader()
        for call in page.calls:
            writer.writerow(call.to_json())
        sys.stdout.write(buffer.getvalue())
    else:
        sys.stdout.write(render_table(page.calls))
    if page.cursor is not None and args.format != "json":
        print(f"more: --cursor {page.cursor}", file=sys.stderr)
    return 0


def fetch_calls(base_url: str, query: CallsQuery, database: str) -> CallsPage:
    parameters = urllib.parse.urlencode({**query.to_parameters(), "database": database})
    return CallsPage.from_json(get_json(f"{base_url.rstrip('/')}/v1/calls?{parameters}"))


COLUMNS = (
    "time (UTC)",
    "service",
    "feature",
    "user",
    "model",
    "tokens in/out/cache",
    "cost (USD)",
    "duration",
    "status",
    "trace id",
)


def table_cells(call: CallRow) -> list[str]:
    tokens = f"{call.input_tokens:,}/{call.output_tokens:,}/{call.cache_read_tokens + call.cache_write_tokens:,}"
    status = call.status if not call.error_type else f"error: {call.error_type}"
    return [
        f"{call.time:%Y-%m-%d %H:%M:%S.%f}"[:-3],
        call.service,
        call.feature,
        call.user,
        call.model,
        tokens,
        cost_cell(call.total_cost, call.unpriced),
        f"{call.duration_ns / 1e9:.3f}s",
        status,
        call.trace_id,
    ]


def render_table(calls: list[CallRow], header: bool = True) -> str:
    if not calls:
        return "No calls match.\n" if header else ""
    lines = [list(COLUMNS)] if header else []
    lines += [table_cells(call) for call in calls]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "".join(aligned(line, widths) + "\n" for line in lines)


NUMERIC = (5, 6, 7)  # tokens, cost, duration: right-aligned


def aligned(cells: list[str], widths: Sequence[int]) -> str:
    padded = (
        cell.rjust(width) if i in NUMERIC else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )
    return "  ".join(padded).rstrip()


def cost_cell(cost: Decimal, unpriced: bool) -> str:
    """Exact, with at least 6 decimals; `unpriced` for a call with no known price, never 0."""
    if unpriced:
        return "unpriced"
    text = format(cost, "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(6, "0")
    return f"{whole}.{fraction}"
