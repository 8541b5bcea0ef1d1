"""The panel kinds of spanmeter's dashboards, as grafana-foundation-sdk builders: each takes its SQL (one
ClickHouse query, on the dashboard's data source variable) and the few settings that differ between panels.
Callers chain the SDK's own methods for the rest (description, max_data_points, time_from, ...)."""

from __future__ import annotations

from typing import TypeVar

from grafana_foundation_sdk.builders import bargauge, piechart, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import stat as statpanel
from grafana_foundation_sdk.builders import table as tablepanel
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import piechart as piechart_models
from grafana_foundation_sdk.models.common import DataSourceRef

from clickhouse_query import PLUGIN, ClickHouseQueryBuilder, Format

# Every panel and query reads the data source the dashboard's `datasource` variable picks.
DS = DataSourceRef(type_val=PLUGIN, uid="${datasource}")


def target(sql: str, fmt: Format) -> ClickHouseQueryBuilder:
    return ClickHouseQueryBuilder().ref_id("A").datasource(DS).format(fmt).raw_sql(sql)


def unit_of(name: str, unit: str) -> tuple[str, list[dashboard_models.DynamicConfigValue]]:
    """An override giving field `name` its unit (override_by_name's arguments)."""
    return name, [dashboard_models.DynamicConfigValue(id_val="unit", value=unit)]


def thresholds(*steps: tuple[float | None, str]) -> dashboard_builders.ThresholdsConfig:
    """Absolute thresholds: (from value, color), the first from None (minus infinity)."""
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=value, color=color) for value, color in steps])
    )


def reduce(fields: list[str], values: bool) -> common_builders.ReduceDataOptions:
    """The fields a stat, gauge or pie shows: `values` (one per row) or the last non-null of each."""
    return (
        common_builders.ReduceDataOptions()
        .values(values)
        .calcs(["lastNotNull"])
        .fields("/^(" + "|".join(fields) + ")$/")
    )


P = TypeVar("P", timeseries.Panel, tablepanel.Panel, statpanel.Panel, piechart.Panel, bargauge.Panel)


def placed(panel: P, title: str, sql: str, fmt: Format, w: int, h: int) -> P:
    """`panel` titled, on the dashboard's data source, with its one query, `w` columns wide and `h` rows high."""
    return panel.title(title).datasource(DS).with_target(target(sql, fmt)).span(w).height(h)


def timeseries_panel(title: str, sql: str, unit: str, w: int = 12, h: int = 8) -> timeseries.Panel:
    """Lines, one per series of the query (time first, then a label column, then the values)."""
    return (
        placed(timeseries.Panel(), title, sql, Format.TIMESERIES, w, h)
        .unit(unit)
        .draw_style(common.GraphDrawStyle.LINE)
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .calcs(["sum", "mean"])
        )
    )


def bars(title: str, sql: str, unit: str, w: int = 12, h: int = 8) -> timeseries.Panel:
    """Stacked bars, one stack per bucket."""
    return (
        timeseries_panel(title, sql, unit, w, h)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    )


def table(title: str, sql: str, fields: dict[str, str], w: int = 12, h: int = 8) -> tablepanel.Panel:
    """`fields`: every column the table shows, in order, with its unit ('' for none)."""
    panel = (
        placed(tablepanel.Panel(), title, sql, Format.TABLE, w, h)
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
        .with_transformation(
            dashboard_models.DataTransformerConfig(
                id_val="organize", options={"indexByName": {name: i for i, name in enumerate(fields)}}
            )
        )
    )
    for name, unit in fields.items():
        if unit:
            panel.override_by_name(*unit_of(name, unit))
    return panel


def stat(
    title: str, sql: str, fields: list[str], unit: str, w: int = 6, h: int = 4, decimals: int | None = 2
) -> statpanel.Panel:
    """A stat of the first row: `fields` are the values it shows (a `change_percent` in percent)."""
    panel = (
        placed(statpanel.Panel(), title, sql, Format.TABLE, w, h)
        .unit(unit)
        .reduce_options(reduce(fields, values=False))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    )
    if decimals is not None:
        panel.decimals(decimals)
    if "change_percent" in fields:
        panel.override_by_name(*unit_of("change_percent", "percent"))
    return panel


def pie(title: str, sql: str, value: str, w: int = 8, h: int = 8) -> piechart.Panel:
    """A donut of `value`, one slice per row."""
    return (
        placed(piechart.Panel(), title, sql, Format.TABLE, w, h)
        .unit("short")
        .reduce_options(reduce([value], values=True))
        .pie_type(piechart_models.PieChartType.DONUT)
        .legend(
            piechart.PieChartLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .values([piechart_models.PieChartLegendValues.PERCENT])
        )
    )


def percent_gauges(title: str, sql: str, w: int = 8, h: int = 8) -> bargauge.Panel:
    """Horizontal bars of `percent` from 0 to 100, one per row (named by the query's `name`): orange from 80,
    red from 100."""
    return (
        placed(bargauge.Panel(), title, sql, Format.TABLE, w, h)
        .unit("percent")
        .min(0)
        .max(100)
        .thresholds(thresholds((None, "green"), (80, "orange"), (100, "red")))
        .reduce_options(reduce(["percent"], values=True))
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
    )


# The panel builders above, as a dashboard takes them.
Panel = timeseries.Panel | tablepanel.Panel | statpanel.Panel | piechart.Panel | bargauge.Panel
