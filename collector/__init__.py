"""spanmeter: an OpenTelemetry-native LLM cost pipeline.

The collector receives OTLP spans, reads the GenAI ones into rows, prices and tags them, and
bulk-writes them to ClickHouse. Components follow the OpenTelemetry Collector's model:
receivers -> processors -> exporters, wired by ``pipelines.yaml``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("spanmeter")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
