"""What the commands share: finding and loading the config, logging, errors."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client

from ..api import api_base_url, read_advert, store_identity
from ..config import Config, ConfigError, component_type, load_config
from ..exporters.config import ClickHouseExporterConfig
from ..store import StoreBusy, StoreError, connect, database_exists, describe_endpoint, first_line

T = TypeVar("T")

DEFAULT_CONFIG = "pipelines.yaml"
EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def default_config() -> str:
    return os.environ.get("SPANMETER_CONFIG", DEFAULT_CONFIG)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=default_config(),
        help="pipelines file (default: $SPANMETER_CONFIG or ./pipelines.yaml)",
    )


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """--store, --database and --collector: the store a command reads, and the collector it asks when that collector
    holds the embedded store (read_store)."""
    parser.add_argument("--store", help="ClickHouse endpoint instead of the config's (chdb://PATH or http(s)://...)")
    parser.add_argument("--database", help="database instead of the config's")
    parser.add_argument("--collector", help="collector API base URL, used when the store is held by a collector")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def load_or_exit(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"spanmeter: configuration error\n{exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def own_command() -> str:
    """How to run spanmeter again, for hints that work when pasted: the name when it is on PATH,
    else the path of the script this process runs (e.g. `.venv/bin/spanmeter`)."""
    for script in (sys.argv[0], str(Path(sys.executable).with_name("spanmeter"))):
        if os.path.basename(script) == "spanmeter" and os.path.isfile(script):
            on_path = shutil.which("spanmeter")
            if on_path and os.path.samefile(on_path, script):
                return "spanmeter"
            return shlex.quote(script if os.sep in script else os.path.join(".", script))
    return "spanmeter"


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The exporter logs one line per failed attempt, with the cause; the HTTP stack's own retry and
    # driver warnings would repeat it several times per attempt.
    for noisy in ("urllib3", "clickhouse_connect.driver"):
        logging.getLogger(noisy).setLevel(max(logging.ERROR, logging.getLogger().level))


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
    url = api_base_url(config)
    if url is None:
        raise CommandError("no OTLP/HTTP receiver configured, so no collector API to ask; pass --collector")
    return url


API_KEY_ENV = "SPANMETER_API_KEY"


def get_json(url: str, body: Any = None, method: str | None = None, headers: dict[str, str] | None = None) -> Any:
    """GET `url` (POST `body` as JSON when given; or `method`), with the project key of $SPANMETER_API_KEY if set."""
    headers = {**(headers or {}), **({"Content-Type": "application/json"} if body is not None else {})}
    if key := os.environ.get(API_KEY_ENV):
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        hint = f" (set {API_KEY_ENV} to a project key)" if exc.code in (401, 403) else ""
        raise ValueError(f"HTTP {exc.code}: {_error_text(exc.read())}{hint}") from None


def _error_text(body: bytes) -> str:
    """The API's `{"error": ...}` message, else the body's start."""
    text = body.decode(errors="replace")
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return text[:300]


def read_store(
    args: argparse.Namespace,
    config: Config,
    local: Callable[[Client, str], T],
    remote: Callable[[str, str], T],
    what: str,
) -> T:
    """Run `local(client, database)` on the store; when a running collector holds the embedded store
    (one process per data directory), ask that collector's API instead: `remote(base_url, database)`."""
    store = store_config(config)
    endpoint = args.store or store.endpoint
    database = args.database or store.database
    _require_embedded_store(endpoint)
    logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)  # its failures become our one line
    try:
        client = connect(endpoint, store.username, store.password)
    except StoreBusy:
        base = _holder_api(args.collector, config, endpoint)
        try:
            return remote(base, database)
        except (OSError, ValueError) as exc:
            raise CommandError(f"the collector at {base}, which holds {endpoint}, answered: {_reason(exc)}") from None
    except StoreError as exc:
        raise CommandError(f"cannot read {describe_endpoint(endpoint)}: {_reason(exc)}") from None
    try:
        _require_database(client, endpoint, database)
        return local(client, database)
    except CommandError:
        raise
    except Exception as exc:
        raise CommandError(f"{what} query failed: {first_line(exc)}") from None
    finally:
        client.close()


def _require_embedded_store(endpoint: str) -> None:
    """A read never creates a store: an embedded one must already be there."""
    if not endpoint.startswith("chdb://"):
        return
    path = os.path.abspath(endpoint.removeprefix("chdb://"))
    if not os.path.isdir(os.path.join(path, "metadata")):
        raise CommandError(f"no store at {path} yet: {_store_hint(endpoint)}")


def _require_database(client: Client, endpoint: str, database: str) -> None:
    if not database_exists(client, database):
        raise CommandError(
            f"no database {database!r} in the store at {describe_endpoint(endpoint)} yet: {_store_hint(endpoint)}"
        )


def _store_hint(endpoint: str) -> str:
    hint = "a collector creates it at its first start (spanmeter serve), or check --store/--database"
    if endpoint.startswith("chdb://") and not os.path.isabs(endpoint.removeprefix("chdb://")):
        hint += f"; a relative path is read from the working directory, {os.getcwd()}"
    return hint


def _holder_api(explicit: str | None, config: Config, endpoint: str) -> str:
    """The API of the collector that holds this embedded store, checked through its `/healthz`: the
    one given with --collector, else the one the store's advert names, else the config's. Never one
    serving another store: that would report another store's rows as this one's."""
    wanted = store_identity(endpoint)
    if explicit:
        candidates = [explicit]
    else:
        advert = read_advert(endpoint.removeprefix("chdb://")) or {}
        candidates = [str(url) for url in (advert.get("api"), api_base_url(config)) if url]
    reasons = []
    for base in dict.fromkeys(url.rstrip("/") for url in candidates):
        try:
            serves = get_json(f"{base}/healthz").get("store_endpoint")
        except (OSError, ValueError, AttributeError) as exc:
            reasons.append(f"{base} did not answer ({_reason(exc)})")
            continue
        if serves == wanted:
            return base
        reasons.append(f"the collector at {base} serves {serves or 'an unnamed store'}")
    tried = "; ".join(reasons) or "no collector API is advertised in it"
    raise CommandError(
        f"the store {wanted} is held by another process, and no collector serving it was found: {tried}. "
        "Pass --collector with the API address of the collector that holds it."
    )


def _reason(exc: BaseException) -> str:
    """The root cause in one line: `connection refused`, not a driver's stack of wrappers."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[0].lower() + cause.strerror[1:]
        if isinstance(cause, urllib.error.URLError) and isinstance(cause.reason, OSError):
            return _reason(cause.reason)
        cause = cause.__cause__ or cause.__context__
    text = first_line(exc)
    return text.split(": ", 1)[1] if text.startswith("cannot open ClickHouse at ") else text
