"""Exporters: `clickhouse` stores rows; `otlp` forwards what was received to another OTLP endpoint."""

from .clickhouse import ClickHouseExporter
from .otlp import OtlpForwarder

__all__ = ["ClickHouseExporter", "OtlpForwarder"]
