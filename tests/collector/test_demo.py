"""`spanmeter demo`, run as a newcomer runs it: a fresh process, a fresh store, a non-empty report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import REPO
from .test_durability import spanmeter_command


def test_demo_prints_a_report_of_what_it_sent(tmp_path: Path) -> None:
    """The demo as `make demo` runs it (its default day of 2,000 calls): the spend tables, then the three
    largest findings its waste produces."""
    data = tmp_path / "demo-store"
    command = [spanmeter_command(), "demo", "--data", str(data)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "stored 2000 GenAI spans" in out.stderr
    for model in ("gpt-4o-2024-08-06", "claude-sonnet-4-5", "o3-mini", "gemini-2.5-flash", "acme-llm-7b"):
        assert model in out.stdout
    assert "Spend by feature" in out.stdout
    assert "no known price" in out.stdout
    findings = out.stdout[out.stdout.index("Findings, ") :]
    listed = [line.split()[1] for line in findings.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert len(listed) == 3 and set(listed) <= {"cache_unused", "paid_failures", "repeated_calls", "right_size"}
    assert "contract-review" in findings and "/month" in findings

    # What the demo stored can be reported on afterwards.
    report = subprocess.run(
        [spanmeter_command(), "report", "--store", f"chdb://{data}", "--by", "price_status", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert report.returncode == 0, report.stderr
    statuses = {row["group"]: row["requests"] for row in json.loads(report.stdout)}
    assert statuses["priced"] > 1500
    assert statuses["unpriced"] > 0
    assert sum(statuses.values()) == 2000


def _demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The demo as a newcomer runs it: by the script's path, with spanmeter not on PATH."""
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    command = [spanmeter_command(), "demo", "--config", str(REPO / "pipelines.yaml"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_a_short_demo_twice_starts_fresh_and_its_hint_runs_as_printed(tmp_path: Path) -> None:
    for run in (1, 2):
        out = _demo(tmp_path, "--calls", "10", "--data", "demo-store")  # fewer calls than one SDK batch
        assert out.returncode == 0, out.stderr
        assert "stored 10 GenAI spans" in out.stderr
        fresh = "the previous run's data dropped: each run starts empty"
        assert (fresh in out.stderr) == (run == 2), out.stderr
        totals = [line.split() for line in out.stdout.splitlines() if line.startswith("total ")]
        assert [cells[1] for cells in totals] == ["10", "10"]  # by model, by feature: this run's calls only

    [hint] = [line.removeprefix("Next: ") for line in out.stderr.splitlines() if line.startswith("Next: ")]
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    report = subprocess.run(hint, shell=True, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert report.returncode == 0, f"{hint}: {report.stderr}"
    assert sum(row["requests"] for row in json.loads(report.stdout)) == 10


def test_demo_refuses_a_store_it_did_not_create(tmp_path: Path) -> None:
    store = tmp_path / "real-store"
    create = f"from spanmeter.store import connect; connect('chdb://{store}').command('CREATE DATABASE spanmeter')"
    subprocess.run([sys.executable, "-c", create], check=True, timeout=120)
    out = _demo(tmp_path, "--calls", "1", "--data", str(store))
    assert out.returncode == 1
    assert "holds a spanmeter store the demo did not create" in out.stderr and "--data" in out.stderr
    exists = "EXISTS DATABASE spanmeter"
    listed = f"from spanmeter.store import connect; print(connect('chdb://{store}').command('{exists}'))"
    kept = subprocess.run([sys.executable, "-c", listed], capture_output=True, text=True, check=True, timeout=120)
    assert kept.stdout.strip() == "1"  # left as it was
