"""Where spans are decoded, priced and tagged: in the receiving process, or in worker processes.

Reading a GenAI span costs Python work per attribute, all under one GIL (see bench/README.md). With
`service.workers: N`, N worker processes read the requests (the `genai` processor, then the per-row
processors such as `pricing` and `tags`) and send the rows back; the receiving process keeps what
must be one: recognising duplicate calls, budgets, the queue and the store.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import BaseModel

from .config import GenAIProcessorConfig, PricingProcessorConfig, TagsProcessorConfig
from .processors import DecodeResult, GenAIProcessor, PricingProcessor, TagsProcessor
from .records import SpanRecord

__all__ = ["InlineDecoder", "RecordProcessor", "SpanDecoder", "WorkerPoolDecoder", "is_row_processor"]


class RecordProcessor(Protocol):
    def process(self, records: Sequence[SpanRecord]) -> None: ...


class SpanDecoder(Protocol):
    async def decode(self, request: ExportTraceServiceRequest, body: bytes | None) -> DecodeResult: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


_ROW_PROCESSORS: dict[type[BaseModel], type[Any]] = {
    PricingProcessorConfig: PricingProcessor,
    TagsProcessorConfig: TagsProcessor,
}


def is_row_processor(config: BaseModel) -> bool:
    """Whether a processor needs nothing but each request's rows (so it can run in a worker)."""
    return type(config) in _ROW_PROCESSORS


class InlineDecoder:
    """Reads requests in the receiving process (`service.workers: 0`)."""

    def __init__(self, genai: GenAIProcessorConfig, row_configs: Sequence[BaseModel]) -> None:
        self._read = _Reader(genai, row_configs)

    async def decode(self, request: ExportTraceServiceRequest, body: bytes | None) -> DecodeResult:
        return self._read(request)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class WorkerPoolDecoder:
    """Reads requests in `workers` processes; at most a few requests per worker wait at once."""

    def __init__(self, genai: GenAIProcessorConfig, row_configs: Sequence[BaseModel], workers: int) -> None:
        self._workers = workers
        self._init_args = (genai, list(row_configs))
        self._pool: ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(4 * workers)

    async def start(self) -> None:
        # Spawned, not forked: the parent runs gRPC and ClickHouse threads, which a fork would copy mid-flight.
        self._pool = ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=self._init_args,
        )
        loop = asyncio.get_running_loop()
        # Start every worker now (imports, price data), not on the first requests.
        await asyncio.gather(*(loop.run_in_executor(self._pool, _ready) for _ in range(self._workers)))

    async def decode(self, request: ExportTraceServiceRequest, body: bytes | None) -> DecodeResult:
        assert self._pool is not None, "start() first"
        payload = body if body is not None else request.SerializeToString()
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._pool, _decode_in_worker, payload)

    async def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)


class _Reader:
    def __init__(self, genai: GenAIProcessorConfig, row_configs: Sequence[BaseModel]) -> None:
        self._genai = GenAIProcessor(genai)
        self._processors: list[RecordProcessor] = [_ROW_PROCESSORS[type(c)](c) for c in row_configs]

    def __call__(self, request: ExportTraceServiceRequest) -> DecodeResult:
        result = self._genai.decode(request)
        for processor in self._processors:
            processor.process(result.records)
        result.drop_rejected()  # e.g. a cost the columns cannot hold: answered per span, not stored
        return result


_worker_reader: _Reader | None = None


def _init_worker(genai: GenAIProcessorConfig, row_configs: list[BaseModel]) -> None:
    global _worker_reader
    _worker_reader = _Reader(genai, row_configs)


def _ready() -> bool:
    return _worker_reader is not None


def _decode_in_worker(body: bytes) -> DecodeResult:
    assert _worker_reader is not None
    result = _worker_reader(ExportTraceServiceRequest.FromString(body))
    for record in result.records:
        # The raw OTLP values served the processors above; they do not cross processes.
        record.attributes = None
        record.resource = {}
    return result
