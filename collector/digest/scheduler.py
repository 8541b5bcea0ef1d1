"""Sends each due digest once per store: the collector whose claim row the store kept sends it.

Several collectors on one store all check the schedule; each inserts a `claimed` row into `digest_deliveries`
with the digest and period as the insert's deduplication token, so ClickHouse keeps one row, and only the
collector that finds its own id on it builds and sends the digest (as budget crossings are notified once).
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from clickhouse_connect.driver.client import Client

from ..budgets.config import BudgetProcessorConfig
from ..budgets.notifiers import deliver
from ..cluster import CLUSTER_INSERT_SETTINGS
from .channels import ChannelConfig, digest_sender
from .config import DigestConfig
from .content import Digest, FindingsSource, build_digest
from .period import DigestPeriod, latest_due

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["DigestScheduler", "DigestStore", "digest_schedulers"]

logger = logging.getLogger(__name__)

_COLUMNS = (
    "digest_key",
    "digest",
    "project",
    "period_start",
    "period_end",
    "recorded_at",
    "channel",
    "channel_type",
    "outcome",
    "attempts",
    "detail",
    "collector_id",
)


class DigestStore:
    """Claims and delivery outcomes in `digest_deliveries`."""

    def __init__(self, client: Client, database: str, cluster: str | None = None) -> None:
        self._client = client
        self._database = database
        self._claim_settings = dict(CLUSTER_INSERT_SETTINGS) if cluster else {}

    def claim(self, name: str, config: DigestConfig, period: DigestPeriod, collector_id: str) -> bool:
        """True when this collector's claim is the one kept: it sends the digest."""
        key = f"{name}:{config.project}:{period.key}"
        self._insert(name, config, period, collector_id, "", "", "claimed", 0, "", token=key)
        kept = self._client.query(
            "SELECT collector_id FROM {database:Identifier}.digest_deliveries "
            "WHERE digest_key = {key:String} AND outcome = 'claimed' ORDER BY recorded_at LIMIT 1",
            parameters={"database": self._database, "key": key},
        ).result_rows
        return bool(kept) and kept[0][0] == collector_id

    def record(
        self,
        name: str,
        config: DigestConfig,
        period: DigestPeriod,
        collector_id: str,
        channel: str,
        channel_type: str,
        outcome: tuple[str, int, str],
    ) -> None:
        result, attempts, detail = outcome
        self._insert(name, config, period, collector_id, channel, channel_type, result, attempts, detail)

    def _insert(
        self,
        name: str,
        config: DigestConfig,
        period: DigestPeriod,
        collector_id: str,
        channel: str,
        channel_type: str,
        outcome: str,
        attempts: int,
        detail: str,
        token: str | None = None,
    ) -> None:
        key = f"{name}:{config.project}:{period.key}"
        row = (
            key,
            name,
            config.project,
            period.start,
            period.end,
            datetime.now(UTC),
            channel,
            channel_type,
            outcome,
            min(attempts, 255),
            detail,
            collector_id,
        )
        settings = {**self._claim_settings, "insert_deduplication_token": token} if token else {}
        self._client.insert(
            "digest_deliveries", [row], column_names=_COLUMNS, database=self._database, settings=settings
        )


class DigestScheduler:
    """Checks every `check_interval` whether a digest is due, and sends the ones this collector claims."""

    def __init__(
        self,
        name: str,
        config: DigestConfig,
        channels: Mapping[str, ChannelConfig],
        allow_private: bool,
        run_query: Callable[[Callable[[Client], object]], object],
        database: str,
        cluster: str | None = None,
        findings: FindingsSource | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`run_query(f)` runs f with a store client (the collector's `StoreReader.run`, one query at a time)."""
        self.name = name
        self.config = config
        self._channels = {channel: channels[channel] for channel in config.channels}
        self._allow_private = allow_private
        self._run = run_query
        self._database = database
        self._cluster = cluster
        self._findings = findings
        self._clock = clock or (lambda: datetime.now(UTC))
        self.collector_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._sent: set[str] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"spanmeter-digest-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        # The first check comes one interval after start, once the collector's store and routes are up.
        while not self._stopping.wait(self.config.check_interval):
            try:
                self.check()
            except Exception as exc:  # the store may be down: try again at the next check
                logger.warning("digest %s: not sent this time: %s", self.name, str(exc).splitlines()[0])

    def check(self) -> Digest | None:
        """Send the latest due digest if no collector has; returns the digest this collector sent."""
        period = latest_due(self.config, self._clock())
        if period.key in self._sent:
            return None
        claimed = self._run(
            lambda client: DigestStore(client, self._database, self._cluster).claim(
                self.name, self.config, period, self.collector_id
            )
        )
        if not claimed:
            self._sent.add(period.key)
            return None
        digest = self._run(
            lambda client: build_digest(
                client, self._database, period, self.config.project, self.config.top, self._findings, self._clock()
            )
        )
        assert isinstance(digest, Digest)
        for channel, channel_config in self._channels.items():
            send = digest_sender(channel_config, self._allow_private, f"digest-{self.name}-{period.key}")
            outcome = deliver(send, digest, channel_config.retries, channel_config.backoff, self._stopping.wait)
            log = logger.info if outcome[0] == "delivered" else logger.warning
            log("digest %s for %s on %s: %s", self.name, period.label(), channel, outcome[0])
            self._record(period, channel, channel_config.type, outcome)
        self._sent.add(period.key)  # only now: a claim kept but not sent (store down) is sent at the next check
        return digest

    def _record(self, period: DigestPeriod, channel: str, channel_type: str, outcome: tuple[str, int, str]) -> None:
        def record(client: Client) -> None:
            store = DigestStore(client, self._database, self._cluster)
            store.record(self.name, self.config, period, self.collector_id, channel, channel_type, outcome)

        self._run(record)


def digest_schedulers(
    config: Config, run_query: Callable[[Callable[[Client], object]], object], database: str, cluster: str | None
) -> list[DigestScheduler]:
    """One scheduler per `spanmeter_digest` extension the service enables, on the budget processor's channels."""
    from .api import findings_source

    budget = next((p for p in config.processors.values() if isinstance(p, BudgetProcessorConfig)), None)
    channels = dict(budget.channels) if budget is not None else {}
    allow_private = budget.allow_private_targets if budget is not None else False
    return [
        DigestScheduler(
            extension_id, body, channels, allow_private, run_query, database, cluster, findings_source(config)
        )
        for extension_id, body in config.extensions.items()
        if isinstance(body, DigestConfig) and extension_id in config.service.extensions
    ]
