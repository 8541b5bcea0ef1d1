"""`spanmeter top`: spend, calls and tokens per service, model and user over the last minutes, redrawn
every few seconds in the terminal (`--once`: one frame, for scripts).

Each frame is three `spanmeter report` queries over a window ending now, read from the store or from
the collector that holds the embedded store.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal

from ..config import Config
from ..report import ReportRequest, ReportRow, run_report
from .calls import cost_cell
from .common import EXIT_CONFIG, add_config_argument, fail, load_or_exit, positive_int, read_store
from .report import fetch_report

__all__ = ["register", "render_frame", "run"]

GROUPS = ("service", "model", "user")
_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: every ANSI terminal


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("top", help="live spend per service, model and user", description=__doc__)
    add_config_argument(parser)
    parser.add_argument("--minutes", type=positive_int, default=15, help="window ending now (default: 15)")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between frames (default: 3)")
    parser.add_argument("--rows", type=positive_int, default=8, help="rows per table (default: 8)")
    parser.add_argument("--project", default="", help="only this project")
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument("--store", help="ClickHouse endpoint instead of the config's (chdb://PATH or http(s)://...)")
    parser.add_argument("--database", help="database instead of the config's")
    parser.add_argument("--collector", help="collector API base URL, used when the store is held by a collector")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        return fail("--interval must be above 0", EXIT_CONFIG)
    config = load_or_exit(args.config)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            requests = [ReportRequest.since(by, f"{args.minutes}m", args.project) for by in GROUPS]
            frame = render_frame(requests, _read(args, config, requests), args.rows)
            if args.once:
                sys.stdout.write(frame)
                return 0
            sys.stdout.write(_CLEAR + frame)
            sys.stdout.flush()
            time.sleep(args.interval)
    return 0


def _read(args: argparse.Namespace, config: Config, requests: list[ReportRequest]) -> list[list[ReportRow]]:
    return read_store(
        args,
        config,
        local=lambda client, database: [run_report(client, database, r) for r in requests],
        remote=lambda base, database: [fetch_report(base, r, database) for r in requests],
        what="top",
    )


def render_frame(requests: list[ReportRequest], tables: list[list[ReportRow]], rows: int) -> str:
    """One screen: a summary line, then per grouping its costliest `rows` groups."""
    calls = sum(row.requests for row in tables[0])
    spend = sum((row.total_cost for row in tables[0]), Decimal(0))
    unpriced = sum(row.unpriced_requests for row in tables[0])
    minutes = int((requests[0].end - requests[0].start).total_seconds() // 60)
    out = [
        f"spanmeter top: last {minutes} min to {datetime.now(UTC):%H:%M:%S} UTC"
        f"  calls {calls:,}  spend ${cost_cell(spend, 0 < calls == unpriced)}"
        + (f"  unpriced calls {unpriced:,}" if unpriced else ""),
    ]
    for request, table in zip(requests, tables, strict=True):
        out.append("")
        header = [request.by, "calls", "tokens in", "tokens out", "spend (USD)", "unpriced"]
        body = [
            [
                row.group or "(none)",
                f"{row.requests:,}",
                f"{row.input_tokens:,}",
                f"{row.output_tokens:,}",
                # A group of unpriced calls only has no spend to show, never $0.
                cost_cell(row.total_cost, 0 < row.requests == row.unpriced_requests),
                f"{row.unpriced_requests:,}" if row.unpriced_requests else "",
            ]
            for row in table[:rows]
        ]
        widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
        for line in (header, *body):
            cells = [line[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True))]
            out.append("  ".join(cells).rstrip())
        if not body:
            out.append("(no calls)")
        elif len(table) > rows:
            out.append(f"... {len(table) - rows} more")
    return "\n".join(out) + "\n"
