"""spanmeter: an OpenTelemetry-native LLM cost pipeline.

The collector receives OTLP spans, reads the GenAI ones into rows, prices and tags them, and
bulk-writes them to ClickHouse. Components follow the OpenTelemetry Collector's model:
receivers -> processors -> exporters, wired by ``pipelines.yaml``. ``spanmeter.Client`` asks a running
collector's API from Python.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import ApiError, Client

try:
    __version__ = version("spanmeter")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["ApiError", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    """`Client` and `ApiError` imported when first used: the collector's processes need not load them."""
    if name in ("Client", "ApiError"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
