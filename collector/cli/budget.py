"""`spanmeter budget status` and `spanmeter budget events`: budgets as a table or JSON.

`status` asks the running collector (`GET /v1/budgets`): spend there includes what it has priced
and not yet stored. `events` reads `budget_events` (with each crossing's deliveries) from the store,
or from the collector's `GET /v1/budgets/events` when a running collector holds the embedded store.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from ..budgets.model import format_usd
from ..budgets.store import read_events
from ..report import parse_since
from .common import EXIT_CONFIG, add_config_argument, collector_url, fail, get_json, load_or_exit, read_store

__all__ = ["register", "render_events", "render_status"]

# What an older collector, which gives no reason, most likely means.
_NO_BUDGETS = "No budgets configured (processors.budget in pipelines.yaml, and budget in its traces pipeline)"


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("budget", help="budget status and threshold crossings", description=__doc__)
    actions = parser.add_subparsers(dest="budget_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="every budget's spend, limit and state (from the collector)")
    events = actions.add_parser("events", help="threshold crossings and their notifications")
    events.add_argument("--since", default="7d", help="a window ending now: 30m, 24h, 7d (default), 2w")
    events.add_argument("--store", help="ClickHouse endpoint instead of the config's")
    events.add_argument("--database", help="database instead of the config's")
    for sub in (status, events):
        add_config_argument(sub)
        sub.add_argument("--format", choices=("table", "json"), default="table")
        sub.add_argument("--collector", help="collector API base URL (default: the config's HTTP receiver)")
    status.set_defaults(run=run_status)
    events.set_defaults(run=run_events)


def run_status(args: argparse.Namespace) -> int:
    base = args.collector or collector_url(load_or_exit(args.config))
    try:
        payload = get_json(f"{base.rstrip('/')}/v1/budgets")
    except (OSError, ValueError) as exc:
        return fail(f"cannot read budget status from the collector at {base}: {exc}")
    entries = payload["budgets"]
    reason = payload.get("reason") or _NO_BUDGETS
    if args.format == "json" and not entries:
        sys.stderr.write(f"{reason}\n")
    sys.stdout.write(render_status(entries, args.format, reason))
    return 0


def run_events(args: argparse.Namespace) -> int:
    try:
        since = datetime.now(UTC) - parse_since(args.since, "--since")
    except ValueError as exc:
        return fail(str(exc), EXIT_CONFIG)
    query = urllib.parse.urlencode({"since": args.since})
    events = read_store(
        args,
        load_or_exit(args.config),
        local=lambda client, database: read_events(client, database, since),
        remote=lambda base, _database: get_json(f"{base}/v1/budgets/events?{query}"),
        what="budget events",
    )
    sys.stdout.write(render_events(events, args.format))
    return 0


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(line[i])) for line in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (header, *rows)
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines) + "\n"


def render_status(entries: list[dict[str, Any]], fmt: str, reason: str = "") -> str:
    """`reason` is the collector's word on why there are no entries (e.g. budgets not in the pipeline)."""
    if fmt == "json":
        return json.dumps(entries, indent=2) + "\n"
    if not entries:
        return f"{reason or _NO_BUDGETS}.\n"
    rows = [
        [
            e["budget"],
            e["scope_value"] or "-",
            e["window"],
            format_usd(e["spend_usd"], 4),
            format_usd(e["limit_usd"]),
            f"{e['percent']:.1f}%",
            e["state"],
            format_usd(e["projected_usd"]),
            e["action"],
            e["resets_at"],
        ]
        for e in entries
    ]
    header = ["budget", "scope", "window", "spend (USD)", "limit", "used", "state", "projected", "action", "resets"]
    return _table(header, rows)


def render_events(events: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(events, indent=2) + "\n"
    if not events:
        return "No budget threshold crossings in this period.\n"
    rows = [
        [
            e["created_at"],
            e["budget"],
            e["scope_value"] or "-",
            f"{e['threshold_percent']}%",
            format_usd(e["spend_usd"], 4),
            format_usd(e["limit_usd"]),
            e["action"],
            ", ".join(f"{d['channel']}: {d['outcome']}" for d in e["deliveries"]) or "-",
        ]
        for e in events
    ]
    header = ["created (UTC)", "budget", "scope", "threshold", "spend (USD)", "limit", "action", "notified"]
    return _table(header, rows)
