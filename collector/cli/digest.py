"""`spanmeter digest`: the spend digest that is due now, as the collector would send it: `--preview FILE`
writes the email's HTML (chart inlined) to look at in a browser; otherwise the plain-text part is printed.

It reads the store directly; when a running collector holds the embedded store, it asks that collector's API.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from ..digest.api import configured_digest, digest_document, findings_source
from ..digest.config import WEEKDAYS
from ..digest.content import build_digest
from ..digest.period import latest_due
from .common import EXIT_CONFIG, add_config_argument, fail, get_json, load_or_exit, positive_int, read_store

__all__ = ["register", "run"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "digest", help="the spend digest due now: preview it as HTML or text", description=__doc__
    )
    add_config_argument(parser)
    parser.add_argument("--preview", metavar="FILE", help="write the email's HTML to FILE (e.g. digest.html)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="what to print (default: text)")
    parser.add_argument("--schedule", choices=("daily", "weekly"), help="instead of the configured schedule")
    parser.add_argument("--weekday", choices=WEEKDAYS, help="a weekly digest's send day")
    parser.add_argument("--project", help="only this project (default: the configured digest's)")
    parser.add_argument("--top", type=positive_int, help="movers, budgets and findings listed")
    parser.add_argument("--store", help="ClickHouse endpoint instead of the config's (chdb://PATH or http(s)://...)")
    parser.add_argument("--database", help="database instead of the config's")
    parser.add_argument("--collector", help="collector API base URL, used when the store is held by a collector")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    overrides = {
        name: str(getattr(args, name))
        for name in ("schedule", "weekday", "project", "top")
        if getattr(args, name) is not None
    }
    try:
        wanted = configured_digest(config, overrides)
    except ValueError as exc:
        return fail(str(exc), EXIT_CONFIG)

    def local(client: Client, database: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        digest = build_digest(
            client, database, latest_due(wanted, now), wanted.project, wanted.top, findings_source(config), now
        )
        return digest_document(digest)

    def remote(base: str, database: str) -> dict[str, Any]:
        query = urllib.parse.urlencode({**overrides, "database": database})
        return dict(get_json(f"{base.rstrip('/')}/v1/digest?{query}"))

    document = read_store(args, config, local, remote, what="digest")
    if args.preview:
        Path(args.preview).write_text(document["html"], encoding="utf-8")
        print(f"wrote {args.preview}", file=sys.stderr)
    if args.format == "json":
        sys.stdout.write(json.dumps(document["digest"], indent=2) + "\n")
    elif not args.preview:
        sys.stdout.write(document["text"])
    return 0
