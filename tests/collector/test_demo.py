"""`spanmeter demo`, run as a newcomer runs it: a fresh process, a fresh store, a non-empty report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .conftest import REPO
from .test_durability import spanmeter_command


def test_demo_prints_a_report_of_what_it_sent(tmp_path: Path) -> None:
    data = tmp_path / "demo-store"
    command = [spanmeter_command(), "demo", "--calls", "300", "--data", str(data)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "stored 3" in out.stderr  # every call: "stored 3xx GenAI spans"
    for model in ("gpt-4o-2024-08-06", "claude-sonnet-4-5", "o3-mini", "gemini-2.5-flash", "acme-llm-7b"):
        assert model in out.stdout
    assert "Spend by feature" in out.stdout
    assert "no known price" in out.stdout

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
    assert statuses["priced"] > 200
    assert statuses["unpriced"] > 0
    assert sum(statuses.values()) == 300
