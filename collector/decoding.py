"""The Python reader: reads accepted requests into rows with the `genai` processor, then the per-row processors
(`pricing`, `tags`), in the collector's process or in worker processes (`service.workers`).

It reads what the engine (`engine/`) leaves to it, everything with `processors.genai.reader: python`, and is the
reference the engine is tested against. Duplicate recognition, budgets and the store stay with `rows.RowBuilder`.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import BaseModel

from .processors import DecodeResult, GenAIProcessor, PricingProcessor, TagsProcessor
from .processors.config import GenAIProcessorConfig, PricingProcessorConfig, TagsProcessorConfig
from .records import SpanRecord

__all__ = ["InlineReader", "RecordProcessor", "SpanReader", "WorkerPoolReader", "is_row_processor"]


class RecordProcessor(Protocol):
    def process(self, records: Sequence[SpanRecord]) -> None: ...


class SpanReader(Protocol):
    """Reads accepted requests (protobuf bytes) into rows: `genai`, then the per-row processors."""

    def read(self, bodies: Sequence[bytes], latest: Sequence[int]) -> list[DecodeResult]:
        """One result per body; `latest[i]`: the latest span time accepted in request i."""
        ...

    def latest_accepted(self, received_ns: int) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


_ROW_PROCESSORS: dict[type[BaseModel], type[Any]] = {
    PricingProcessorConfig: PricingProcessor,
    TagsProcessorConfig: TagsProcessor,
}


def is_row_processor(config: BaseModel) -> bool:
    """Whether a processor needs nothing but each request's rows (so it can run in a worker)."""
    return type(config) in _ROW_PROCESSORS


class InlineReader:
    """Reads requests in the collector's process (`service.workers: 0`)."""

    def __init__(self, genai: GenAIProcessorConfig, row_configs: Sequence[BaseModel]) -> None:
        self._read = _Reader(genai, row_configs)

    def read(self, bodies: Sequence[bytes], latest: Sequence[int]) -> list[DecodeResult]:
        return [self._read(body, at) for body, at in zip(bodies, latest, strict=True)]

    def latest_accepted(self, received_ns: int) -> int:
        return self._read.genai.latest_accepted(received_ns)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class WorkerPoolReader:
    """Reads requests in `workers` processes."""

    def __init__(self, genai: GenAIProcessorConfig, row_configs: Sequence[BaseModel], workers: int) -> None:
        self._workers = workers
        self._init_args = (genai, list(row_configs))
        self._pool: ProcessPoolExecutor | None = None
        self._local = GenAIProcessor(genai)

    def start(self) -> None:
        # Spawned, not forked: the parent runs gRPC and ClickHouse threads, which a fork would copy mid-flight.
        self._pool = ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=self._init_args,
        )
        # Start every worker now (imports, price data), not on the first requests.
        for _ in self._pool.map(_ready, range(self._workers)):
            pass

    def read(self, bodies: Sequence[bytes], latest: Sequence[int]) -> list[DecodeResult]:
        assert self._pool is not None, "start() first"
        return list(self._pool.map(_decode_in_worker, bodies, latest, chunksize=max(1, len(bodies) // self._workers)))

    def latest_accepted(self, received_ns: int) -> int:
        return self._local.latest_accepted(received_ns)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)


class _Reader:
    def __init__(self, genai: GenAIProcessorConfig, row_configs: Sequence[BaseModel]) -> None:
        self.genai = GenAIProcessor(genai)
        self._processors: list[RecordProcessor] = [_ROW_PROCESSORS[type(c)](c) for c in row_configs]

    def __call__(self, body: bytes, latest: int) -> DecodeResult:
        result = self.genai.decode(ExportTraceServiceRequest.FromString(body), latest)
        for processor in self._processors:
            processor.process(result.records)
        result.drop_rejected()  # e.g. a cost the columns cannot hold: refused per span, not stored
        return result


_worker_reader: _Reader | None = None


def _init_worker(genai: GenAIProcessorConfig, row_configs: list[BaseModel]) -> None:
    global _worker_reader
    _worker_reader = _Reader(genai, row_configs)


def _ready(_: int) -> bool:
    return _worker_reader is not None


def _decode_in_worker(body: bytes, latest: int) -> DecodeResult:
    assert _worker_reader is not None
    result = _worker_reader(body, latest)
    for record in result.records:
        # The raw OTLP values served the processors above; they do not cross processes.
        record.attributes = None
        record.resource = {}
    return result
