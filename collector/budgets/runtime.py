"""Budgets and blocks changed while collectors run, kept in the store so every collector on it agrees.

Runtime budgets (`runtime_budgets`, 018) are versioned rows keyed by name, the newest winning, a removal being a
newer tombstone row; each collector reads them at every reconcile and applies them beside the budgets of
pipelines.yaml. A runtime budget never shadows a configured one: `set` refuses a configured name, and a collector
whose configuration names it too (another file, a reload) keeps the configured one and says so.

Blocks (`budget_blocks`, 019) are the kill switch: an append-only log of scopes blocked and unblocked, with who,
when, why and until when, so the log is its own audit trail. The instrumentation's gate reads the active blocks
from `GET /v1/budgets` and refuses calls in their scope.
"""

from __future__ import annotations

import getpass
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clickhouse_connect.driver.client import Client
from pydantic import ValidationError

from ..keys import Principal
from ..report import parse_since
from .config import BUDGET_SCOPE_KEYS, BudgetConfig, BudgetProcessorConfig
from .model import iso
from .scope import EACH

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "Block",
    "BudgetDefinition",
    "InvalidRequest",
    "RuntimeBudget",
    "actor_of",
    "configured_budgets",
    "definitions",
    "effective_budgets",
    "lift_block",
    "parse_budget",
    "parse_scope",
    "parse_until",
    "raise_block",
    "read_blocks",
    "read_runtime_budgets",
    "remove_budget",
    "scope_key",
    "set_budget",
]

logger = logging.getLogger(__name__)

_BUDGET_COLUMNS = ("name", "config", "deleted", "updated_at", "updated_by", "version")
_BLOCK_COLUMNS = ("scope_key", "scope", "action", "reason", "until", "actor", "at", "version")


class InvalidRequest(ValueError):
    """A budget or block refused before it reached the store; the message names the field at fault."""


def actor_of(principal: Principal | None, claimed: str = "") -> str:
    """Who made a change, as audited: the key's id when the caller authenticated, else the OS user (the CLI's own,
    or the one a keyless API caller says it is: `user:NAME`)."""
    if principal is not None:
        return f"key:{principal.key_id}"
    return f"user:{claimed or _os_user()}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container): still say something true
        return "unknown"


# --- budgets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeBudget:
    config: BudgetConfig
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class BudgetDefinition:
    """A budget as `budget list` shows it: where it comes from, and whether it applies."""

    config: BudgetConfig
    source: str  # "config" or "runtime"
    updated_at: datetime | None = None
    updated_by: str = ""
    shadowed: bool = False  # a runtime budget named like a configured one: the configured one applies

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "source": self.source,
            "shadowed": self.shadowed,
            "updated_at": iso(self.updated_at) if self.updated_at else None,
            "updated_by": self.updated_by,
            "budget": self.config.model_dump(mode="json"),
        }


def parse_budget(body: object) -> BudgetConfig:
    """A budget from a JSON body, validated like one of pipelines.yaml; InvalidRequest names the field."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("expected a JSON object with the fields of a budget (name, limit_usd, scope, window...)")
    try:
        return BudgetConfig.model_validate(dict(body))
    except ValidationError as exc:
        raise InvalidRequest(validation_message(exc)) from None


def validation_message(error: ValidationError) -> str:
    """`limit_usd: Input should be greater than 0; window: expected day, ...`: each field at fault, named."""
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(body)"
        detail = (
            "unknown field" if item["type"] == "extra_forbidden" else str(item["msg"]).removeprefix("Value error, ")
        )
        parts.append(f"{field}: {detail}")
    return "; ".join(parts)


def set_budget(
    client: Client, database: str, budget: BudgetConfig, actor: str, configured: Iterable[str] = ()
) -> RuntimeBudget:
    """Store `budget` (a new one, or a new version of one set before). `configured`: the names of pipelines.yaml's
    budgets, which a runtime budget may not take."""
    if budget.name in set(configured):
        raise InvalidRequest(
            f"name: {budget.name!r} is a budget of pipelines.yaml (processors.budget.budgets); change it there "
            "(then SIGHUP the collectors), or give the runtime budget another name"
        )
    now = datetime.now(UTC)
    row = (budget.name, budget.model_dump_json(by_alias=True), 0, now, actor, time.time_ns())
    client.insert("runtime_budgets", [row], column_names=_BUDGET_COLUMNS, database=database)
    return RuntimeBudget(budget, now, actor)


def remove_budget(client: Client, database: str, name: str, actor: str) -> RuntimeBudget:
    """Write a tombstone for `name`; LookupError when no runtime budget has that name."""
    current = {b.config.name: b for b in read_runtime_budgets(client, database)}.get(name)
    if current is None:
        raise LookupError(f"no runtime budget named {name!r} (budget list shows them)")
    now = datetime.now(UTC)
    row = (name, current.config.model_dump_json(by_alias=True), 1, now, actor, time.time_ns())
    client.insert("runtime_budgets", [row], column_names=_BUDGET_COLUMNS, database=database)
    return RuntimeBudget(current.config, now, actor)


def read_runtime_budgets(client: Client, database: str) -> list[RuntimeBudget]:
    """The newest version of each runtime budget, without the removed ones, by name. A stored budget this version
    cannot read (written by a newer one) is logged and left out, never applied half-understood."""
    rows = client.query(
        "SELECT name, config, updated_at, updated_by FROM {database:Identifier}.runtime_budgets FINAL "
        "WHERE deleted = 0 ORDER BY name",
        parameters={"database": database},
    ).result_rows
    out = []
    for name, text, updated_at, updated_by in rows:
        try:
            config = BudgetConfig.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            logger.warning("runtime budget %r is not readable, so not applied: %s", name, str(exc).splitlines()[0])
            continue
        out.append(RuntimeBudget(config, _utc(updated_at), str(updated_by)))
    return out


def effective_budgets(
    configured: Sequence[BudgetConfig], runtime: Sequence[RuntimeBudget], channels: Iterable[str]
) -> tuple[list[BudgetConfig], list[str]]:
    """The budgets to apply (the configured ones, then the runtime ones they do not shadow) and what to warn of:
    a shadowed runtime budget, or one naming a channel this collector does not have (it applies, unnotified there)."""
    names = {b.name for b in configured}
    known = set(channels)
    applied = list(configured)
    warnings = []
    for budget in runtime:
        config = budget.config
        if config.name in names:
            warnings.append(
                f"runtime budget {config.name!r} is not applied: pipelines.yaml has a budget of that name, which wins"
            )
            continue
        missing = [c for c in config.channels if c not in known]
        if missing:
            warnings.append(
                f"runtime budget {config.name!r} names channels this collector does not have ({', '.join(missing)}): "
                "it applies without notifying them"
            )
            config = config.model_copy(update={"channels": [c for c in config.channels if c in known]})
        applied.append(config)
    return applied, warnings


def configured_budgets(config: Config | None) -> list[BudgetConfig]:
    """The budgets of pipelines.yaml: those of every budget processor it declares."""
    processors = config.processors.values() if config is not None else ()
    return [b for body in processors if isinstance(body, BudgetProcessorConfig) for b in body.budgets]


def definitions(configured: Sequence[BudgetConfig], runtime: Sequence[RuntimeBudget]) -> list[BudgetDefinition]:
    names = {b.name for b in configured}
    out = [BudgetDefinition(b, "config") for b in configured]
    out += [
        BudgetDefinition(r.config, "runtime", r.updated_at, r.updated_by, shadowed=r.config.name in names)
        for r in runtime
    ]
    return out


# --- blocks ------------------------------------------------------------------------------------


def parse_scope(scope: object) -> dict[str, str]:
    """A block's scope, from `{"user": "u-1"}` or `user=u-1,provider=openai`: the keys and patterns of a budget's
    scope (exact values or `*` patterns), at least one, and no `each` (a block covers all it matches)."""
    if isinstance(scope, str):
        pairs: dict[str, str] = {}
        for part in (p.strip() for p in scope.split(",")):
            key, sep, value = part.partition("=")
            if not sep:
                raise InvalidRequest(f"scope: expected KEY=VALUE[,KEY=VALUE...], got {part!r}")
            pairs[key.strip()] = value.strip()
        scope = pairs
    if not isinstance(scope, Mapping) or not scope:
        raise InvalidRequest("scope: name at least one key, e.g. user=u-1 or project=* (everything)")
    checked: dict[str, str] = {}
    for key, value in scope.items():
        key, value = str(key), str(value)
        if key not in BUDGET_SCOPE_KEYS and not (key.startswith("tag:") and len(key) > 4):
            expected = ", ".join([*BUDGET_SCOPE_KEYS, "tag:NAME"])
            raise InvalidRequest(f"scope: unknown key {key!r}; expected one of {expected}")
        if not value or value == EACH:
            raise InvalidRequest(f"scope: {key} needs a value or a * pattern (not each)")
        checked[key] = value
    return dict(sorted(checked.items()))


def parse_until(text: str | None, now: datetime, name: str = "until") -> datetime | None:
    """A block's end: a duration from now (`30m`, `2h`, `1d`) or an ISO 8601 time (UTC without an offset)."""
    if not text:
        return None
    try:
        return now + parse_since(text, name)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name}: expected a duration (30m, 2h, 1d) or an ISO 8601 time, got {text!r}") from None
    return _utc(moment)


def scope_key(scope: Mapping[str, str]) -> str:
    """The canonical form a block is known by: keys sorted, `key=value` joined by commas."""
    return ",".join(f"{key}={value}" for key, value in sorted(scope.items()))


@dataclass(frozen=True)
class Block:
    scope: dict[str, str]
    action: str  # "block" or "unblock"
    reason: str
    until: datetime | None
    actor: str
    at: datetime

    @property
    def scope_key(self) -> str:
        return scope_key(self.scope)

    def active(self, now: datetime) -> bool:
        return self.action == "block" and (self.until is None or self.until > now)

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": dict(self.scope),
            "scope_key": self.scope_key,
            "action": self.action,
            "reason": self.reason,
            "until": iso(self.until) if self.until else None,
            "actor": self.actor,
            "at": iso(self.at),
        }


def _write_block(client: Client, database: str, block: Block) -> None:
    row = (block.scope_key, block.scope, block.action, block.reason, block.until, block.actor, block.at, time.time_ns())
    client.insert("budget_blocks", [row], column_names=_BLOCK_COLUMNS, database=database)


def raise_block(client: Client, database: str, scope: object, reason: str, until: datetime | None, actor: str) -> Block:
    """Block `scope` (again, with a new reason or end, if it is blocked already)."""
    now = datetime.now(UTC)
    if not reason.strip():
        raise InvalidRequest("reason: say why (it is kept with the block, for whoever lifts it)")
    if until is not None and until <= now:
        raise InvalidRequest(f"until: {iso(until)} is not in the future")
    block = Block(parse_scope(scope), "block", reason.strip(), until, actor, now)
    _write_block(client, database, block)
    return block


def lift_block(client: Client, database: str, scope: object, actor: str, reason: str = "") -> Block:
    """Unblock `scope`; LookupError when it is not blocked now."""
    lifted = parse_scope(scope)
    now = datetime.now(UTC)
    if not any(b.scope_key == scope_key(lifted) for b in read_blocks(client, database, now)):
        raise LookupError(f"{scope_key(lifted)} is not blocked (block list shows what is)")
    block = Block(lifted, "unblock", reason.strip(), None, actor, now)
    _write_block(client, database, block)
    return block


def read_blocks(client: Client, database: str, now: datetime, history: bool = False) -> list[Block]:
    """The blocks in force at `now` (each scope's newest row, when it blocks and has not expired), or with
    `history` every block and unblock, newest first."""
    query = (
        "SELECT scope, action, reason, until, actor, at FROM {database:Identifier}.budget_blocks "
        "ORDER BY at DESC, version DESC"
        if history
        else "SELECT argMax(scope, version), argMax(action, version), argMax(reason, version), "
        "argMax(until, version), argMax(actor, version), argMax(at, version) "
        "FROM {database:Identifier}.budget_blocks GROUP BY scope_key ORDER BY scope_key"
    )
    blocks = [
        Block(dict(scope), str(action), str(reason), _utc(until) if until else None, str(actor), _utc(at))
        for scope, action, reason, until, actor, at in client.query(
            query, parameters={"database": database}
        ).result_rows
    ]
    return blocks if history else [b for b in blocks if b.active(now)]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
