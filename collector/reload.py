"""What a reload of pipelines.yaml (SIGHUP) may change in a running collector, and what needs a restart.

Applied at once: the processors' settings (`genai`: content capture, redaction, attribute limits, the reader;
`pricing` overrides; `tags` rules; `budget` budgets, channels and intervals) and `service.telemetry.log_level`.
A segment of spans is read with the settings in force when its reading starts, so a span acknowledged just before
the reload may be read with the new ones.

Needs a restart, and is logged as ignored until then: receivers (ports, TLS, limits, auth), exporters (the store,
its database, the write-ahead log directory, batching, retention), extensions (project keys), the pipelines'
composition and `service.workers`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config


__all__ = ["RESTART_SECTIONS", "reloadable", "restart_changes"]

RESTART_SECTIONS = ("receivers", "exporters", "extensions", "service")


def restart_changes(running: Config, loaded: Config) -> list[str]:
    """The keys whose change needs a restart (`exporters.clickhouse.endpoint`), named, never their values; also
    a processor of the running pipeline the new file no longer declares."""
    changed = []
    for section in RESTART_SECTIONS:
        before = _flat(getattr(running, section), section)
        after = _flat(getattr(loaded, section), section)
        changed += [key for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)]
    changed = [key for key in changed if key != "service.telemetry.log_level"]
    for processor_id in running.service.pipelines.traces.processors:
        if processor_id not in loaded.processors:
            changed.append(f"processors.{processor_id} (removed)")
    return changed


def reloadable(running: Config, loaded: Config) -> Config:
    """The configuration to run with: the loaded file's processors and log level inside the running pipeline,
    store and listeners (a processor the file no longer declares keeps its running settings)."""
    processors = {
        pid: loaded.processors.get(pid, body) if pid in running.service.pipelines.traces.processors else body
        for pid, body in running.processors.items()
    }
    service = running.service.model_copy(update={"telemetry": loaded.service.telemetry})
    return running.model_copy(update={"processors": processors, "service": service})


def _flat(node: Any, path: str) -> dict[str, Any]:
    return dict(_walk(node.model_dump(mode="json") if hasattr(node, "model_dump") else _dumped(node), path))


def _dumped(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _dumped(value) for key, value in node.items()}
    return node.model_dump(mode="json") if hasattr(node, "model_dump") else node


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    else:
        yield path, node
