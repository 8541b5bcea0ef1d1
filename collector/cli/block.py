"""`spanmeter block` and `spanmeter unblock`: the kill switch.

`block --scope user=u-1 --reason "..." [--until 2h]` refuses the scope's model calls in every application whose
budget gate reads a collector on this store, within the gate's refresh interval plus the collector's reconcile
interval; `unblock --scope ...` lifts it. Each is kept in the store with who (a key id, or the OS user), when, why
and until when: `block list` shows the blocks in force, `block list --history` every block and unblock.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from ..budgets.runtime import actor_of, lift_block, parse_scope, parse_until, raise_block, read_blocks
from ..config import Config
from .budget import add_store_arguments, change_store, refusing, render_table, user_header
from .common import CommandError, get_json, load_or_exit, read_store

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    block = commands.add_parser("block", help="kill switch: refuse a scope's calls (block list: what is blocked)")
    block.add_argument("action", nargs="?", choices=("list",), help="list: the blocks in force")
    block.add_argument("--scope", help="KEY=VALUE[,KEY=VALUE...]: project, service, user, model, tag:NAME... (* ok)")
    block.add_argument("--reason", help="why (kept with the block)")
    block.add_argument("--until", help="when it ends: a duration (30m, 2h, 1d) or an ISO time (UTC); default never")
    block.add_argument("--history", action="store_true", help="with list: every block and unblock, newest first")
    block.add_argument("--format", choices=("table", "json"), default="table")
    block.set_defaults(run=run_block)
    unblock = commands.add_parser("unblock", help="lift a block")
    unblock.add_argument("--scope", required=True, help="the scope as blocked (block list shows it)")
    unblock.add_argument("--reason", default="", help="why (kept with the unblock)")
    unblock.set_defaults(run=run_unblock)
    for sub in (block, unblock):
        add_store_arguments(sub)


def run_block(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    if args.action == "list":
        return _list(args, config)
    if not args.scope or not args.reason:
        raise CommandError("block needs --scope and --reason (or: block list)", 2)
    now = datetime.now(UTC)
    until = refusing(lambda: parse_until(args.until, now, "--until"))
    scope = refusing(lambda: parse_scope(args.scope))
    body = {"scope": scope, "reason": args.reason, "until": until.isoformat() if until else None}

    def local(client: Client, database: str) -> dict[str, Any]:
        return raise_block(client, database, scope, args.reason, until, actor_of(None)).to_json()

    def remote(base: str, _: str) -> dict[str, Any]:
        return dict(get_json(f"{base}/v1/budgets/blocks", body, headers=user_header()))

    made = change_store(args, config, local, remote, "blocking")
    ends = f"until {made['until']}" if made["until"] else "until unblocked"
    print(f"blocked {made['scope_key']} {ends} (by {made['actor']}): {made['reason']}")
    return 0


def run_unblock(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    scope = refusing(lambda: parse_scope(args.scope))
    query = urllib.parse.urlencode({"scope": ",".join(f"{k}={v}" for k, v in scope.items()), "reason": args.reason})

    def local(client: Client, database: str) -> dict[str, Any]:
        return lift_block(client, database, scope, actor_of(None), args.reason).to_json()

    def remote(base: str, _: str) -> dict[str, Any]:
        return dict(get_json(f"{base}/v1/budgets/blocks?{query}", method="DELETE", headers=user_header()))

    lifted = change_store(args, config, local, remote, "unblocking")
    print(f"unblocked {lifted['scope_key']} (by {lifted['actor']})")
    return 0


def _list(args: argparse.Namespace, config: Config) -> int:
    suffix = "?history=true" if args.history else ""
    blocks = read_store(
        args,
        config,
        lambda client, database: [b.to_json() for b in read_blocks(client, database, datetime.now(UTC), args.history)],
        lambda base, _: get_json(f"{base}/v1/budgets/blocks{suffix}"),
        "listing blocks",
    )
    if args.format == "json":
        sys.stdout.write(json.dumps(blocks, indent=2) + "\n")
        return 0
    if not blocks:
        sys.stdout.write("Nothing is blocked.\n" if not args.history else "No blocks yet.\n")
        return 0
    rows = [[b["scope_key"], b["action"], b["at"], b["until"] or "-", b["actor"], b["reason"] or "-"] for b in blocks]
    sys.stdout.write(render_table(["scope", "action", "at (UTC)", "until", "by", "reason"], rows))
    return 0
