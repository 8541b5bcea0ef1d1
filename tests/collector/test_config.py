"""`pipelines.yaml`: `${env:...}` substitution, validation, and what `spanmeter serve` says about a
bad file (exit 2, the file and the key path named)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from spanmeter.config import ConfigError, load_config, substitute_env, unused_components

from .conftest import SHIPPED_CONFIG, deep_merge

# --- substitution --------------------------------------------------------------------------------

ENV = {"HOST": "db.internal", "PORT": "8123", "EMPTY": "", "TEMPLATE": "${env:HOST}"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${env:HOST}", "db.internal"),
        ("${HOST}", "db.internal"),
        ("http://${env:HOST}:${PORT}/x", "http://db.internal:8123/x"),
        ("${env:MISSING:-fallback}", "fallback"),
        ("${env:HOST:-fallback}", "db.internal"),
        ("${env:MISSING:-}", ""),
        ("${env:EMPTY:-fallback}", ""),  # set but empty is still set, as in the Collector
        ("${env:MISSING:-${env:PORT}}", "8123"),
        ("${env:MISSING:-${env:ALSO_MISSING:-deep}}", "deep"),
        ("chdb://${env:MISSING:-${env:ALSO_MISSING:-./.data}/store}", "chdb://./.data/store"),
        ("${env:MISSING:-a:-b}", "a:-b"),
        ("price$$", "price$"),
        ("$${env:HOST}", "${env:HOST}"),
        ("$$$${HOST}", "$${HOST}"),
        ("${env:TEMPLATE}", "${env:HOST}"),  # values from the environment are not expanded again
        ("a $ alone", "a $ alone"),
        ("no references", "no references"),
    ],
)
def test_substitute_env(text: str, expected: str) -> None:
    assert substitute_env(text, ENV, "f.yaml: key") == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("${env:MISSING}", "environment variable MISSING is not set and has no default"),
        ("${MISSING}", "environment variable MISSING is not set"),
        ("${env:MISSING:-${env:ALSO_MISSING}}", "environment variable ALSO_MISSING is not set"),
        ("${env:HOST", "unterminated substitution"),
        ("${env:9LIVES}", "invalid substitution ${env:9LIVES}"),
        ("${file:/etc/passwd}", "invalid substitution ${file:/etc/passwd}"),
    ],
)
def test_substitute_env_errors_name_where(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        substitute_env(text, ENV, "f.yaml: exporters.clickhouse.endpoint")
    assert str(raised.value).startswith("f.yaml: exporters.clickhouse.endpoint: ")
    assert problem in str(raised.value)


# --- loading -------------------------------------------------------------------------------------


def test_shipped_pipelines_yaml_loads_with_an_empty_environment() -> None:
    config = load_config(SHIPPED_CONFIG, env={})
    otlp = config.receivers["otlp"].protocols
    assert otlp.grpc.endpoint == "127.0.0.1:4317"
    assert otlp.http.endpoint == "127.0.0.1:4318"
    store = config.exporters["clickhouse"]
    assert store.endpoint == "chdb://./.spanmeter"
    assert (store.database, store.username, store.password) == ("spanmeter", "default", "")
    batch = store.batch
    assert (batch.max_rows, batch.max_insert_rows, batch.max_insert_bytes, batch.max_age) == (
        100_000,
        200_000,
        2**28,
        5.0,
    )
    assert (store.retry.initial_interval, store.retry.max_interval, store.shutdown_timeout) == (0.5, 30.0, 10.0)
    traces = config.service.pipelines.traces
    assert (traces.receivers, traces.processors, traces.exporters) == (
        ["otlp"],
        ["genai", "pricing", "tags"],
        ["clickhouse"],
    )


def test_shipped_pipelines_yaml_follows_the_environment() -> None:
    config = load_config(
        SHIPPED_CONFIG,
        env={"SPANMETER_DATA": "/var/lib/spanmeter", "SPANMETER_GRPC_ENDPOINT": "127.0.0.2:14317"},
    )
    assert config.exporters["clickhouse"].endpoint == "chdb:///var/lib/spanmeter"
    assert config.receivers["otlp"].protocols.grpc.endpoint == "127.0.0.2:14317"
    with pytest.raises(ConfigError, match=r"receivers\.otlp\.protocols\.grpc\.endpoint: listens beyond loopback"):
        load_config(SHIPPED_CONFIG, env={"SPANMETER_GRPC_ENDPOINT": "0.0.0.0:14317"})  # without keys
    server = load_config(SHIPPED_CONFIG, env={"SPANMETER_CLICKHOUSE_URL": "https://ch.example:8443"})
    assert server.exporters["clickhouse"].endpoint == "https://ch.example:8443"


def write_config(directory: Path, overrides: dict[str, Any] | None = None, text: str | None = None) -> Path:
    """The shipped pipelines.yaml with overrides merged in, or `text` as is."""
    if text is None:
        text = yaml.safe_dump(deep_merge(yaml.safe_load(SHIPPED_CONFIG.read_text()), overrides or {}))
    path = directory / "pipelines.yaml"
    path.write_text(text)
    return path


def test_substituted_values_are_validated_as_their_type(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"exporters": {"clickhouse": {"batch": {"max_rows": "${env:ROWS}"}}}})
    assert load_config(path, env={"ROWS": "250"}).exporters["clickhouse"].batch.max_rows == 250
    with pytest.raises(ConfigError, match=r"exporters\.clickhouse\.batch\.max_rows: .*'many'"):
        load_config(path, env={"ROWS": "many"})


@pytest.mark.parametrize(
    ("value", "seconds"), [("500ms", 0.5), ("1s", 1.0), ("1.5s", 1.5), ("5m", 300.0), ("1h", 3600.0), (2, 2.0)]
)
def test_durations(tmp_path: Path, value: Any, seconds: float) -> None:
    path = write_config(tmp_path, {"exporters": {"clickhouse": {"batch": {"max_age": value}}}})
    assert load_config(path, env={}).exporters["clickhouse"].batch.max_age == seconds


def test_component_ids_with_a_name_take_their_types_model(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "exporters": {"otlp/backend": {"endpoint": "http://127.0.0.1:4319", "timeout": "2s"}},
            "service": {"pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["otlp/backend"]}}},
        },
    )
    backend = load_config(path, env={}).exporters["otlp/backend"]
    assert (backend.endpoint, backend.timeout) == ("http://127.0.0.1:4319", 2.0)


def test_components_no_pipeline_uses_are_each_named(tmp_path: Path) -> None:
    assert unused_components(load_config(SHIPPED_CONFIG, env={})) == []
    path = write_config(
        tmp_path,
        {
            "receivers": {"otlp/spare": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
            "processors": {"budget": {"budgets": [{"name": "total", "limit_usd": 5}]}},
            "exporters": {
                "otlp/backend": {"endpoint": "http://127.0.0.1:4319"},
                "otlp/unused": {"endpoint": "http://127.0.0.1:4320"},
            },
            # Processors of a metrics pipeline do nothing: metrics are forwarded unprocessed.
            "service": {
                "pipelines": {
                    "metrics": {"receivers": ["otlp"], "processors": ["budget"], "exporters": ["otlp/backend"]}
                }
            },
        },
    )
    config = load_config(path, env={})
    assert config.service.pipelines.metrics is not None  # otlp/backend is used there
    assert unused_components(config) == [
        "receivers.otlp/spare is configured but not in any of service.pipelines: it has no effect",
        "processors.budget is configured but not in service.pipelines.traces.processors: it has no effect "
        "(its 1 budget(s) are not checked)",
        "exporters.otlp/unused is configured but not in any of service.pipelines: it has no effect",
    ]


# --- bad files: `spanmeter serve` exits 2 naming the file and the key -------------------------


def spanmeter() -> list[str]:
    script = shutil.which("spanmeter", path=str(Path(sys.executable).parent)) or shutil.which("spanmeter")
    assert script, "the spanmeter console script is not installed: pip install -e . first"
    return [script]


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SPANMETER_", "CLICKHOUSE_"))}
    # Should a bad file ever be accepted, the collector must not touch real ports or data: the test
    # then fails on the timeout or the exit code rather than hanging or writing into the checkout.
    env.update(
        SPANMETER_DATA=str(config.parent / "data"),
        SPANMETER_GRPC_ENDPOINT="127.0.0.1:0",
        SPANMETER_HTTP_ENDPOINT="127.0.0.1:0",
    )
    return subprocess.run(
        [*spanmeter(), "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=config.parent,
    )


COPY_RULE = {"tag": "team", "from": "resource.team"}
BAD_CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown-key": (
        {"exporters": {"clickhouse": {"batch": {"max_rowz": 10}}}},
        "exporters.clickhouse.batch.max_rowz: unknown key",
    ),
    "unknown-top-level-key": ({"connectors": {"forward": {}}}, "connectors: unknown key"),
    "unknown-extension": (
        {"extensions": {"health_check": {}}},
        "extensions.health_check: unknown component type; expected one of ['spanmeter_digest', 'spanmeter_keys']",
    ),
    "wrong-type": (
        {"exporters": {"clickhouse": {"batch": {"max_rows": "lots"}}}},
        "exporters.clickhouse.batch.max_rows: Input should be a valid integer",
    ),
    "wrong-type-in-list": (
        {"service": {"pipelines": {"traces": {"exporters": "clickhouse"}}}},
        "service.pipelines.traces.exporters: Input should be a valid list",
    ),
    "missing-env-var": (
        {"exporters": {"clickhouse": {"password": "${env:SPANMETER_TEST_SECRET}"}}},
        "exporters.clickhouse.password: environment variable SPANMETER_TEST_SECRET is not set and has no default",
    ),
    "invalid-duration": (
        {"exporters": {"clickhouse": {"retry": {"max_interval": "5 parsecs"}}}},
        "exporters.clickhouse.retry.max_interval: Value error, expected a duration such as 500ms",
    ),
    "undeclared-component": (
        {"service": {"pipelines": {"traces": {"exporters": ["clickhouse", "otlp/backend"]}}}},
        "service.pipelines.traces.exporters[1]: 'otlp/backend' is not declared under exporters",
    ),
    "unknown-component-type": ({"processors": {"batch": {}}}, "processors.batch: unknown component type"),
    "recycle-beyond-max-bytes": (
        {"exporters": {"clickhouse": {"queue": {"max_bytes": "256MiB", "recycle_bytes": "1GiB"}}}},
        "exporters.clickhouse.queue.recycle_bytes: 1073741824 bytes is more than queue.max_bytes (268435456)",
    ),
    "regex-without-group": (
        {"processors": {"tags": {"rules": [{"tag": "team", "from": "span.http.route", "regex": "^/api/.*"}]}}},
        "processors.tags.rules[0].regex: Value error, needs a capture group",
    ),
    "regex-that-does-not-compile": (
        {"processors": {"tags": {"rules": [COPY_RULE, {"tag": "b", "from": "span.y", "regex": "(["}]}}},
        "processors.tags.rules[1].regex: Value error, not a valid regular expression",
    ),
    "bad-endpoint-scheme": (
        {"exporters": {"clickhouse": {"endpoint": "mysql://db"}}},
        "exporters.clickhouse.endpoint: Value error, expected chdb://PATH",
    ),
    "traces-without-genai-first": (
        {"service": {"pipelines": {"traces": {"processors": ["pricing", "genai"]}}}},
        "service.pipelines.traces.processors: must start with a genai processor",
    ),
    # Without pricing, calls with tokens were stored at $0 as `no_usage`, not even counted as unpriced.
    "traces-without-pricing": (
        {"service": {"pipelines": {"traces": {"processors": ["genai", "tags"]}}}},
        "service.pipelines.traces.processors: needs a pricing processor",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_load_config_names_file_and_key(tmp_path: Path, case: str) -> None:
    overrides, message = BAD_CONFIGS[case]
    path = write_config(tmp_path, overrides)
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert f"{path}: {message}" in str(raised.value)


# What `spanmeter serve` is run with in a subprocess: one case of each kind the issue lists.
SERVE_CASES = [
    "unknown-key",
    "wrong-type",
    "missing-env-var",
    "invalid-duration",
    "undeclared-component",
    "regex-without-group",
    "traces-without-pricing",
]


@pytest.mark.parametrize("case", SERVE_CASES)
def test_serve_with_a_bad_config_exits_2_naming_file_and_key(tmp_path: Path, case: str) -> None:
    overrides, message = BAD_CONFIGS[case]
    path = write_config(tmp_path, overrides)

    result = serve(path)

    assert result.returncode == 2, result.stderr
    assert f"{path}: {message}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read"),
        ("receivers: [unclosed\n", "not valid YAML"),
        ("- a list\n", "expected a mapping with receivers, processors, exporters and service"),
    ],
    ids=["missing-file", "not-yaml", "not-a-mapping"],
)
def test_a_file_that_is_not_a_config_names_the_file(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "nowhere.yaml" if text is None else write_config(tmp_path, text=text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert str(raised.value).startswith(f"{path}: {message}")


def test_serve_with_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = serve(tmp_path / "nowhere.yaml")
    assert result.returncode == 2, result.stderr
    assert f"{tmp_path / 'nowhere.yaml'}: cannot read" in result.stderr
