"""`BudgetProcessor.queued_table` against `queued`: two processors with the same budgets and clock, one given
the records and one the same rows as a table, end with the same ledger, the same `each` values tracked (and
capped), the same crossings queued and the same statuses."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from spanmeter.budgets.processor import BudgetProcessor
from spanmeter.config import BudgetProcessorConfig
from spanmeter.telemetry import CollectorMetrics

from .budget_helpers import Clock, utc
from .columnar_helpers import batch_table, blank_record

NOW = utc("2026-03-31T22:30:00")
BUDGETS = [
    {"name": "all", "window": "day", "limit_usd": 5, "thresholds": [10, 50, 100]},
    {"name": "per-project", "scope": {"project": "each"}, "window": "month", "limit_usd": 3},
    {"name": "users", "scope": {"user": "each", "provider": "acme"}, "window": "rolling 2h", "limit_usd": 1},
    {"name": "gpt", "scope": {"model": "gpt-*", "service": "svc-*"}, "limit_usd": 2, "limit_tokens": 500},
    {"name": "teams", "scope": {"tag:team": "each", "feature": "search"}, "limit_usd": 4, "limit_requests": 5},
    {"name": "pairs", "scope": {"environment": "each", "user": "each"}, "window": "rolling 1h", "limit_usd": 2},
]

rows = st.builds(
    lambda project, service, environment, provider, models, feature, user, team, minutes, cost, tokens: blank_record(
        project=project,
        service_name=service,
        environment=environment,
        provider=provider,
        response_model=models[0],
        request_model=models[1],
        feature=feature,
        user_id=user,
        tags={"team": team} if team is not None else {},
        timestamp=int((NOW - timedelta(minutes=minutes)).timestamp()) * 1_000_000_000 + 123,
        total_cost=cost,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
    ),
    project=st.sampled_from(["p1", "p2", "p3"]),
    service=st.sampled_from(["svc-a", "svc-b", "other"]),
    environment=st.sampled_from(["", "prod", "dev"]),
    provider=st.sampled_from(["acme", "openai"]),
    models=st.sampled_from([("gpt-4o", ""), ("", "gpt-4o-mini"), ("claude", "gpt-4o"), ("", "")]),
    feature=st.sampled_from(["", "search", "chat"]),
    user=st.sampled_from(["", "u1", "u2", "u3", "u4"]),
    team=st.sampled_from([None, "", "red", "blue", "green"]),
    # Now, earlier today, yesterday, last month (out of every window but a month's), last year.
    minutes=st.sampled_from([0, 30, 59, 61, 150, 24 * 60, 24 * 60 * 40, 24 * 60 * 400]),
    cost=st.decimals(min_value=0, max_value=2, places=12, allow_nan=False, allow_infinity=False),
    tokens=st.tuples(st.integers(0, 300), st.integers(0, 2**63)),
)


def processor(clock: Clock, max_each_values: int) -> BudgetProcessor:
    config = BudgetProcessorConfig(budgets=BUDGETS, max_each_values=max_each_values)
    return BudgetProcessor(config, None, None, CollectorMetrics(), clock)  # type: ignore[arg-type]


def state(budgets: BudgetProcessor) -> tuple[object, ...]:
    capped = {name: budgets.each_values_capped.labels(name)._value.get() for name in (b["name"] for b in BUDGETS)}
    ledger = budgets._ledger
    return (
        ledger._pending,
        [(position, dict(deltas)) for position, deltas in ledger._batches],
        ledger._position,
        budgets._each_seen,
        capped,
        [
            (c.budget.name, c.scope_value, c.values, c.window_start, c.threshold, c.totals, c.percent)
            for c in budgets._work.queue
        ],
        budgets._fired,
        [
            (s.budget.name, s.values, s.scope_value, s.window_start, s.window_end, s.totals, s.percent, s.projected_usd)
            for s in budgets.statuses()
        ],
    )


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.lists(rows, max_size=30), min_size=1, max_size=4),
    max_each_values=st.integers(1, 4),
    minutes=st.lists(st.integers(0, 120), min_size=4, max_size=4),
)
def test_queued_table_equals_queued(batches, max_each_values, minutes) -> None:
    clock = Clock(NOW)
    reference = processor(clock, max_each_values)
    columnar = processor(clock, max_each_values)
    for records, advance in zip(batches, minutes, strict=False):
        reference.queued(records)
        columnar.queued_table(batch_table(records))
        assert state(columnar) == state(reference)
        clock.advance(minutes=advance)  # past midnight and month end: windows and periods move on


def test_without_budgets_rows_are_counted() -> None:
    budgets = BudgetProcessor(BudgetProcessorConfig(), None, None, CollectorMetrics())  # type: ignore[arg-type]
    budgets.queued_table(batch_table([blank_record(total_cost=Decimal(1))] * 3))
    assert budgets._ledger._position == 3


def test_each_values_are_admitted_in_the_order_of_their_first_row() -> None:
    """With two `each` keys the distinct pairs sort otherwise than they arrive: the first two to arrive are
    tracked, the third is capped."""
    clock = Clock(NOW)
    reference, columnar = processor(clock, 2), processor(clock, 2)
    stamp = int(NOW.timestamp()) * 1_000_000_000
    records = [
        blank_record(environment=env, user_id=user, timestamp=stamp, total_cost=Decimal("0.5"))
        for env, user in [("prod", "u1"), ("dev", "u2"), ("prod", "u2"), ("prod", "u2")]
    ]
    reference.queued(records)
    columnar.queued_table(batch_table(records))
    assert state(columnar) == state(reference)
    pairs = BUDGETS.index(next(b for b in BUDGETS if b["name"] == "pairs"))
    assert columnar._each_seen[pairs][1] == {("prod", "u1"), ("dev", "u2")}
