"""`spanmeter rejected`: rows ClickHouse refused for their values, set aside by the exporter.

`list` shows them (id, rows, error, first span ids); `retry ID…` or `retry --all` hands them back to
the exporter: a running collector stores them within a second, else the next one to start does.
Rows refused again are set aside again, under a new id.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..exporters.dead_letter import DeadLetters
from .common import CommandError, add_config_argument, load_or_exit, store_config

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("rejected", help="list or retry rows ClickHouse refused", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the rows set aside, newest last")
    add_config_argument(listing)
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(run=run_list)
    retry = actions.add_parser("retry", help="store set-aside rows again (after fixing what refused them)")
    add_config_argument(retry)
    retry.add_argument("ids", nargs="*", metavar="ID", help="ids from `spanmeter rejected list`")
    retry.add_argument("--all", action="store_true", help="every set-aside group")
    retry.set_defaults(run=run_retry)


def _dead_letters(config_path: str) -> DeadLetters:
    store = store_config(load_or_exit(config_path))
    return DeadLetters(Path(store.queue.directory) / store.database)


def run_list(args: argparse.Namespace) -> int:
    letters = _dead_letters(args.config).letters()
    if args.format == "json":
        print(json.dumps([letter.__dict__ for letter in letters], indent=1))
        return 0
    if not letters:
        print("No rows set aside: ClickHouse has refused none.")
        return 0
    for letter in letters:
        spans = ", ".join(letter.span_ids[:3]) + (" …" if len(letter.span_ids) > 3 else "")
        print(f"{letter.id}  {letter.rows} rows  {letter.rejected_at}  spans {spans}\n    {letter.error}")
    return 0


def run_retry(args: argparse.Namespace) -> int:
    dead_letters = _dead_letters(args.config)
    ids = [letter.id for letter in dead_letters.letters()] if args.all else args.ids
    if not ids:
        raise CommandError("name the ids to retry (spanmeter rejected list), or pass --all", 2)
    unknown = [letter_id for letter_id in ids if not dead_letters.requeue(letter_id)]
    if unknown:
        raise CommandError(f"no set-aside rows with id {', '.join(unknown)} in {dead_letters.rejected}", 2)
    print(
        f"{len(ids)} group(s) handed back to the exporter ({dead_letters.retry}): a running collector stores "
        "them within a second, else the next one to start"
    )
    return 0
