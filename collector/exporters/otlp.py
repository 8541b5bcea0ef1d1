"""The `otlp` exporter: forwards received OTLP requests, unchanged, to another OTLP/HTTP endpoint.

It lets spanmeter sit in front of an existing tracing backend: traces (GenAI or not), metrics
and logs reach it as the app sent them. Forwarding is best effort and never slows the receivers:
at most `_MAX_IN_FLIGHT` requests are outstanding, beyond that requests are counted and skipped.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from ..config import OtlpExporterConfig
from ..telemetry import CollectorMetrics

__all__ = ["OtlpForwarder"]

logger = logging.getLogger(__name__)

_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}
_MAX_IN_FLIGHT = 64


class OtlpForwarder:
    def __init__(self, config: OtlpExporterConfig, metrics: CollectorMetrics) -> None:
        self._config = config
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"Content-Type": "application/x-protobuf", **self._config.headers},
            timeout=aiohttp.ClientTimeout(total=self._config.timeout),
        )

    def forward(self, signal: str, body: bytes) -> None:
        """Schedule a POST of a serialized Export*ServiceRequest; returns at once."""
        if self._session is None or len(self._tasks) >= _MAX_IN_FLIGHT:
            self._metrics.forwarded.labels(signal, "skipped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._post(signal, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, signal: str, body: bytes) -> None:
        assert self._session is not None
        url = self._config.endpoint.rstrip("/") + _PATHS[signal]
        try:
            async with self._session.post(url, data=body) as response:
                outcome = "ok" if response.status < 300 else f"http_{response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = "error"
            logger.warning("forwarding %s to %s failed: %s", signal, url, exc)
        self._metrics.forwarded.labels(signal, outcome).inc()

    async def shutdown(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._config.timeout)
        if self._session is not None:
            await self._session.close()
