"""A port another collector holds is an error at start: grpcio's default SO_REUSEPORT once let a
second collector bind the same gRPC port, and the kernel split an app's spans between two stores."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from spanmeter.config import Config
from spanmeter.service import Collector

from .conftest import emit, rows, tracer_provider, wait_for_rows


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_second_collector_on_a_port_in_use_fails_to_start_and_reports_nothing_listening(
    protocol: str,
    start_collector: Callable[..., Collector],
    make_config: Callable[..., Config],
    caplog: pytest.LogCaptureFixture,
    store: Any,
    database: str,
) -> None:
    first = start_collector({"exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}}})
    endpoint = f"127.0.0.1:{first.grpc_port if protocol == 'grpc' else first.http_port}"
    second = Collector(
        make_config(
            {
                "receivers": {"otlp": {"protocols": {protocol: {"endpoint": endpoint}}}},
                "exporters": {"clickhouse": {"database": f"{database}_second"}},
            }
        )
    )
    caplog.clear()
    with caplog.at_level(logging.INFO), pytest.raises(OSError) as raised:
        asyncio.run(second.start())
    assert f"cannot listen for OTLP/{'gRPC' if protocol == 'grpc' else 'HTTP'} on {endpoint}" in str(raised.value)
    # With the HTTP port in use, the second's gRPC port was free and bound: still not reported listening.
    listening = [r.getMessage() for r in caplog.records if "listening" in r.getMessage()]
    assert listening == []

    # Every span still reaches the one collector that holds the port.
    provider = tracer_provider(first, "grpc" if protocol == "grpc" else "http-protobuf")
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    for _ in range(6):
        emit(provider, "chat gpt-4o", {**attributes, "gen_ai.usage.input_tokens": 10})
    wait_for_rows(first, 6)
    assert len(rows(store, database)) == 6
