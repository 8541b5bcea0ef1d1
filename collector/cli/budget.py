"""`spanmeter budget status|events|list|set|remove`: budgets as a table or JSON, and budgets changed at runtime.

`status` asks the running collector (`GET /v1/budgets`): spend there includes what it has priced and not yet
stored. With no collector answering (or with --store), it reads the budgets and their stored spend from the store.
`events` reads `budget_events` (with each crossing's deliveries) from the store, or from the collector's
`GET /v1/budgets/events` when a running collector holds the embedded store. `set` and `remove` store a runtime
budget (every collector on the store applies it at its next reconcile) and `list` shows every budget with its
source (config or runtime); they use the store, or the collector holding the embedded store (with an admin key in
$SPANMETER_API_KEY once keys are required).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client

from ..auth import KeyAuthConfig
from ..budgets.config import BudgetProcessorConfig
from ..budgets.model import format_usd
from ..budgets.processor import BudgetProcessor
from ..budgets.runtime import (
    InvalidRequest,
    actor_of,
    configured_budgets,
    definitions,
    parse_budget,
    read_runtime_budgets,
    remove_budget,
    set_budget,
)
from ..budgets.runtime_api import USER_HEADER
from ..budgets.store import BudgetStore, read_events
from ..config import Config
from ..report import parse_since
from ..telemetry import CollectorMetrics
from .common import (
    EXIT_CONFIG,
    CommandError,
    add_config_argument,
    collector_url,
    fail,
    get_json,
    load_or_exit,
    read_store,
    store_config,
)

T = TypeVar("T")

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
    status.add_argument("--store", help="read budgets and stored spend from this ClickHouse endpoint, not a collector")
    status.add_argument("--database", help="database instead of the config's")
    status.set_defaults(run=run_status)
    events.set_defaults(run=run_events)
    register_runtime(actions)
    from . import block  # its commands share this module's helpers

    block.register(commands)


def run_status(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    payload = _status_without_collector(args, config) if args.store or not args.collector else None
    if payload is None:
        base = args.collector or collector_url(config)
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


def _status_without_collector(args: argparse.Namespace, config: Config) -> dict[str, Any] | None:
    """The status from the store when no collector answers at the config's address (or --store was given): the
    budgets of the config and the store, with their stored spend. None: ask the collector that answers."""
    if not args.store:
        try:
            base = collector_url(config)
            get_json(f"{base}/healthz")
            return None  # a collector runs: it knows what it has queued too
        except (CommandError, OSError, ValueError):
            pass
    processor_config = _budget_processor_config(config)
    store = store_config(config)

    def local(client: Client, database: str) -> list[dict[str, Any]]:
        processor = BudgetProcessor(processor_config, store, None, CollectorMetrics(), per_project=_keyed(config))
        processor.load_stored(BudgetStore(client, database, store.cluster))
        return [s.to_json() for s in processor.statuses()]

    entries = read_store(
        args, config, local, lambda base, _: get_json(f"{base}/v1/budgets")["budgets"], what="budget status"
    )
    if not args.store:
        sys.stderr.write("spanmeter: no collector answers; budget status from the store (spend stored so far)\n")
    return {"budgets": entries, "reason": _NO_BUDGETS}


def _budget_processor_config(config: Config) -> BudgetProcessorConfig:
    """The traces pipeline's budget processor's config, else any declared one, else none (runtime budgets only)."""
    declared = {pid: body for pid, body in config.processors.items() if isinstance(body, BudgetProcessorConfig)}
    for pid in config.service.pipelines.traces.processors:
        if pid in declared:
            return declared[pid]
    return next(iter(declared.values()), BudgetProcessorConfig())


def _keyed(config: Config) -> bool:
    """Keys are required, so budgets without a project are kept per project (as the collector does)."""
    return any(isinstance(config.extensions.get(e), KeyAuthConfig) for e in config.service.extensions)


def register_runtime(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    budget_set = actions.add_parser(
        "set", help="store a runtime budget (new, or a new version of one)", description=_SET_HELP
    )
    budget_set.add_argument("name", help="the budget's name (not one of pipelines.yaml's)")
    budget_set.add_argument("--limit-usd", help="limit_usd: the spend limit in USD")
    budget_set.add_argument(
        "--scope", action="append", default=[], metavar="KEY=VALUE", help="scope: repeat or comma-join"
    )
    budget_set.add_argument("--window", help="window: day (default), month or 'rolling Nh'")
    budget_set.add_argument("--limit-tokens", help="limit_tokens")
    budget_set.add_argument("--limit-requests", help="limit_requests")
    budget_set.add_argument("--thresholds", help="thresholds: percentages, e.g. 50,80,100")
    budget_set.add_argument("--action", help="action: notify (default) or block")
    budget_set.add_argument("--channels", help="channels: names of pipelines.yaml's channels, comma-separated")
    budget_set.add_argument("--json", dest="body", help="the whole budget as JSON (the flags above override it)")
    budget_set.set_defaults(run=run_set)
    remove = actions.add_parser("remove", help="remove a runtime budget")
    remove.add_argument("name")
    remove.set_defaults(run=run_remove)
    listing = actions.add_parser("list", help="every budget: from pipelines.yaml (config) or set at runtime")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(run=run_list)
    for sub in (budget_set, remove, listing):
        add_store_arguments(sub)


_SET_HELP = (
    "Store a budget every collector on the store applies within its reconcile interval. It is validated like a "
    "budget of pipelines.yaml; a name pipelines.yaml uses is refused (the configured budget wins)."
)


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--store", help="ClickHouse endpoint instead of the config's")
    parser.add_argument("--database", help="database instead of the config's")
    parser.add_argument("--collector", help="collector API base URL, used when a collector holds the store")


def budget_body(args: argparse.Namespace) -> dict[str, Any]:
    """The budget the flags describe, unvalidated: validation (naming each field) is the store's side's."""
    try:
        body: dict[str, Any] = json.loads(args.body) if args.body else {}
    except ValueError as exc:
        raise CommandError(f"--json is not JSON: {exc}", EXIT_CONFIG) from None
    if not isinstance(body, dict):
        raise CommandError("--json must be a JSON object", EXIT_CONFIG)
    body["name"] = args.name
    if args.scope:
        body["scope"] = {**body.get("scope", {}), **parse_pairs(",".join(args.scope), "--scope")}
    for flag in ("limit_usd", "window", "limit_tokens", "limit_requests", "action"):
        if getattr(args, flag) is not None:
            body[flag] = getattr(args, flag)
    for flag in ("thresholds", "channels"):
        if getattr(args, flag) is not None:
            body[flag] = [part.strip() for part in getattr(args, flag).split(",") if part.strip()]
    return body


def parse_pairs(text: str, flag: str) -> dict[str, str]:
    pairs = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep:
            raise CommandError(f"{flag} expects KEY=VALUE (e.g. user=each or service=support-*), got {part!r}", 2)
        pairs[key.strip()] = value.strip()
    return pairs


def user_header() -> dict[str, str]:
    """Who runs the command, for the audit when the collector takes no keys (with a key, the key's id is kept)."""
    return {USER_HEADER: actor_of(None).removeprefix("user:")}


def run_set(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    body = budget_body(args)

    def local(client: Client, database: str) -> dict[str, Any]:
        budget = set_budget(
            client, database, parse_budget(body), actor_of(None), [b.name for b in configured_budgets(config)]
        )
        return {"name": budget.config.name, "updated_by": budget.updated_by}

    def remote(base: str, _: str) -> dict[str, Any]:
        return dict(get_json(f"{base}/v1/budgets/definitions", body, headers=user_header()))

    made = change_store(args, config, local, remote, "setting a budget")
    print(
        f"budget {made['name']!r} set (runtime, by {made['updated_by']}); collectors apply it at their next reconcile"
    )
    return 0


def run_remove(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    name = urllib.parse.quote(args.name, safe="")

    def local(client: Client, database: str) -> dict[str, Any]:
        return {"name": remove_budget(client, database, args.name, actor_of(None)).config.name}

    def remote(base: str, _: str) -> dict[str, Any]:
        return dict(get_json(f"{base}/v1/budgets/definitions/{name}", method="DELETE", headers=user_header()))

    removed = change_store(args, config, local, remote, "removing a budget")
    print(f"budget {removed['name']!r} removed; collectors stop applying it at their next reconcile")
    return 0


def run_list(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    configured = configured_budgets(config)
    listed = read_store(
        args,
        config,
        lambda client, database: [d.to_json() for d in definitions(configured, read_runtime_budgets(client, database))],
        lambda base, _: get_json(f"{base}/v1/budgets/definitions"),
        "listing budgets",
    )
    if args.format == "json":
        sys.stdout.write(json.dumps(listed, indent=2) + "\n")
        return 0
    if not listed:
        sys.stdout.write("No budgets: none in pipelines.yaml, none set (spanmeter budget set NAME --limit-usd N)\n")
        return 0
    rows = [
        [
            d["name"],
            d["source"] + (" (shadowed by config)" if d["shadowed"] else ""),
            d["budget"]["window"],
            format_usd(d["budget"]["limit_usd"]),
            ",".join(f"{k}={v}" for k, v in d["budget"]["scope"].items()) or "-",
            d["budget"]["action"],
            d["updated_by"] or "-",
        ]
        for d in listed
    ]
    sys.stdout.write(render_table(["budget", "source", "window", "limit", "scope", "action", "set by"], rows))
    return 0


def refusing(action: Callable[[], T]) -> T:
    """A refusal (a field at fault, a name not found) ends the command with status 2, naming it."""
    try:
        return action()
    except InvalidRequest as exc:
        raise CommandError(str(exc), EXIT_CONFIG) from None
    except LookupError as exc:
        raise CommandError(str(exc.args[0]), EXIT_CONFIG) from None


def change_store(
    args: argparse.Namespace,
    config: Config,
    local: Callable[[Client, str], T],
    remote: Callable[[str, str], T],
    what: str,
) -> T:
    """`read_store` for a change: refused by this process (local) or by the collector holding the store (HTTP 400
    or 404), it ends with status 2 and the reason."""
    try:
        return read_store(
            args, config, lambda client, database: refusing(lambda: local(client, database)), remote, what
        )
    except CommandError as exc:
        if "answered: HTTP 400" in str(exc) or "answered: HTTP 404" in str(exc):
            raise CommandError(str(exc), EXIT_CONFIG) from None
        raise


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


def render_table(header: list[str], rows: list[list[str]]) -> str:
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
    if not any(e.get("estimated") for e in entries):
        return render_table(header, rows)
    # Probability sampling: the spend the sampled calls stand for, marked, beside the spend stored.
    header.insert(4, "est. spend")
    for row, e in zip(rows, entries, strict=True):
        estimate = format_usd(e["estimated_spend_usd"], 4)
        row.insert(4, f"~{estimate}" if e["estimated"] else estimate)
    return render_table(header, rows) + (
        "~ estimated: probability sampling (tracestate ot=th:) kept some calls; each counts as the calls it stands "
        "for. spend is what was stored, and what limits are held to.\n"
    )


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
    return render_table(header, rows)
