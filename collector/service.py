"""Builds a running collector from a `Config`: receivers -> processors -> exporters."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from .api import ApiAdvert, StoreReader, add_api_routes, advertise_api, api_base_url
from .auth import KeyAuthConfig, KeyAuthenticator
from .budgets import BudgetProcessor, add_budget_routes
from .budgets.config import BudgetProcessorConfig
from .budgets.windows import Clock
from .calls_api import add_calls_routes
from .config import Config, component_type, unused_components
from .decoding import InlineReader, RecordProcessor, SpanReader, WorkerPoolReader, is_row_processor
from .digest.api import add_digest_routes
from .digest.scheduler import digest_schedulers
from .exporters import ClickHouseExporter, OtlpForwarder
from .exporters.config import ClickHouseExporterConfig, OtlpExporterConfig
from .findings.api import add_findings_routes, pricing_config
from .findings.store import FindingsWriter
from .forecast_api import add_forecast_routes
from .health import add_health_routes
from .keys_api import add_key_routes
from .pipeline import TelemetryRouter, TracesPipeline
from .processors.config import GenAIProcessorConfig, PricingProcessorConfig, TagsProcessorConfig
from .receivers import OtlpGrpcReceiver, OtlpHttpReceiver
from .receivers.config import GrpcProtocolConfig, HttpProtocolConfig, OtlpReceiverConfig
from .reload import reloadable, restart_changes
from .rows import ColumnStages, RowBuilder
from .telemetry import CollectorMetrics

__all__ = ["Collector", "CollectorThread"]

logger = logging.getLogger(__name__)


class Collector:
    """One collector: start it, let it run, stop it (which flushes what it holds)."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        """`clock` (UTC now) is for tests of budget windows; the system clock otherwise."""
        self.config = config
        self._clock = clock
        for warning in unused_components(config):
            logger.warning("%s", warning)
        self.budgets: BudgetProcessor | None = None
        self.metrics = CollectorMetrics()
        pipelines = config.service.pipelines
        traces = pipelines.traces

        store_id = next(e for e in traces.exporters if component_type(e) == "clickhouse")
        store_config: ClickHouseExporterConfig = config.exporters[store_id]
        self.exporter = ClickHouseExporter(store_config, self.metrics)
        self.store_config = store_config
        self.reader = StoreReader(store_config)
        self.findings = FindingsWriter(config.findings, store_config, pricing_config(config))
        self._advert: ApiAdvert | None = None

        self.authenticators: dict[str, KeyAuthenticator] = {
            extension_id: KeyAuthenticator(config.extensions[extension_id], store_config, self._count_auth_failure)
            for extension_id in config.service.extensions
            if isinstance(config.extensions[extension_id], KeyAuthConfig)
        }
        self._forwarders: dict[str, OtlpForwarder] = {
            cid: OtlpForwarder(body, self.metrics)
            for cid, body in config.exporters.items()
            if isinstance(body, OtlpExporterConfig)
        }

        # Per-row processors go with the genai processor (possibly into workers); the others stay here.
        processors = [
            self._processor(pid) for pid in traces.processors[1:] if not is_row_processor(config.processors[pid])
        ]
        self.span_reader, columns = self._row_stages(config)
        self.exporter.rows = RowBuilder(
            self.span_reader, processors, self.metrics, store_config.retention.rows, columns
        )
        self.digests = digest_schedulers(config, self.reader.run, store_config.database, store_config.cluster)
        self.traces = TracesPipeline(self.exporter, self._forwarders_of(traces.exporters), self.metrics)
        telemetry = TelemetryRouter(
            {
                signal: self._forwarders_of(pipeline.exporters)
                for signal in ("metrics", "logs")
                if (pipeline := getattr(pipelines, signal)) is not None
            },
            self.metrics,
        )

        self.grpc_receivers: list[OtlpGrpcReceiver] = []
        self.http_receivers: list[OtlpHttpReceiver] = []
        receiver_ids = {r for p in (traces, pipelines.metrics, pipelines.logs) if p is not None for r in p.receivers}
        for rid in sorted(receiver_ids):
            receiver: OtlpReceiverConfig = config.receivers[rid]
            if receiver.protocols.grpc is not None:
                grpc_config = receiver.protocols.grpc
                self.grpc_receivers.append(
                    OtlpGrpcReceiver(grpc_config, self.traces, telemetry, self.metrics, self._auth(grpc_config))
                )
            if receiver.protocols.http is not None:
                http_config = receiver.protocols.http
                http = OtlpHttpReceiver(http_config, self.traces, telemetry, self.metrics, self._auth(http_config))
                add_api_routes(http.app, self.exporter, self.metrics, self.reader)
                add_budget_routes(http.app, self.budgets, self.reader, config)
                add_health_routes(http.app, self.exporter, store_config.unavailable_grace)
                add_key_routes(http.app, self.reader, self._auth(http_config))
                add_findings_routes(http.app, self.reader, config)
                add_forecast_routes(http.app, self.reader)
                add_calls_routes(http.app, self.reader, self.exporter.follow)
                add_digest_routes(http.app, self.reader, config)
                self.http_receivers.append(http)

    def _row_stages(self, config: Config) -> tuple[SpanReader, ColumnStages | None]:
        """The reader of spans and the engine's columnar stages for the traces pipeline's per-row processors."""
        traces = config.service.pipelines.traces
        genai_config: GenAIProcessorConfig = config.processors[traces.processors[0]]
        row_configs: list[Any] = [
            config.processors[p] for p in traces.processors[1:] if is_row_processor(config.processors[p])
        ]
        workers = config.service.workers
        reader: SpanReader = (
            WorkerPoolReader(genai_config, row_configs, workers) if workers else InlineReader(genai_config, row_configs)
        )
        if genai_config.reader != "engine":
            return reader, None
        by_type = {type(c): c for c in row_configs}
        columns = ColumnStages(
            genai_config,
            by_type[PricingProcessorConfig],
            by_type.get(TagsProcessorConfig),
            self.exporter.scratch.path("engine"),
            self.exporter.engine_client,
        )
        return reader, columns

    def reload(self, loaded: Config) -> list[str]:
        """Apply what a reloaded pipelines.yaml may change without a restart (reload.py); returns the changed keys
        that need one, which are left as they run. Blocks while a segment is being read; call it off the loop."""
        ignored = restart_changes(self.config, loaded)
        config = reloadable(self.config, loaded)
        reader, columns = self._row_stages(config)
        reader.start()
        assert self.exporter.rows is not None
        previous = self.exporter.rows.reconfigure(reader, columns)
        previous.stop()
        self.span_reader = reader
        for pid in config.service.pipelines.traces.processors:
            if self.budgets is not None and isinstance(config.processors[pid], BudgetProcessorConfig):
                self.budgets.reconfigure(config.processors[pid])
        logging.getLogger().setLevel(config.service.telemetry.log_level.upper())
        self.config = config
        return ignored

    def _auth(self, listener: GrpcProtocolConfig | HttpProtocolConfig) -> KeyAuthenticator | None:
        return self.authenticators[listener.auth.authenticator] if listener.auth is not None else None

    def _count_auth_failure(self, reason: str) -> None:
        self.metrics.auth_failures.labels(reason).inc()

    def _processor(self, processor_id: str) -> RecordProcessor:
        """A processor that keeps state across requests, so runs in this process."""
        body: Any = self.config.processors[processor_id]
        if isinstance(body, BudgetProcessorConfig):
            if self.budgets is not None:
                raise ValueError("a traces pipeline can have one budget processor")
            self.budgets = BudgetProcessor(
                body, self.store_config, self.exporter, self.metrics, self._clock, per_project=bool(self.authenticators)
            )
            return self.budgets
        raise ValueError(f"processor {processor_id!r} can only stand first in a traces pipeline")

    def _forwarders_of(self, exporter_ids: Sequence[str]) -> list[OtlpForwarder]:
        return [self._forwarders[e] for e in exporter_ids if e in self._forwarders]

    @property
    def grpc_port(self) -> int:
        return self.grpc_receivers[0].port if self.grpc_receivers else 0

    @property
    def http_port(self) -> int:
        return self.http_receivers[0].port if self.http_receivers else 0

    async def start(self) -> None:
        await asyncio.to_thread(self.span_reader.start)
        await asyncio.to_thread(self.exporter.start)
        self.findings.start()
        if self.budgets is not None:
            await asyncio.to_thread(self.budgets.start)
        for digest in self.digests:
            digest.start()
        for forwarder in self._forwarders.values():
            await forwarder.start()
        for authenticator in self.authenticators.values():
            await asyncio.to_thread(authenticator.start)
        try:
            receivers: list[OtlpGrpcReceiver | OtlpHttpReceiver] = [*self.grpc_receivers, *self.http_receivers]
            for receiver in receivers:  # every port taken before any is reported listening
                await receiver.bind()
            for receiver in receivers:
                await receiver.start()
        except BaseException:
            await self.stop()
            raise
        # Where `spanmeter report --store chdb://PATH` finds this collector's API (not another's).
        api = api_base_url(self.config, self.http_port) if self.http_receivers else None
        self._advert = advertise_api(self.store_config, api)

    async def stop(self) -> int:
        """Stop receiving, then store what the WAL holds; returns the rows left in it (stored at the next start)."""
        if self._advert is not None:
            self._advert.withdraw()
        for grpc_receiver in self.grpc_receivers:
            await grpc_receiver.stop()
        for http_receiver in self.http_receivers:
            await http_receiver.stop()
        for authenticator in self.authenticators.values():
            await asyncio.to_thread(authenticator.stop)
        left = await asyncio.to_thread(self.exporter.shutdown)
        await asyncio.to_thread(self.span_reader.stop)
        if self.budgets is not None:
            await asyncio.to_thread(self.budgets.stop)
        for digest in self.digests:
            await asyncio.to_thread(digest.stop)
        await asyncio.to_thread(self.findings.stop)
        self.reader.close()
        for forwarder in self._forwarders.values():
            await forwarder.shutdown()
        return left


class CollectorThread:
    """Runs a collector on its own event loop in a background thread (the demo, tests, benchmarks)."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.collector = Collector(config, clock)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="spanmeter-collector", daemon=True)

    def start(self) -> Collector:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.collector.start(), self._loop).result()
        return self.collector

    def stop(self) -> int:
        left = asyncio.run_coroutine_threadsafe(self.collector.stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        return left

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
