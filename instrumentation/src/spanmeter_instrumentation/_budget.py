"""The budget gate: refuses a model call whose scope is over a `block` budget, before the provider sees it.

Opt-in: set ``SPANMETER_BUDGET_URL`` (the collector's HTTP address, e.g. ``http://127.0.0.1:4318``) or
call ``enable_budget_gate(url)``. A background thread reads the collector's ``GET /v1/budgets`` every
``refresh_interval`` seconds (``SPANMETER_BUDGET_REFRESH``, default 15). Before each instrumented call,
the call's scope (service, environment and project from the tracer's resource, provider, model, and the
current tags) is matched against the ``block`` budgets that are exceeded; a match raises
``BudgetExceededError``. A scope blocked with ``spanmeter block`` (the kill switch) raises
``BudgetBlockedError`` (a ``BudgetExceededError``) until it is unblocked or its block expires. When the
status is unknown or stale (the collector cannot be reached for three intervals), calls pass (fail-open)
unless ``SPANMETER_BUDGET_FAIL_CLOSED=true`` or ``fail_closed=True``, which raises
``BudgetUnavailableError`` (a ``BudgetExceededError``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from opentelemetry import trace

from ._request import request_tags
from ._tags import current_tags

__all__ = [
    "BudgetBlockedError",
    "BudgetExceededError",
    "BudgetGate",
    "BudgetUnavailableError",
    "call_scope",
    "check_budget",
    "disable_budget_gate",
    "enable_budget_gate",
]

_logger = logging.getLogger(__name__)

SPANMETER_BUDGET_URL = "SPANMETER_BUDGET_URL"
SPANMETER_BUDGET_REFRESH = "SPANMETER_BUDGET_REFRESH"
SPANMETER_BUDGET_FAIL_CLOSED = "SPANMETER_BUDGET_FAIL_CLOSED"
_STATUS_PATH = "/v1/budgets"


class BudgetExceededError(Exception):
    """The call's scope is over a ``block`` budget; the provider was not called."""

    def __init__(
        self,
        budget: str,
        spend_usd: Decimal | None = None,
        limit_usd: Decimal | None = None,
        resets_at: datetime | None = None,
        scope_value: str = "",
        message: str | None = None,
    ) -> None:
        self.budget = budget
        self.spend_usd = spend_usd
        self.limit_usd = limit_usd
        self.resets_at = resets_at
        self.scope_value = scope_value
        who = f" for {scope_value}" if scope_value else ""
        super().__init__(
            message
            or f"budget {budget!r}{who} is exceeded: {spend_usd} of {limit_usd} USD; resets at "
            f"{resets_at.isoformat() if resets_at else 'unknown'}"
        )


class BudgetBlockedError(BudgetExceededError):
    """The call's scope is blocked (``spanmeter block``); the provider was not called."""

    def __init__(self, scope_key: str, reason: str, until: datetime | None, actor: str) -> None:
        self.reason = reason
        self.until = until
        self.actor = actor
        ends = f" until {until.isoformat()}" if until else " until unblocked"
        super().__init__(
            f"block:{scope_key}",
            scope_value=scope_key,
            resets_at=until,
            message=f"calls in {scope_key} are blocked{ends} by {actor}: {reason}",
        )


class BudgetUnavailableError(BudgetExceededError):
    """Fail-closed: the budget status could not be read, so the call was refused."""

    def __init__(self, detail: str) -> None:
        super().__init__("", message=f"budget status unavailable and the gate fails closed: {detail}")


def _matches(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    if "*" not in pattern:
        return value == pattern
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value, re.DOTALL) is not None


def call_scope(provider: str, model: str | None, resource: Mapping[str, Any]) -> dict[str, str]:
    """The values a budget's or block's scope is matched against for a call made now: the resource's project,
    service and environment, the request's tags (a middleware's route and user, unless `tags()` set them)."""
    tags = {**request_tags(), **current_tags()}  # a middleware's route and user, unless tags() set them
    scope = {
        "project": str(resource.get("spanmeter.project") or "default"),
        "service": str(resource.get("service.name") or os.environ.get("OTEL_SERVICE_NAME") or ""),
        "environment": str(resource.get("deployment.environment.name") or resource.get("deployment.environment") or ""),
        "provider": provider,
        "model": model or "",
        "feature": tags.get("feature", ""),
        "user": tags.get("user_id") or tags.get("user.id") or "",
    }
    scope.update({f"tag:{key}": value for key, value in tags.items()})
    return scope


def _in_scope(entry: Mapping[str, Any], call: Mapping[str, str]) -> bool:
    values = entry.get("values") or {}
    for key, pattern in (entry.get("scope") or {}).items():
        value = call.get(key, "")
        if pattern == "each":
            if value != values.get(key):
                return False
        elif not _matches(str(pattern), value):
            return False
    return True


def _datetime(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


class BudgetGate:
    def __init__(
        self,
        url: str,
        refresh_interval: float = 15.0,
        fail_closed: bool = False,
        timeout: float = 2.0,
        key: str | None = None,
    ) -> None:
        """`key`: the project key the collector requires (default: $SPANMETER_API_KEY, else the
        `Authorization` header of $OTEL_EXPORTER_OTLP_TRACES_HEADERS / $OTEL_EXPORTER_OTLP_HEADERS)."""
        self._key = key if key is not None else _key_from_env()
        self._project: str | None = None  # the key's project, as the collector answers it
        base = url.rstrip("/")
        self.url = base if base.endswith(_STATUS_PATH) else base + _STATUS_PATH
        self.refresh_interval = refresh_interval
        self.fail_closed = fail_closed
        self.timeout = timeout
        self._blocked: list[dict[str, Any]] = []
        self._blocks: list[dict[str, Any]] = []  # the kill switch's blocks in force
        self._fetched_at: float | None = None
        self._error = "not read yet"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> BudgetGate:
        """Read the status once now, then in the background."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="spanmeter-budget-gate", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            self.refresh()

    def refresh(self) -> bool:
        try:
            headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
            request = urllib.request.Request(self.url, headers=headers)
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.load(response)
            entries = payload["budgets"]
            self._project = payload.get("project")
        except Exception as exc:  # unreachable, not JSON, not our API: all mean "status unknown"
            self._error = f"{type(exc).__name__}: {exc}"
            _logger.debug("spanmeter budget gate: cannot read %s: %s", self.url, self._error)
            return False
        self._blocked = [e for e in entries if e.get("action") == "block" and e.get("state") == "exceeded"]
        self._blocks = list(payload.get("blocks") or [])
        self._fetched_at = time.monotonic()
        return True

    @property
    def fresh(self) -> bool:
        return self._fetched_at is not None and time.monotonic() - self._fetched_at <= 3 * self.refresh_interval

    def check(self, provider: str, model: str | None, resource: Mapping[str, Any]) -> None:
        """Raise when the call is in scope of an exceeded `block` budget (or the status is unknown and
        the gate fails closed)."""
        if not self.fresh:
            if self.fail_closed:
                raise BudgetUnavailableError(self._error)
            return
        if not self._blocked and not self._blocks:
            return
        call = call_scope(provider, model, resource)
        if self._project:  # with keys, the collector files every call under the key's project
            call["project"] = self._project
        for block in self._blocks:
            until = _datetime(block.get("until")) if block.get("until") else None
            if until is not None and until <= datetime.now(until.tzinfo):
                continue  # expired since the last refresh
            if _in_scope(block, call):
                raise BudgetBlockedError(
                    str(block.get("scope_key", "")), str(block.get("reason", "")), until, str(block.get("actor", ""))
                )
        for entry in self._blocked:
            if _in_scope(entry, call):
                raise BudgetExceededError(
                    budget=str(entry.get("budget", "")),
                    spend_usd=Decimal(str(entry.get("spend_usd", "0"))),
                    limit_usd=Decimal(str(entry.get("limit_usd", "0"))),
                    resets_at=_datetime(entry.get("resets_at")),
                    scope_value=str(entry.get("scope_value", "")),
                )


_gate: BudgetGate | None = None
_env_read = False
_lock = threading.Lock()


def _key_from_env() -> str | None:
    if key := os.environ.get("SPANMETER_API_KEY", "").strip():
        return key
    for name in ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"):
        for pair in os.environ.get(name, "").split(","):
            header, _, value = pair.partition("=")
            if header.strip().lower() == "authorization":
                scheme, _, token = urllib.parse.unquote(value).strip().partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return token.strip()
    return None


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def enable_budget_gate(
    url: str | None = None, *, refresh_interval: float | None = None, fail_closed: bool | None = None
) -> BudgetGate:
    """Turn the gate on for every instrumented call (replacing any gate already on).

    Defaults come from ``SPANMETER_BUDGET_URL``, ``SPANMETER_BUDGET_REFRESH`` and
    ``SPANMETER_BUDGET_FAIL_CLOSED``.
    """
    global _gate, _env_read
    url = url or os.environ.get(SPANMETER_BUDGET_URL, "").strip()
    if not url:
        raise ValueError(f"enable_budget_gate needs a collector URL (or {SPANMETER_BUDGET_URL})")
    if refresh_interval is None:
        refresh_interval = float(os.environ.get(SPANMETER_BUDGET_REFRESH) or 15)
    gate = BudgetGate(
        url,
        refresh_interval=refresh_interval,
        fail_closed=_flag(SPANMETER_BUDGET_FAIL_CLOSED) if fail_closed is None else fail_closed,
    )
    with _lock:
        previous, _gate, _env_read = _gate, gate, True
    if previous is not None:
        previous.stop()
    return gate.start()


def disable_budget_gate() -> None:
    global _gate, _env_read
    with _lock:
        previous, _gate, _env_read = _gate, None, True
    if previous is not None:
        previous.stop()


def _current_gate() -> BudgetGate | None:
    global _env_read
    if _gate is not None or _env_read:
        return _gate
    with _lock:
        if _env_read:
            return _gate
        _env_read = True
    if os.environ.get(SPANMETER_BUDGET_URL, "").strip():
        return enable_budget_gate()
    return None


def check_budget(provider: str, model: str | None, tracer: Any) -> None:
    """The instrumentors' hook, called before each provider call."""
    gate = _current_gate()
    if gate is None:
        return
    resource = getattr(tracer, "resource", None) or getattr(trace.get_tracer_provider(), "resource", None)
    gate.check(provider, model, getattr(resource, "attributes", None) or {})
