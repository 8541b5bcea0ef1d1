"""The `spanmeter_keys` authenticator: checks project keys on the receivers and the API that name it.

Keys are read from the store's `api_keys` table into memory at start and every `refresh_interval`
(so a key revoked on any collector is refused by every collector on the store within that interval),
and once more when an unknown key shows up (at most once a second), so a key just created works at
once. The check is a dictionary lookup and a constant-time hash compare: no store query per request.
`bootstrap_key` is an admin key accepted without the store, for a fresh install's first `keys create`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import Callable

from aiohttp import web
from clickhouse_connect.driver.client import Client
from pydantic import Field, PositiveInt, field_validator

from .config_types import Seconds, StrictModel
from .exporters.config import ClickHouseExporterConfig
from .keys import KeyRecord, Principal, hash_key, key_id_of, read_keys
from .ratelimit import RateLimiter
from .store import connect, first_line

__all__ = [
    "BOOTSTRAP",
    "PRINCIPAL",
    "AuthError",
    "KeyAuthConfig",
    "KeyAuthenticator",
    "RateLimitConfig",
    "bearer_token",
    "readable_project",
    "require_reader",
    "require_sender",
]

logger = logging.getLogger(__name__)

BOOTSTRAP = Principal("bootstrap", "bootstrap", "*", "admin")
PRINCIPAL = web.RequestKey("principal", Principal)
"""Where the HTTP receiver leaves the caller's principal for the API's handlers."""
_MISS_REFRESH = 1.0  # seconds between store reads caused by unknown keys


class RateLimitConfig(StrictModel):
    spans_per_second: float = Field(gt=0)
    burst: PositiveInt | None = None
    """Spans a key may send at once after a quiet spell (default: one second's worth)."""

    @property
    def bucket(self) -> int:
        return self.burst or max(1, int(self.spans_per_second))


class KeyAuthConfig(StrictModel):
    """`spanmeter_keys`: project keys, stored hashed in the ClickHouse store (see `spanmeter keys`)."""

    bootstrap_key: str = Field(default="", repr=False)
    """An admin key accepted without the store: a fresh install's way to run its first `keys create`."""
    refresh_interval: Seconds = 10.0
    """Keys are re-read from the store this often: a revoked key is refused everywhere within it."""
    rate_limit: RateLimitConfig | None = None
    """Spans per second each key may send (a token bucket); none: unlimited."""

    @field_validator("bootstrap_key")
    @classmethod
    def _long_enough(cls, key: str) -> str:
        if key and len(key) < 32:
            raise ValueError(f"must be at least 32 characters (a generated secret), got {len(key)}")
        return key


class AuthError(Exception):
    """No valid key (401 / UNAUTHENTICATED), or a key without the right (`forbidden`: 403 / PERMISSION_DENIED)."""

    def __init__(self, message: str, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


def bearer_token(header: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header (OTEL_EXPORTER_OTLP_HEADERS sends it so)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class KeyAuthenticator:
    def __init__(
        self,
        config: KeyAuthConfig,
        store: ClickHouseExporterConfig,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._on_failure = on_failure or (lambda reason: None)
        self._bootstrap_hash = hash_key(config.bootstrap_key) if config.bootstrap_key else None
        limit = config.rate_limit
        self._limiter = RateLimiter(limit.spans_per_second, limit.bucket) if limit is not None else None
        self._keys: dict[str, KeyRecord] = {}
        self._miss_read_at = -_MISS_REFRESH  # when the last read an unknown key caused began
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._refreshing: asyncio.Lock | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Read the keys now (a store that fails is retried in the background: only the bootstrap key
        works meanwhile), then every `refresh_interval`."""
        self.refresh()
        self._thread = threading.Thread(target=self._refresh_loop, name="spanmeter-keys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._client is not None:
            self._client.close()

    def refresh(self) -> bool:
        try:
            with self._lock:
                if self._client is None:
                    self._client = connect(self._store.endpoint, self._store.username, self._store.password)
                records = read_keys(self._client, self._store.database)
        except Exception as exc:
            logger.warning("cannot read project keys from the store: %s", first_line(exc))
            return False
        self._keys = {record.key_id: record for record in records}
        return True

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._config.refresh_interval):
            self.refresh()

    async def authenticate(self, token: str | None) -> Principal:
        """The key's principal; raises AuthError naming what is wrong (never echoing the key)."""
        if token is None:
            self._on_failure("missing")
            raise AuthError("no project key: send `Authorization: Bearer <key>` (OTEL_EXPORTER_OTLP_HEADERS)")
        digest = hash_key(token)
        if self._bootstrap_hash is not None and _same(digest, self._bootstrap_hash):
            return BOOTSTRAP
        key_id = key_id_of(token)
        if key_id is None:
            self._on_failure("malformed")
            raise AuthError("the project key is malformed (expected smk_<id>_<secret>)")
        record = self._keys.get(key_id)
        if record is None:
            await self._read_since(time.monotonic())  # a key created since the last read
            record = self._keys.get(key_id)
        if record is None or not _same(record.secret_sha256, digest):
            self._on_failure("unknown")
            raise AuthError(f"unknown project key (id {key_id})")
        if record.revoked_at is not None:
            self._on_failure("revoked")
            raise AuthError(f"the project key {key_id} ({record.name}) was revoked")
        return record.principal()

    def throttle(self, principal: Principal, spans: int) -> float:
        """Seconds the sender must wait before these spans fit its key's rate limit (0: go ahead)."""
        return self._limiter.take(principal.key_id, spans) if self._limiter is not None and spans else 0.0

    async def _read_since(self, asked_at: float) -> None:
        """Read the keys again unless a read began after `asked_at` (it saw every key created before). Unknown keys
        cause at most one read a second: a request waits for its turn, so a key is known at its first use however
        soon after the last read it was created, and a flood of bad keys costs the store nothing more."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            if self._miss_read_at >= asked_at:
                return
            wait = self._miss_read_at + _MISS_REFRESH - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._miss_read_at = time.monotonic()
            await asyncio.to_thread(self.refresh)


def require_sender(principal: Principal) -> None:
    if not principal.may_send():
        raise AuthError(f"the key {principal.key_id} is a {principal.role} key: it cannot send spans", forbidden=True)


def require_reader(principal: Principal | None) -> None:
    """For the report and budget APIs (`None`: authentication is off)."""
    if principal is not None and not principal.may_read():
        raise AuthError(f"the key {principal.key_id} is an {principal.role} key: it cannot read", forbidden=True)


def readable_project(principal: Principal | None, requested: str) -> str:
    """The project a read may cover: any (`requested`, "" for all) without keys or with an admin key; else
    only the key's own, whatever was asked."""
    require_reader(principal)
    if principal is None or principal.admin:
        return requested
    if requested and requested != principal.project:
        raise AuthError(f"the key {principal.key_id} reads project {principal.project!r} only", forbidden=True)
    return principal.project


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)
