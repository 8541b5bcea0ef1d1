"""The Models dashboard's 'Compare with' panel against genai-prices: the seeded usage priced on a model it never had,
through the panel's SQL with the plugin's macros expanded, equals each stored call priced by `calc_price`, times
the calls it stands for where it was sampled (the panel prices the estimated usage)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import genai_prices
import pytest

from spanmeter.sampling import weight

from .conftest import Runner
from .plugin_macros import Variable
from .test_dashboards import DASHBOARDS, panel_range, resolve_variables


def test_compare_panel_equals_calc_price_of_every_call(seeded: dict[str, Runner], seeded_now: datetime) -> None:
    board = DASHBOARDS["models.json"]
    panel = next(p for p in board["panels"] if "'Compare with'" in p["title"])
    runner = seeded["all"]
    ctx = panel_range(board, panel, seeded_now)
    variables = resolve_variables(board, runner, ctx, "all")
    assert len(variables["compare_model"].options) > 2000  # every model genai-prices knows, not only those that ran
    variables["compare_model"] = Variable(
        "compare_model", "anthropic:claude-haiku-4-5"
    )  # cache reads and writes priced apart
    result = runner.run(panel["targets"][0]["rawSql"], variables, ctx)
    panel_cost = {row[0]: row[2] for row in result.rows}

    calls = runner.client.query(
        "SELECT if(response_model != '', response_model, request_model), timestamp, input_tokens, cache_read_tokens, "
        "cache_write_tokens, output_tokens, reasoning_tokens, sampling_threshold FROM genai_spans "
        "WHERE toStartOfHour(timestamp) >= toStartOfHour({start:DateTime64(3)}) "
        "AND toStartOfHour(timestamp) <= {end:DateTime64(3)}",
        parameters={"start": ctx.start.replace(microsecond=0), "end": ctx.end.replace(microsecond=0)},
    ).result_rows
    expected: dict[str, Decimal] = {}
    for model, at, input_tokens, cache_read, cache_write, output, reasoning, sampled in calls:
        usage = genai_prices.Usage(
            input_tokens=input_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            output_tokens=output,
            output_reasoning_tokens=reasoning,
        )
        price = genai_prices.calc_price(usage, "claude-haiku-4-5", provider_id="anthropic", genai_request_timestamp=at)
        expected[model] = expected.get(model, Decimal(0)) + price.total_price * weight(sampled)
    assert any(row[3] for row in calls)  # the seed has cache reads, priced apart
    assert any(row[7] for row in calls)  # and sampled calls, weighted
    assert set(panel_cost) == set(expected)
    for model, cost in expected.items():
        assert panel_cost[model] == pytest.approx(float(cost), rel=1e-9), model
