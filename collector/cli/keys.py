"""`spanmeter keys`: project keys for senders and readers.

`create --project P --name N [--role ingest|read|admin]` prints a new key once (only its hash is
stored); `list` shows keys without secrets; `revoke KEY_ID` refuses a key everywhere within the
collectors' refresh interval. They use the store, or the collector holding the embedded store
(then with an admin key in $SPANMETER_API_KEY when that collector requires keys).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from clickhouse_connect.driver.client import Client

from ..keys import ROLES, create_key, read_keys, revoke_key
from .common import CommandError, add_config_argument, get_json, load_or_exit, read_store

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("keys", help="create, list or revoke project keys", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="a new key, printed once")
    create.add_argument("--project", required=True)
    create.add_argument("--name", required=True, help="what the key is for, e.g. checkout-service")
    create.add_argument("--role", choices=ROLES, default="ingest", help="ingest (default), read or admin")
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="every key, without secrets")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(run=run_list)
    revoke = actions.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("key_id", help="the id shown by `keys list` (the 12 characters after smk_)")
    revoke.set_defaults(run=run_revoke)
    for sub in (create, listing, revoke):
        add_config_argument(sub)
        sub.add_argument("--store", help="ClickHouse endpoint instead of the config's")
        sub.add_argument("--database", help="database instead of the config's")
        sub.add_argument("--collector", help="collector API base URL, used when a collector holds the store")


def _use(args: argparse.Namespace, local: Any, remote: Any, what: str) -> Any:
    return read_store(args, load_or_exit(args.config), local, remote, what)


def run_create(args: argparse.Namespace) -> int:
    def local(client: Client, database: str) -> dict[str, Any]:
        key, record = create_key(client, database, args.project, args.name, args.role)
        return {"key": key, **record.to_json()}

    def remote(base: str, _: str) -> dict[str, Any]:
        return dict(get_json(f"{base}/v1/keys", {"project": args.project, "name": args.name, "role": args.role}))

    made = _use(args, local, remote, "creating a key")
    print(made["key"])
    print(
        f"# {made['role']} key {made['key_id']} for project {made['project']!r} ({made['name']}): shown once, "
        "only its hash is kept. Senders: OTEL_EXPORTER_OTLP_HEADERS='Authorization=Bearer <key>'"
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    keys = _use(
        args,
        lambda client, database: [k.to_json() for k in read_keys(client, database)],
        lambda base, _: get_json(f"{base}/v1/keys"),
        "listing keys",
    )
    if args.format == "json":
        print(json.dumps(keys, indent=1))
        return 0
    if not keys:
        print("No keys yet: spanmeter keys create --project P --name N")
        return 0
    for key in keys:
        state = f"revoked {key['revoked_at']}" if key["revoked_at"] else "active"
        print(f"{key['key_id']}  {key['role']:6s}  {key['project']:20s}  {key['name']:24s}  {state}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    def local(client: Client, database: str) -> dict[str, Any]:
        try:
            return revoke_key(client, database, args.key_id).to_json()
        except LookupError as exc:
            raise CommandError(str(exc), 2) from None

    revoked = _use(args, local, lambda base, _: get_json(f"{base}/v1/keys/{args.key_id}/revoke", {}), "revoking")
    print(f"revoked {revoked['key_id']} ({revoked['name']}, project {revoked['project']!r})")
    return 0
