"""What the commands share: finding and loading the config, logging, errors."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client

from ..config import ClickHouseExporterConfig, Config, ConfigError, component_type, load_config
from ..store import StoreBusy, StoreError, connect, first_line

T = TypeVar("T")

DEFAULT_CONFIG = "pipelines.yaml"
EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get("SPANMETER_CONFIG", DEFAULT_CONFIG),
        help="pipelines file (default: $SPANMETER_CONFIG or ./pipelines.yaml)",
    )


def load_or_exit(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"spanmeter: configuration error\n{exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(message: str, code: int = EXIT_RUNTIME) -> int:
    print(f"spanmeter: {message}", file=sys.stderr)
    return code


class CommandError(Exception):
    """Ends a command with this message and exit status (printed by `main`)."""

    def __init__(self, message: str, code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.code = code


def store_config(config: Config) -> ClickHouseExporterConfig:
    exporter = next(e for e in config.service.pipelines.traces.exporters if component_type(e) == "clickhouse")
    return config.exporters[exporter]


def collector_url(config: Config) -> str:
    """The collector API's base URL, from the config's OTLP/HTTP receiver."""
    for receiver in config.receivers.values():
        if receiver.protocols.http is not None:
            host, _, port = receiver.protocols.http.endpoint.rpartition(":")
            return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}"
    raise CommandError("no OTLP/HTTP receiver configured, so no collector API to ask; pass --collector")


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}") from None


def read_store(
    args: argparse.Namespace,
    config: Config,
    local: Callable[[Client, str], T],
    remote: Callable[[str, str], T],
    what: str,
) -> T:
    """Run `local(client, database)` on the store; when a running collector holds the embedded store
    (one process per data directory), ask its API instead: `remote(base_url, database)`."""
    store = store_config(config)
    database = args.database or store.database
    try:
        client = connect(args.store or store.endpoint, store.username, store.password)
    except StoreBusy:
        base = args.collector or collector_url(config)
        try:
            return remote(base.rstrip("/"), database)
        except (OSError, ValueError) as exc:
            raise CommandError(
                f"the store is held by another process and its collector API at {base} failed: {exc}"
            ) from None
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    try:
        return local(client, database)
    except Exception as exc:
        raise CommandError(f"{what} query failed: {first_line(exc)}") from None
    finally:
        client.close()
