"""`spanmeter tail`: a live feed of calls as they are stored, with the filters of `spanmeter calls`.

Prints the latest few calls, then every call stored after them, polling every `--interval`. It polls
the store directly, or the API of the collector that holds the embedded store (`GET /v1/calls` with
`after=`). A call shows up about `exporters.clickhouse.batch.max_age` (5 s by default) plus one
interval after its span reached the collector; through the collector's API, about 1 s plus one interval (its
polls ask the collector to seal segments at 1 s of age while they last: `ClickHouseExporter.follow`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from ..calls import MAX_LIMIT, CallRow, CallsPage, CallsQuery, Cursor, run_calls
from .calls import COLUMNS, add_filter_arguments, aligned, fetch_calls, query_from_args, table_cells
from .common import EXIT_CONFIG, fail, load_or_exit, read_store

__all__ = ["Follower", "register", "run"]

OVERLAP_MS = 5000
"""How far back each poll looks again: a call stamped `ingested_at` by ClickHouse but not visible yet
(its insert still running, another collector's insert) is caught by the next poll, and shown once."""


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("tail", help="follow calls as they are stored", description=__doc__)
    add_filter_arguments(parser)
    parser.add_argument("--since", default="1d", help="only calls that started in this window (default: 1d)")
    parser.add_argument("--lines", "-n", type=int, default=10, help="latest calls to show first (default: 10)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default: 1)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="json: one object a line")
    parser.set_defaults(run=run)


class Follower:
    """Follows calls stored after a position, each shown once: each poll pages forward by (stored time,
    span id) from `OVERLAP_MS` before the newest call seen, and skips the calls already shown."""

    def __init__(self, fetch: Callable[[CallsQuery], CallsPage], query: CallsQuery) -> None:
        self._fetch = fetch
        self._query = replace(query, limit=MAX_LIMIT, cursor=None, after=None)
        self._seen: dict[tuple[str, str], int] = {}
        self._low = 0

    def start(self, lines: int) -> list[CallRow]:
        """The latest `lines` calls (oldest first); following shows the calls stored from now on."""
        latest = self._fetch(replace(self._query, limit=min(lines, MAX_LIMIT))).calls[::-1] if lines > 0 else []
        newest = max([int(time.time() * 1000), *(call.ingested_unix_milli for call in latest)])
        self._low = newest - OVERLAP_MS
        shown = self._fresh(latest)
        self.poll()  # calls stored before now are not news, but for the latest `lines`: seen, not shown
        return shown

    def poll(self) -> list[CallRow]:
        """Calls stored since the last poll, in the order they were stored."""
        found: list[CallRow] = []
        position = Cursor(self._low)
        while True:
            page = self._fetch(replace(self._query, after=position))
            found += self._fresh(page.calls)
            if len(page.calls) < self._query.limit or page.after is None:
                break
            position = page.after
        if self._seen:
            self._low = max(self._low, max(self._seen.values()) - OVERLAP_MS)
            self._seen = {key: at for key, at in self._seen.items() if at >= self._low}
        return found

    def _fresh(self, calls: list[CallRow]) -> list[CallRow]:
        out = []
        for call in calls:
            key = (call.trace_id, call.span_id)
            if key not in self._seen:
                self._seen[key] = call.ingested_unix_milli
                out.append(call)
        return out


def run(args: argparse.Namespace) -> int:
    try:
        query = query_from_args(args, default_since=args.since)
        if args.interval <= 0:
            raise ValueError(f"--interval must be above 0 seconds; got {args.interval:g}")
        if args.lines < 0:
            raise ValueError(f"--lines must be 0 or more; got {args.lines}")
    except ValueError as exc:
        return fail(str(exc), EXIT_CONFIG)
    config = load_or_exit(args.config)
    with contextlib.suppress(KeyboardInterrupt):
        read_store(
            args,
            config,
            local=lambda client, database: follow(lambda q: run_calls(client, database, q), query, args),
            remote=lambda base, database: follow(lambda q: fetch_calls(base, q, database), query, args),
            what="tail",
        )
    return 0


def follow(
    fetch: Callable[[CallsQuery], CallsPage],
    query: CallsQuery,
    args: argparse.Namespace,
    stop: threading.Event | None = None,
) -> None:
    """Print calls as they are stored until `stop` is set (or the process is interrupted)."""
    stop = stop or threading.Event()
    follower = Follower(fetch, query)
    show = _printer(args.format)
    if args.format == "table":
        print(_line(list(COLUMNS)), flush=True)
    show(follower.start(args.lines))
    print(f"following calls as they are stored (every {args.interval:g}s; Ctrl-C stops)", file=sys.stderr, flush=True)
    while not stop.wait(args.interval):
        show(follower.poll())


def _printer(fmt: str) -> Callable[[list[CallRow]], None]:
    def show(calls: list[CallRow]) -> None:
        for call in calls:
            if fmt == "json":
                print(json.dumps(call.to_json()), flush=True)
            else:
                print(_line(table_cells(call)), flush=True)

    return show


# Column widths of the feed (it cannot size them to rows it has not seen); longer cells push the line on.
_WIDTHS = (23, 16, 12, 12, 24, 20, 14, 9, 7, 32)


def _line(cells: list[str]) -> str:
    return aligned(cells, _WIDTHS)
