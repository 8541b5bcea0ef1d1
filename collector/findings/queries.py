"""The rules' SQL, read from the `.sql` files beside them."""

from __future__ import annotations

from importlib import resources

__all__ = ["query"]

_CACHE: dict[str, str] = {}


def query(name: str) -> str:
    if name not in _CACHE:
        _CACHE[name] = resources.files("spanmeter.findings").joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return _CACHE[name]
