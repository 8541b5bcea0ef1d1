"""Every dashboard panel's query, expanded as Grafana 12 and grafana-clickhouse-datasource 4.20 expand it, run on
seeded chDB data with every multi-value variable on All, on one value and on several values."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from spanmeter.sampling import weighed_sql

from .conftest import GRAFANA, Result, Runner, dashboards, load_build, provisioning
from .plugin_macros import ALL, QueryContext, Variable, grafana_duration, panel_interval

DASHBOARDS = dashboards()
PANELS = [(name, panel) for name, board in DASHBOARDS.items() for panel in board["panels"]]
PANEL_IDS = [f"{name}:{panel['title']}" for name, panel in PANELS]
DIMENSIONS = ["project", "service", "environment", "provider", "model", "feature"]
FIELDS_REGEX = re.compile(r"^/\^\((.+)\)\$/$")


def datasource_uid() -> str:
    (datasource,) = provisioning("datasources")["datasources"]
    return datasource["uid"]


def panel_range(board: dict[str, Any], panel: dict[str, Any], now: datetime) -> QueryContext:
    since = grafana_duration(panel.get("timeFrom") or board["time"]["from"])
    start = now - since
    minimum = grafana_duration(panel["interval"]) if panel.get("interval") else None
    points = panel.get("maxDataPoints", 1000)  # else the panel's width in pixels, about 1000
    return QueryContext(start, now, panel_interval(start, now, points, minimum=minimum))


def resolve_variables(board: dict[str, Any], runner: Runner, ctx: QueryContext, mode: str) -> dict[str, Variable]:
    """Each query variable's options from its own query (with the variables before it applied), then a selection:
    `all`, `one` (the first option) or `several` (the first two) for every multi-value variable."""
    variables: dict[str, Variable] = {}
    for spec in board["templating"]["list"]:
        if spec["type"] in ("datasource", "textbox"):
            variables[spec["name"]] = Variable(spec["name"], spec["current"]["value"])
            continue
        result = runner.run(spec["query"], variables, ctx)
        assert len(result.columns) == 1, f"variable {spec['name']} must return one column: {result.columns}"
        options = [str(row[0]) for row in result.rows]
        if not spec["multi"]:
            value: str | list[str] = options[0] if options else ""
        elif mode == "all":
            value = [ALL]
        else:
            value = options[: 1 if mode == "one" else 2]
        variables[spec["name"]] = Variable(spec["name"], value, options)
    return variables


def shown_fields(panel: dict[str, Any]) -> list[str]:
    """The fields a stat, gauge, pie or table panel displays, as its JSON names them."""
    if panel["type"] == "table":
        organize = next(t for t in panel["transformations"] if t["id"] == "organize")
        return list(organize["options"]["indexByName"])
    match = FIELDS_REGEX.match(panel["options"]["reduceOptions"]["fields"])
    assert match, panel["options"]["reduceOptions"]
    return match.group(1).split("|")


def check_shape(panel: dict[str, Any], result: Result) -> None:
    fmt = panel["targets"][0]["format"]
    if panel["type"] == "timeseries":
        assert fmt == 0, "time series panels use the plugin's time series format"
        assert result.columns[0] == "time", result.columns
        assert result.types[0].startswith("DateTime"), result.types
        times = [row[0] for row in result.rows]
        assert times == sorted(times), "time must ascend"
        assert all(isinstance(v, int | float) or v is None for row in result.rows for v in row[2:]), result.rows[:3]
    else:
        assert fmt == 1
        missing = set(shown_fields(panel)) - set(result.columns)
        assert not missing, f"{panel['title']}: the query lacks {missing} (has {result.columns})"
        if panel["type"] == "stat":
            assert len(result.rows) == 1, result.rows


@pytest.mark.parametrize("mode", ["all", "one", "several"])
@pytest.mark.parametrize(("name", "panel"), PANELS, ids=PANEL_IDS)
def test_panel_query_runs_and_returns_its_shape(
    seeded: dict[str, Runner], seeded_now: datetime, name: str, panel: dict[str, Any], mode: str
) -> None:
    board = DASHBOARDS[name]
    runner = seeded["all"]
    ctx = panel_range(board, panel, seeded_now)
    variables = resolve_variables(board, runner, ctx, mode)
    (target,) = panel["targets"]
    result = runner.run(target["rawSql"], variables, ctx)
    check_shape(panel, result)
    if mode == "all":
        assert result.rows, f"{panel['title']}: no rows on data that has some of everything\n{result.sql}"
    assert "$" not in result.sql.replace("'$", "")


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_panels_on_clean_data(seeded: dict[str, Runner], seeded_now: datetime, name: str) -> None:
    board = DASHBOARDS[name]
    runner = seeded["clean"]
    for panel in board["panels"]:
        ctx = panel_range(board, panel, seeded_now)
        result = runner.run(panel["targets"][0]["rawSql"], resolve_variables(board, runner, ctx, "all"), ctx)
        check_shape(panel, result)


def test_selecting_one_value_narrows_and_all_means_no_filter(seeded: dict[str, Runner], seeded_now: datetime) -> None:
    """The same panel totals less for one project than for All, and All equals the unfiltered total (in whole
    hours from the one the range starts in, as the panel reads the hourly rollup), estimated where sampled."""
    board = DASHBOARDS["overview.json"]
    panel = next(p for p in board["panels"] if p["title"] == "Spend")
    runner = seeded["clean"]
    ctx = panel_range(board, panel, seeded_now)
    spend = {}
    for mode in ("all", "one"):
        result = runner.run(panel["targets"][0]["rawSql"], resolve_variables(board, runner, ctx, mode), ctx)
        spend[mode] = dict(zip(result.columns, result.rows[0], strict=True))["spend"]
    total = runner.client.query(
        f"SELECT toFloat64(sum({weighed_sql('total_cost')})) FROM genai_spans"
        " WHERE timestamp >= toStartOfHour({start:DateTime64(3)})",
        parameters={"start": ctx.start.replace(microsecond=0)},
    ).result_rows[0][0]
    assert spend["all"] == pytest.approx(total, rel=1e-6)
    assert 0 < spend["one"] < spend["all"]


def test_every_dashboard_has_the_variables_and_unique_uids() -> None:
    uids = [board["uid"] for board in DASHBOARDS.values()]
    assert len(uids) == len(set(uids)) == len(load_build().DASHBOARDS_SPEC)
    for board in DASHBOARDS.values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["current"]["value"] == datasource_uid()
        for dimension in DIMENSIONS:
            assert variables[dimension]["multi"] and variables[dimension]["includeAll"], dimension
            assert "allValue" not in variables[dimension], "a custom all value would break $__conditionalAll"
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), board["title"]


def resolved_datasource(reference: dict[str, Any], board: dict[str, Any]) -> str:
    uid = reference["uid"]
    if uid == "${datasource}":
        uid = next(v for v in board["templating"]["list"] if v["name"] == "datasource")["current"]["value"]
    return uid


def test_every_target_uses_the_provisioned_datasource() -> None:
    uid = datasource_uid()
    for board in DASHBOARDS.values():
        references = [v["datasource"] for v in board["templating"]["list"] if "datasource" in v]
        for panel in board["panels"]:
            references += [panel["datasource"]] + [target["datasource"] for target in panel["targets"]]
        for reference in references:
            assert reference["type"] == "grafana-clickhouse-datasource"
            assert resolved_datasource(reference, board) == uid


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_every_panel_has_a_grid_position_and_none_overlap(name: str) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in DASHBOARDS[name]["panels"]:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_committed_files_are_what_build_py_writes() -> None:
    for path, text in load_build().rendered().items():
        assert path.read_text() == text, f"{path.relative_to(GRAFANA)} is stale: run python grafana/build.py"


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_dashboards_decode_into_the_sdk_models_and_back(name: str) -> None:
    """Nothing in the committed JSON is outside grafana-foundation-sdk's typed models: the SDK decodes each
    dashboard, every target as grafana/clickhouse_query.py's ClickHouseQuery (not the SDK's untyped fallback for
    an unknown plugin), and encodes it back unchanged."""
    load_build()  # registers ClickHouseQuery with the SDK's runtime
    query_type = sys.modules["clickhouse_query"].ClickHouseQuery
    board = Dashboard.from_json(DASHBOARDS[name])
    targets = [target for panel in board.panels or [] for target in getattr(panel, "targets", None) or []]
    assert targets and all(isinstance(target, query_type) for target in targets), [type(t) for t in targets]
    assert json.loads(json.dumps(board, cls=JSONEncoder)) == DASHBOARDS[name]


def test_dashboard_provider_points_at_the_dashboards() -> None:
    (provider,) = provisioning("dashboards")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"  # mounted there by docker-compose.yaml
    assert timedelta(seconds=provider["updateIntervalSeconds"]) <= timedelta(minutes=1)


def test_calls_link_each_trace_id_to_the_trace_url(seeded: dict[str, Runner], seeded_now: datetime) -> None:
    """The Calls table's trace_link is the dashboard's trace_url with the row's trace id in it: the default
    (Tempo in Explore) and a Jaeger URL set instead; unpriced calls have no cost, not 0."""
    board = DASHBOARDS["calls.json"]
    (panel,) = board["panels"]
    runner = seeded["all"]
    ctx = panel_range(board, panel, seeded_now)
    variables = resolve_variables(board, runner, ctx, "all")
    links = next(o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "trace_id")
    assert links["properties"][0]["value"][0]["url"] == "${__data.fields.trace_link}"
    for template in (variables["trace_url"].value, "http://jaeger:16686/trace/{trace_id}?uiFind='x'"):
        variables["trace_url"] = Variable("trace_url", template)
        result = runner.run(panel["targets"][0]["rawSql"], variables, ctx)
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        assert rows and all(r["trace_link"] == str(template).replace("{trace_id}", r["trace_id"]) for r in rows)
        assert all(r["trace_id"] and r["trace_id"] in r["trace_link"] for r in rows)
    times = [r["time"] for r in rows]
    assert times == sorted(times, reverse=True)
    assert any(r["cost"] is None for r in rows) and any(r["cost"] for r in rows), "seeded data has unpriced calls"
