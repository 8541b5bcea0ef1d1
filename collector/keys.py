"""Project keys: who may send spans, read reports and manage keys, and for which project.

A key reads `smk_<12 hex id>_<43 url-safe characters>`: the prefix lets secret scanners find a leaked
one. Only the SHA-256 of the whole key is stored (in the store's `api_keys` table), beside its id,
name, project and role; the key itself is shown once, when it is created. Keys are random, so a
plain hash is enough: nothing can be guessed offline from it.

Roles: `ingest` sends spans to its project (and reads its project's budget status, which the
instrumentation's budget gate needs); `read` reads its project's reports and budgets; `admin` does
everything for every project, including managing keys.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from clickhouse_connect.driver.client import Client

__all__ = [
    "KEY_PATTERN",
    "ROLES",
    "KeyRecord",
    "Principal",
    "Role",
    "create_key",
    "hash_key",
    "key_id_of",
    "read_keys",
    "revoke_key",
]

Role = Literal["ingest", "read", "admin"]
ROLES: tuple[Role, ...] = ("ingest", "read", "admin")
PREFIX = "smk_"
KEY_PATTERN = re.compile(r"\bsmk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\b")
_ID = re.compile(r"^[0-9a-f]{12}$")


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: the key's id, name, project and role."""

    key_id: str
    name: str
    project: str
    role: Role

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def may_send(self) -> bool:
        return self.role in ("ingest", "admin")

    def may_read(self) -> bool:
        return self.role in ("read", "admin")


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    name: str
    project: str
    role: Role
    secret_sha256: str
    created_at: datetime
    revoked_at: datetime | None

    def principal(self) -> Principal:
        return Principal(self.key_id, self.name, self.project, self.role)

    def to_json(self) -> dict[str, object]:
        """Everything but the hash."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "project": self.project,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id part of a well-formed key, else None (cheap: no lookup)."""
    if not key.startswith(PREFIX) or len(key) != len(PREFIX) + 12 + 1 + 43:
        return None
    key_id = key[len(PREFIX) : len(PREFIX) + 12]
    return key_id if _ID.match(key_id) and key[len(PREFIX) + 12] == "_" else None


def new_key() -> str:
    return f"{PREFIX}{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


_COLUMNS = ["key_id", "name", "project", "role", "secret_sha256", "created_at", "revoked_at", "version"]


def create_key(client: Client, database: str, project: str, name: str, role: Role) -> tuple[str, KeyRecord]:
    """A new key for `project`: (the key, to show once; its record)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not project or not name:
        raise ValueError("a key needs a project and a name")
    key = new_key()
    record = KeyRecord(key_id_of(key) or "", name, project, role, hash_key(key), datetime.now(UTC), None)
    _write(client, database, record)
    return key, record


def revoke_key(client: Client, database: str, key_id: str) -> KeyRecord:
    """Mark a key revoked (a newer version of its row); raises LookupError for an unknown id."""
    current = {record.key_id: record for record in read_keys(client, database)}.get(key_id)
    if current is None:
        raise LookupError(f"no key with id {key_id!r}")
    if current.revoked_at is not None:
        return current
    revoked = KeyRecord(**{**current.__dict__, "revoked_at": datetime.now(UTC)})
    _write(client, database, revoked)
    return revoked


def read_keys(client: Client, database: str) -> list[KeyRecord]:
    """Every key's latest version."""
    rows = client.query(
        "SELECT key_id, name, project, role, secret_sha256, created_at, revoked_at "
        "FROM {database:Identifier}.api_keys FINAL ORDER BY created_at",
        parameters={"database": database},
    ).result_rows
    return [
        KeyRecord(
            str(key_id),
            str(name),
            str(project),
            role,
            str(digest),
            _utc(created),
            _utc(revoked) if revoked is not None else None,
        )
        for key_id, name, project, role, digest, created, revoked in rows
    ]


def _write(client: Client, database: str, record: KeyRecord) -> None:
    row = [*(getattr(record, name) for name in _COLUMNS[:-1]), time.time_ns()]
    client.insert("api_keys", [row], column_names=_COLUMNS, database=database)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
