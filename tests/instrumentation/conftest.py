"""Fixtures for the instrumentation tests: a real SDK tracer provider, the fake provider server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter_instrumentation import disable_budget_gate, install_tag_processor
from tests.fakes.provider_server import FakeProviderServer, provider_server


class Spans:
    """The spans the test's calls produced, read from the real SDK's in-memory exporter."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def one(self) -> ReadableSpan:
        spans = self.all()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def clear(self) -> None:
        self._exporter.clear()


@pytest.fixture(scope="session")
def _exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="session")
def tracer_provider(_exporter: InMemorySpanExporter) -> TracerProvider:
    """Not the global provider: the collector's tests share this process."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    install_tag_processor(provider)
    return provider


@pytest.fixture
def spans(_exporter: InMemorySpanExporter, tracer_provider: TracerProvider) -> Iterator[Spans]:
    _exporter.clear()
    yield Spans(_exporter)
    _exporter.clear()


@pytest.fixture
def gate_off() -> Iterator[None]:
    """Turns the budget gate off after the test, whatever the test enabled."""
    yield
    disable_budget_gate()


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeProviderServer]:
    with provider_server() as server:
        yield server


@contextmanager
def instrumented(instrumentor: Any, tracer_provider: TracerProvider, **kwargs: Any) -> Iterator[Any]:
    """Instruments for the ``with`` body only, so each test also sees the library uninstrumented."""
    instrumentor.instrument(tracer_provider=tracer_provider, **kwargs)
    try:
        yield instrumentor
    finally:
        instrumentor.uninstrument()


def assert_uninstrument_restores(
    instrumentor: Any, tracer_provider: TracerProvider, owners: tuple, names: tuple
) -> None:
    """``instrument()`` replaces each method; ``uninstrument()`` puts back the very same object."""
    before = {(o, n): o.__dict__[n] for o in owners for n in names if n in o.__dict__}
    assert len(before) == len(owners) * len(names)
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        assert all(o.__dict__[n] is not f for (o, n), f in before.items())
    finally:
        instrumentor.uninstrument()
    assert all(o.__dict__[n] is f for (o, n), f in before.items())
