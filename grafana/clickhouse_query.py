"""A typed query of grafana-clickhouse-datasource for grafana-foundation-sdk, which has no ClickHouse query type.

The fields are those the plugin's SQL editor saves (src/types/queryBuilder.ts, `SqlQuery`: `editorType: 'sql'`,
`rawSql`, `format`, `queryType`) plus Grafana's own (`refId`, `datasource`, `pluginVersion`) and, in alert rules,
`intervalMs` and `maxDataPoints`. `ClickHouseQuery` implements the SDK's `Dataquery` variant, so panel and alert
builders take it as a target; `variant_config()` lets the SDK's `from_json` decode it back.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.common import DataSourceRef

PLUGIN = "grafana-clickhouse-datasource"
# The plugin version the queries were written for; saved with each query as the plugin's editor saves it.
PLUGIN_VERSION = "4.20.0"
# The provisioned data source of the plugin (provisioning/datasources/clickhouse.yaml): the dashboards' default,
# the alert rules' only one.
DATASOURCE_UID = "spanmeter-clickhouse"
DATASOURCE_NAME = "spanmeter ClickHouse"


class Format(IntEnum):
    """The plugin's result formats (src/types/queryBuilder.ts, `Format`)."""

    TIMESERIES = 0
    TABLE = 1


class ClickHouseQuery(cogvariants.Dataquery):
    """One SQL query of the plugin's SQL editor. The SQL is saved on one line, as the committed files show it."""

    def __init__(
        self,
        ref_id: str = "A",
        datasource: DataSourceRef | None = None,
        raw_sql: str = "",
        format: Format = Format.TABLE,
        plugin_version: str = PLUGIN_VERSION,
        interval_ms: int | None = None,
        max_data_points: int | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.datasource = datasource
        self.raw_sql = raw_sql
        self.format = format
        self.plugin_version = plugin_version
        self.interval_ms = interval_ms
        self.max_data_points = max_data_points

    @property
    def query_type(self) -> str:
        """The plugin's `queryType`, which follows the format for SQL-editor queries."""
        return "timeseries" if self.format == Format.TIMESERIES else "table"

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"refId": self.ref_id}
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        payload |= {
            "editorType": "sql",
            "format": int(self.format),
            "queryType": self.query_type,
            "pluginVersion": self.plugin_version,
            "rawSql": self.raw_sql,
        }
        if self.interval_ms is not None:
            payload["intervalMs"] = self.interval_ms
        if self.max_data_points is not None:
            payload["maxDataPoints"] = self.max_data_points
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        datasource = data.get("datasource")
        return cls(
            ref_id=data.get("refId", "A"),
            datasource=DataSourceRef.from_json(datasource) if datasource else None,
            raw_sql=data.get("rawSql", ""),
            format=Format(data.get("format", Format.TABLE)),
            plugin_version=data.get("pluginVersion", PLUGIN_VERSION),
            interval_ms=data.get("intervalMs"),
            max_data_points=data.get("maxDataPoints"),
        )


def variant_config() -> cogruntime.DataqueryConfig:
    """Registers the query with the SDK's runtime, keyed by the plugin id in the query's datasource type."""
    return cogruntime.DataqueryConfig(identifier=PLUGIN, from_json_hook=ClickHouseQuery.from_json)


cogruntime.Runtime().register_dataquery_variant(variant_config())


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    """Builds a `ClickHouseQuery` the way the SDK's own query builders do (one method per field)."""

    def __init__(self) -> None:
        self._internal = ClickHouseQuery()

    def build(self) -> ClickHouseQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def datasource(self, datasource: DataSourceRef) -> Self:
        self._internal.datasource = datasource
        return self

    def raw_sql(self, sql: str) -> Self:
        """The SQL, whitespace folded to single spaces (no SQL here holds a string literal with runs of spaces)."""
        self._internal.raw_sql = " ".join(sql.split())
        return self

    def format(self, format: Format) -> Self:
        self._internal.format = format
        return self

    def interval_ms(self, interval_ms: int) -> Self:
        self._internal.interval_ms = interval_ms
        return self

    def max_data_points(self, max_data_points: int) -> Self:
        self._internal.max_data_points = max_data_points
        return self
