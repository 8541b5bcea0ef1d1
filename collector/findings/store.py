"""Findings materialized into the store's `findings` table every `findings.interval`, for the Findings dashboard
(Grafana can only run SQL; right_size and cache_unused price what-ifs with genai-prices in Python).

A run covers `findings.since` ending at `run_at`, the start of the current interval: collectors sharing a store
compute the same run, and its insert carries `findings:<run_at>` as deduplication token, so it is stored once.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from ..exporters.config import ClickHouseExporterConfig
from ..processors.config import PricingProcessorConfig
from ..store import connect, first_line
from .config import FindingsConfig
from .model import Finding, Period
from .runner import run_findings

__all__ = ["FindingsWriter", "read_latest", "write_run"]

logger = logging.getLogger(__name__)

COLUMNS = [
    "run_at", "kind", "project", "scope", "scope_text", "period_start", "period_end", "savings_usd_per_month",
    "action", "evidence", "trace_ids",
]  # fmt: skip


def run_start(now: datetime, interval: int) -> datetime:
    """The start of the interval `now` is in, in whole seconds since the epoch: the same on every collector."""
    seconds = int(now.timestamp())
    return datetime.fromtimestamp(seconds - seconds % interval, UTC)


def write_run(
    client: Client,
    database: str,
    config: FindingsConfig,
    pricing: PricingProcessorConfig | None,
    now: datetime | None = None,
) -> list[Finding]:
    """Compute the current interval's run and store it (once per run across collectors)."""
    run_at = run_start(now or datetime.now(UTC), config.interval or 3600)
    found = run_findings(client, database, Period(run_at - timedelta(seconds=config.since), run_at), config, pricing)
    rows = [_row(run_at, finding) for finding in found]
    if rows:
        client.insert(
            f"{database}.findings",
            rows,
            column_names=COLUMNS,
            settings={"insert_deduplication_token": f"findings:{run_at.isoformat()}"},
        )
    return found


def _row(run_at: datetime, finding: Finding) -> list[Any]:
    return [
        run_at.replace(tzinfo=None),
        finding.kind,
        finding.scope.get("project", ""),
        finding.scope,
        finding.describe_scope(),
        finding.start.replace(tzinfo=None, microsecond=0),
        finding.end.replace(tzinfo=None, microsecond=0),
        finding.savings_usd_per_month,
        finding.action,
        json.dumps(finding.evidence, sort_keys=True),
        finding.trace_ids,
    ]


def read_latest(client: Client, database: str) -> list[dict[str, Any]]:
    """The newest stored run's findings, largest savings first."""
    result = client.query(
        "SELECT * FROM {database:Identifier}.findings "
        "WHERE run_at = (SELECT max(run_at) FROM {database:Identifier}.findings) "
        "ORDER BY savings_usd_per_month DESC, kind",
        parameters={"database": database},
    )
    return list(result.named_results())


FIRST_RUN_DELAY = 60.0
"""Seconds after start before the first run (or `interval` if shorter): a collector restarting in a loop, or a
test's, does not pay for findings it never serves."""


class FindingsWriter:
    """Writes a run a minute after start and then every `interval`, in a thread of its own (never on the event
    loop)."""

    def __init__(
        self, config: FindingsConfig, store: ClickHouseExporterConfig, pricing: PricingProcessorConfig | None
    ) -> None:
        self._config = config
        self._store = store
        self._pricing = pricing
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._config.interval == 0:
            return
        self._thread = threading.Thread(target=self._loop, name="spanmeter-findings", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        client: Client | None = None
        if self._stop.wait(min(FIRST_RUN_DELAY, self._config.interval)):
            return
        while not self._stop.is_set():
            try:
                if client is None:
                    client = connect(self._store.endpoint, self._store.username, self._store.password)
                found = write_run(client, self._store.database, self._config, self._pricing)
                logger.info("findings: %d stored", len(found))
            except Exception as exc:  # the store may be down: the next interval tries again
                logger.warning("findings could not be computed or stored: %s", first_line(exc))
            if self._stop.wait(self._config.interval):
                break
        if client is not None:
            client.close()
