"""The tags API and the span processor, with the real OTel SDK."""

from __future__ import annotations

import asyncio
import threading

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider

from spanmeter_instrumentation import TagSpanProcessor, current_tags, install_tag_processor, tags


def start(tracer_provider: TracerProvider, name: str = "work") -> None:
    tracer_provider.get_tracer("test").start_span(name).end()


def test_nested_scopes_merge_and_inner_wins(spans, tracer_provider):
    with tags(feature="search", team="core", user_id="u1"):
        with tags(feature="summarize", session_id="s9", team=None):
            assert current_tags() == {"feature": "summarize", "user_id": "u1", "session_id": "s9"}
            start(tracer_provider, "inner")
        start(tracer_provider, "outer")
    start(tracer_provider, "after")
    inner, outer, after = spans.all()
    assert dict(inner.attributes) == {"spanmeter.tag.feature": "summarize", "user.id": "u1", "session.id": "s9"}
    assert dict(outer.attributes) == {"spanmeter.tag.feature": "search", "spanmeter.tag.team": "core", "user.id": "u1"}
    assert dict(after.attributes) == {}
    assert current_tags() == {}


def test_values_become_strings_and_bad_values_are_refused():
    with tags(tier=3, beta=True, ratio=0.5):
        assert current_tags() == {"tier": "3", "beta": "True", "ratio": "0.5"}
    with pytest.raises(TypeError):
        tags(feature=["a"])


def test_decorator_on_function_coroutine_generator_and_async_generator(spans, tracer_provider):
    @tags(feature="sync")
    def plain() -> dict[str, str]:
        return dict(current_tags())

    @tags(feature="async")
    async def coroutine() -> dict[str, str]:
        await asyncio.sleep(0)
        return dict(current_tags())

    @tags(feature="gen")
    def generator():
        sent = yield dict(current_tags())
        yield sent, dict(current_tags())

    @tags(feature="agen")
    async def async_generator():
        yield dict(current_tags())
        await asyncio.sleep(0)
        yield dict(current_tags())

    assert plain() == {"feature": "sync"}
    assert asyncio.run(coroutine()) == {"feature": "async"}
    gen = generator()
    assert next(gen) == {"feature": "gen"}
    assert current_tags() == {}  # the consumer between steps does not see the generator's tags
    assert gen.send("x") == ("x", {"feature": "gen"})

    async def consume() -> list[dict[str, str]]:
        seen = []
        async for item in async_generator():
            seen.append(item)
            seen.append(dict(current_tags()))
        return seen

    assert asyncio.run(consume()) == [{"feature": "agen"}, {}, {"feature": "agen"}, {}]
    assert plain.__name__ == "plain"


def test_generator_throw_and_close_reach_the_wrapped_generator():
    closed = []

    @tags(feature="g")
    def generator():
        try:
            while True:
                try:
                    yield 1
                except ValueError:
                    yield dict(current_tags())
        finally:
            closed.append(dict(current_tags()))

    gen = generator()
    next(gen)
    assert gen.throw(ValueError()) == {"feature": "g"}
    gen.close()
    assert closed == [{"feature": "g"}]


def test_tags_do_not_leak_across_threads_or_tasks():
    seen: list[dict[str, str]] = []
    with tags(feature="main"):
        thread = threading.Thread(target=lambda: seen.append(dict(current_tags())))
        thread.start()
        thread.join()

    async def task(name: str) -> dict[str, str]:
        with tags(feature=name):
            await asyncio.sleep(0)
            return dict(current_tags())

    async def both() -> list[dict[str, str]]:
        return list(await asyncio.gather(task("a"), task("b")))

    assert seen == [{}]
    assert asyncio.run(both()) == [{"feature": "a"}, {"feature": "b"}]


def test_no_baggage_unless_asked(spans, tracer_provider):
    with tags(user_id="u1"):
        assert baggage.get_all() == {}
    with tags(user_id="u1", feature="f", propagate=True):
        assert baggage.get_all() == {"user.id": "u1", "spanmeter.tag.feature": "f"}
    assert baggage.get_all() == {}


def test_processor_reads_our_baggage_only_when_enabled(spans):
    ctx = baggage.set_baggage("spanmeter.tag.team", "upstream")
    ctx = baggage.set_baggage("user.id", "u-up", ctx)
    ctx = baggage.set_baggage("unrelated", "x", ctx)
    provider = TracerProvider()
    reader = TagSpanProcessor(read_baggage=True)
    provider.add_span_processor(reader)
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    token = otel_context.attach(ctx)
    try:
        with tags(user_id="u-local"):
            provider.get_tracer("t").start_span("s").end()
    finally:
        otel_context.detach(token)
    assert dict(exporter.get_finished_spans()[0].attributes) == {"spanmeter.tag.team": "upstream", "user.id": "u-local"}


def test_install_is_idempotent_and_needs_an_sdk_provider(spans):
    provider = TracerProvider()
    assert install_tag_processor(provider) is True
    assert install_tag_processor(provider) is True
    processors = provider._active_span_processor._span_processors  # the SDK's own list
    assert sum(isinstance(p, TagSpanProcessor) for p in processors) == 1
    assert install_tag_processor(trace.NoOpTracerProvider()) is False
