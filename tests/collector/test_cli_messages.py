"""What the commands and the API answer when something is wrong or unusual: each message names the
problem in the user's own terms (a UTC header, a missing store, an unreachable server, a bad flag)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from spanmeter.cli import main
from spanmeter.config import ConfigError, load_config
from spanmeter.service import Collector

from .conftest import REPO, http_request
from .test_durability import spanmeter_command
from .test_report import seeded  # noqa: F401  (a fixture: six calls in the collector's store)


def test_report_header_shows_the_range_in_utc(seeded: list[str], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    paris = timezone(timedelta(hours=1))
    start = (datetime.now(UTC) - timedelta(hours=3)).astimezone(paris).replace(second=0, microsecond=0)
    end = start + timedelta(hours=2)
    assert main(["report", *seeded, "--from", start.isoformat(), "--to", end.isoformat()]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    utc_start, utc_end = start.astimezone(UTC), end.astimezone(UTC)
    assert header.endswith(f"{utc_start:%Y-%m-%d %H:%M} .. {utc_end:%Y-%m-%d %H:%M} UTC"), header


def test_v1_report_takes_since_and_names_its_own_parameters(
    seeded: list[str],  # noqa: F811
    storing: Collector,  # the collector that stored `seeded`
) -> None:
    def get(query: str) -> tuple[int, object]:
        status, _, body = http_request(storing, f"/v1/report{query}")
        return status, json.loads(body)

    status, rows = get("")  # no range: the last 24h
    assert status == 200, rows
    assert sum(row["requests"] for row in rows) == 6  # type: ignore[union-attr]
    status, rows = get("?since=30d&by=feature")  # the call eight days ago, too (it has no feature)
    assert status == 200, rows
    assert {row["group"]: row["requests"] for row in rows} == {"chat": 2, "agent": 4, "": 1}  # type: ignore[union-attr]
    start = (datetime.now(UTC) - timedelta(hours=2, minutes=30)).isoformat()
    status, rows = get(f"?from={start.replace('+', '%2B')}")  # from without to: until now
    assert status == 200 and sum(row["requests"] for row in rows) == 2  # type: ignore[union-attr]
    for query, named in (("?since=yesterday", "since"), ("?by=colour", "by"), ("?from=noon", "from")):
        status, body = get(query)
        assert status == 400, body
        error = body["error"]  # type: ignore[index]
        assert error.startswith(named) and "--" not in error, error


def test_report_on_a_path_with_no_store_says_so_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing-here"
    config = str(REPO / "pipelines.yaml")
    assert main(["report", "--config", config, "--store", f"chdb://{missing}"]) == 1
    assert f"no store at {missing} yet" in capsys.readouterr().err
    assert not missing.exists()


def test_report_on_a_store_without_the_database_says_so(
    seeded: list[str],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [*seeded[: seeded.index("--database")], "--database", "never_created"]
    assert main(["report", *args]) == 1
    err = capsys.readouterr().err
    assert "no database 'never_created' in the store" in err and "UNKNOWN_DATABASE" not in err


def test_unreachable_server_store_is_one_clean_line() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [spanmeter_command(), "report", "--config", str(REPO / "pipelines.yaml")]
    out = subprocess.run([*command, "--store", f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr == f"spanmeter: cannot read http://127.0.0.1:{port}: connection refused\n"


@pytest.mark.parametrize("limit", ["-1", "0", "two"])
def test_limit_must_be_a_positive_number(limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["report", "--limit", limit])
    assert exited.value.code == 2
    assert "argument --limit: " in capsys.readouterr().err


def test_config_error_names_the_bad_value_once(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    raw["exporters"]["clickhouse"]["batch"]["max_age"] = "5 parsecs"
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as error:
        load_config(path, env=dict(os.environ))
    message = str(error.value)
    assert "exporters.clickhouse.batch.max_age" in message
    assert message.count("'5 parsecs'") == 1, message


def test_demo_help_describes_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "a realistic day of GenAI traffic sent to it through the real OpenTelemetry SDK" in text
