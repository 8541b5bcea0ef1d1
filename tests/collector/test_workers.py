"""The same end-to-end tests with `service.workers: 1`: spans read, priced and tagged in a worker
process, rows deduplicated, queued and stored in the receiving one."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from spanmeter.decoding import WorkerPoolReader
from spanmeter.service import Collector

from .conftest import deep_merge
from .test_bad_input import (  # noqa: F401
    FAST,
    test_ids_of_the_wrong_length_reject_only_that_span,
    test_invalid_token_counts_reject_that_span_and_keep_the_rest,
)
from .test_dedupe import test_one_call_traced_by_the_sdk_and_an_instrumentation_is_one_row  # noqa: F401
from .test_pricing_e2e import (  # noqa: F401
    test_price_override_from_pipelines_yaml_wins,
    test_rows_are_priced_exactly_as_genai_prices,
    test_unknown_model_is_unpriced_not_free_and_still_counted,
)
from .test_tags import test_tags_from_rules_and_span_attributes  # noqa: F401

WORKERS = {"service": {"workers": 1}}


@pytest.fixture
def start_collector(start_collector: Callable[..., Collector]) -> Callable[..., Collector]:
    def start(overrides: dict[str, Any] | None = None) -> Collector:
        return start_collector(deep_merge(overrides or {}, WORKERS))

    return start


@pytest.fixture
def collector(start_collector: Callable[..., Collector]) -> Collector:
    return start_collector(FAST)


@pytest.fixture(scope="module")
def storing(start_module_collector: Callable[..., Collector]) -> Collector:
    """conftest's `storing`, with a worker."""
    return start_module_collector(deep_merge(FAST, WORKERS))


def test_spans_are_read_in_another_process(collector: Collector) -> None:
    decoder = collector.span_reader
    assert isinstance(decoder, WorkerPoolReader)
    pool = decoder._pool
    assert pool is not None
    pids = {process.pid for process in pool._processes.values()}
    assert len(pids) == 1 and os.getpid() not in pids
