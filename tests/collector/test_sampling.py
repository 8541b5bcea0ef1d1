"""Sampled traces still add up: an app sampling its traces at 10 % with OpenTelemetry's consistent probability
sampler (`ot=th:` in the tracestate) sends the calls it kept to a real collector; reports and budgets estimate
the calls and spend of all 2,000 candidate calls within the statistical bound, marked as estimates, beside the
exact sums of what was stored. Traffic without sampling is not marked."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator

from spanmeter.cli import main
from spanmeter.cli.budget import render_status
from spanmeter.client import Client
from spanmeter.service import Collector

from .budget_helpers import MODEL, PROVIDER, budget_overrides, budget_status, wait_until
from .conftest import REPO, http_request, span_exporter, wait_for_rows
from .sampling_helpers import ConsistentSampler

CANDIDATES = 2_000
RATIO = 0.1
THRESHOLD = 0xE6666666666666
"""What the SDK writes for 10 %: `ot=th:e6666666666666`, T = 2^56 - round(0.1 * 2^56)."""
P = Decimal(2**56 - THRESHOLD) / Decimal(2**56)
UNSAMPLED = 25


class SeededIds(IdGenerator):
    """The SDK's random ids from a seeded generator: the sampler's decisions (by trace id) repeat run to run."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


def send(collector: Collector, service: str, costs: list[int], sampler: ConsistentSampler | None) -> list[int]:
    """One call per cost (USD: PRICE makes an input token cost $1), each its own trace, through the SDK's OTLP
    gRPC exporter; returns the costs of the calls the sampler kept."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        id_generator=SeededIds(len(costs)),
        **({"sampler": sampler} if sampler else {}),
    )
    provider.add_span_processor(BatchSpanProcessor(span_exporter(collector, "grpc"), max_export_batch_size=256))
    tracer = provider.get_tracer("app")
    kept = []
    for cost in costs:
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": MODEL,
            "gen_ai.usage.input_tokens": cost,
            "gen_ai.usage.output_tokens": 1,
        }
        span = tracer.start_span(f"chat {MODEL}", attributes=attributes)
        if span.get_span_context().trace_flags.sampled:
            kept.append(cost)
        span.end()
    provider.shutdown()
    return kept


def bound(values: list[int]) -> float:
    """3 sigma of the Horvitz-Thompson total sum(kept x / p) when each of `values` is kept independently with
    probability p: its variance is (1 - p) / p * sum(x^2) (for calls, every x is 1)."""
    p = float(P)
    return 3 * math.sqrt((1 - p) / p * sum(x * x for x in values))


@pytest.fixture
def sampled(start_collector: Callable[..., Collector]) -> tuple[Collector, list[int], list[int], list[int]]:
    """A collector with a budget over all spend, one over the unsampled service; the candidates' costs, the costs
    of those kept, and the unsampled service's costs."""
    budgets = [
        {"name": "all", "window": "month", "limit_usd": 10**9},
        {"name": "unsampled", "window": "month", "limit_usd": 10**9, "scope": {"service": "unsampled"}},
        # Stored, the sampled service spends ~10 % of this limit; estimated, ~2x it.
        {"name": "sampled", "window": "month", "limit_usd": 50_000, "scope": {"service": "sampled"}},
    ]
    collector = start_collector(budget_overrides(budgets))
    rng = random.Random(14)
    candidates = [rng.randint(1, 100) for _ in range(CANDIDATES)]
    kept = send(collector, "sampled", candidates, ConsistentSampler(RATIO))
    unsampled = [rng.randint(1, 100) for _ in range(UNSAMPLED)]
    assert send(collector, "unsampled", unsampled, None) == unsampled
    wait_for_rows(collector, len(kept) + UNSAMPLED)
    return collector, candidates, kept, unsampled


def estimate(costs: list[int]) -> Decimal:
    """sum(cost / p) over the kept calls, to the cost columns' 12 places."""
    with localcontext(prec=60):
        return sum((Decimal(cost) / P for cost in costs), Decimal(0)).quantize(Decimal("1e-12"))


def test_reports_and_budgets_estimate_sampled_traffic_within_the_bound(
    sampled: tuple[Collector, list[int], list[int], list[int]],
    chdb_path: Path,
    database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    collector, candidates, kept, unsampled = sampled
    assert 100 < len(kept) < 300  # ~200 of 2,000

    status, _, body = http_request(collector, "/v1/report?by=service&since=1h")
    assert status == 200, body
    groups = {row["group"]: row for row in json.loads(body)}
    sampled_row, plain = groups["sampled"], groups["unsampled"]
    # What was stored, exactly; and the estimates, marked.
    assert (sampled_row["requests"], Decimal(sampled_row["total_cost"])) == (len(kept), sum(kept))
    assert sampled_row["estimated"] is True
    assert Decimal(sampled_row["estimated_cost"]) == estimate(kept)  # each row weighed exactly, to 12 places
    assert sampled_row["estimated_requests"] == round(len(kept) / P)
    # Within 3 sigma of the true totals of all candidate calls (the bound computed from them: `bound`).
    assert abs(sampled_row["estimated_requests"] - CANDIDATES) <= bound([1] * CANDIDATES)
    assert abs(float(sampled_row["estimated_cost"]) - sum(candidates)) <= bound(candidates)
    # Traffic without sampling: not marked, its estimates its exact sums.
    assert plain["estimated"] is False
    assert (plain["requests"], Decimal(plain["total_cost"])) == (UNSAMPLED, sum(unsampled))
    assert (plain["estimated_requests"], Decimal(plain["estimated_cost"])) == (UNSAMPLED, sum(unsampled))

    # Budgets: the spend stored, and the estimate beside it (what limits hold to), marked where sampled.
    def statuses() -> dict[str, dict[str, Any]] | None:
        found = {entry["budget"]: entry for entry in budget_status(collector)}
        return found if found["all"]["requests"] == len(kept) + UNSAMPLED else None

    budgets = wait_until(statuses, what="budget spend of every row")
    everything, only_plain = budgets["all"], budgets["unsampled"]
    assert Decimal(everything["spend_usd"]) == sum(kept) + sum(unsampled)
    assert everything["estimated"] is True
    expected = estimate(kept) + sum(unsampled)
    assert abs(Decimal(everything["estimated_spend_usd"]) - expected) <= Decimal("1e-11")
    assert everything["estimated_requests"] == round(len(kept) / P) + UNSAMPLED
    assert only_plain["estimated"] is False
    assert Decimal(only_plain["estimated_spend_usd"]) == Decimal(only_plain["spend_usd"]) == sum(unsampled)
    # A limit holds to the calls made, not to the 1 in 10 kept: exceeded on the estimate, not on the rows.
    on_sampled = budgets["sampled"]
    assert Decimal(on_sampled["spend_usd"]) == sum(kept) < 50_000 < Decimal(on_sampled["estimated_spend_usd"])
    assert on_sampled["state"] == "exceeded"
    assert on_sampled["percent"] == pytest.approx(float(estimate(kept)) / 500, abs=0.01)
    client = Client(f"http://127.0.0.1:{collector.http_port}")
    typed = {state.budget: state for state in client.budgets().budgets}
    assert (typed["all"].estimated, typed["all"].estimated_spend_usd) == (
        True,
        Decimal(everything["estimated_spend_usd"]),
    )
    assert (typed["unsampled"].estimated, typed["unsampled"].estimated_requests) == (False, UNSAMPLED)
    [row] = [row for row in client.report(by="service", since="1h") if row.group == "sampled"]
    assert (row.estimated, row.estimated_cost, row.requests) == (
        True,
        Decimal(sampled_row["estimated_cost"]),
        len(kept),
    )
    table = render_status(list(budgets.values()), "table")
    assert "est. spend" in table and "~" in table and "~ estimated" in table

    # `spanmeter report`'s table marks the estimates and says why.
    config = tmp_path / "pipelines.yaml"
    config.write_text((REPO / "pipelines.yaml").read_text())
    store = ["--config", str(config), "--store", f"chdb://{chdb_path}", "--database", database]
    assert main(["report", *store, "--by", "service", "--since", "1h"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("sampled "))
    assert f"~{sampled_row['estimated_requests']:,}" in line
    assert not any("~" in line for line in out.splitlines() if line.startswith("unsampled "))
    assert "~ estimated: probability sampling" in out
