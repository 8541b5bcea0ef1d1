"""The dashboard variables, as grafana-foundation-sdk builders: the data source, one multi-value variable per
dimension (queries.DIMENSIONS) on every dashboard, and the few a single dashboard adds."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import dashboard as dashboard_models

from clickhouse_query import DATASOURCE_NAME, DATASOURCE_UID, PLUGIN
from panels import DS
from queries import DIMENSIONS, HOURS, PRICES_VERSION, TAGS, filters


def datasource_variable() -> dashboard_builders.DatasourceVariable:
    return (
        dashboard_builders.DatasourceVariable("datasource")
        .label("Data source")
        .type(PLUGIN)
        .current(dashboard_models.VariableOption(text=DATASOURCE_NAME, value=DATASOURCE_UID))
        .hide(dashboard_models.VariableHide.DONT_HIDE)
        .regex("")
    )


def query_variable(name: str, label: str, sql: str, multi: bool = True) -> dashboard_builders.QueryVariable:
    """Options from `sql` (one column), refreshed with the time range; `multi`: several values, with All (no custom
    all value: `$__conditionalAll` needs All to be `$__all`)."""
    variable = (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(" ".join(sql.split()))
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
        .hide(dashboard_models.VariableHide.DONT_HIDE)
        .options([])
    )
    if multi:
        variable.current(dashboard_models.VariableOption(text=["All"], value=["$__all"]))
    return variable


def dimension_variables() -> list[dashboard_builders.DatasourceVariable | dashboard_builders.QueryVariable]:
    """Each variable lists the values seen in the range (from the hourly rollup), narrowed by the ones before it."""
    variables: list[dashboard_builders.DatasourceVariable | dashboard_builders.QueryVariable] = [datasource_variable()]
    before: list[str] = []
    for name, label, _, column in DIMENSIONS:
        where = " AND ".join(
            ["$__timeFilter(hour)", filters(rollup=True, only=tuple(before))] if before else ["$__timeFilter(hour)"]
        )
        variables.append(
            query_variable(
                name, label, f"SELECT DISTINCT {column} FROM genai_spans_hourly WHERE {where} ORDER BY {column}"
            )
        )
        before.append(name)
    return variables


# Where a trace id leads: any URL with `{trace_id}` in it. The default opens the trace in Grafana's Explore on a
# data source named Tempo; for Jaeger, e.g. http://jaeger:16686/trace/{trace_id}. Set it in the dashboard's
# settings (Variables, trace_url) or per link with ?var-trace_url=...
TRACE_URL_DEFAULT = (
    '/explore?left={"datasource":"Tempo","queries":[{"refId":"A","queryType":"traceql","query":"{trace_id}"}]}'
)


def trace_url() -> dashboard_builders.TextBoxVariable:
    return (
        dashboard_builders.TextBoxVariable("trace_url")
        .label("Trace URL ({trace_id} is replaced)")
        .default_value(TRACE_URL_DEFAULT)
        .current(dashboard_models.VariableOption(text=TRACE_URL_DEFAULT, value=TRACE_URL_DEFAULT))
        .hide(dashboard_models.VariableHide.HIDE_VARIABLE)
        .options([])
    )


def compare_model() -> dashboard_builders.QueryVariable:
    """Every model of the newest genai-prices version in model_prices, as provider:model."""
    return query_variable(
        "compare_model",
        "Compare with",
        f"SELECT DISTINCT concat(provider, ':', model) FROM model_prices WHERE version = {PRICES_VERSION} ORDER BY 1",
        multi=False,
    ).current(dashboard_models.VariableOption(text="openai:gpt-4o-mini", value="openai:gpt-4o-mini"))


def tag_key() -> dashboard_builders.QueryVariable:
    """The tag keys seen in the range."""
    return query_variable(
        "tag_key",
        "Tag",
        f"SELECT DISTINCT tag_key AS key FROM {TAGS} WHERE {HOURS} ORDER BY key LIMIT 500",
        multi=False,
    )
