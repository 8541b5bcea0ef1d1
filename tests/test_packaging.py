"""The collector's package ships every subpackage and data file: an installed spanmeter (a wheel, the
Docker image) must run as the source tree does."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_collector_subpackage_is_listed_in_pyproject() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {
        "spanmeter" + "".join(f".{part}" for part in init.parent.relative_to(REPO / "collector").parts)
        for init in (REPO / "collector").rglob("__init__.py")
    }
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"
    assert {"spanmeter.schema", "spanmeter.queries"} <= listed
    data = setuptools["package-data"]
    assert data["spanmeter.schema"] == ["*.sql"] and data["spanmeter.queries"] == ["*.sql"]
