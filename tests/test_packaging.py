"""The collector's package ships every subpackage and data file: an installed spanmeter (a wheel, the
Docker image) must run as the source tree does."""

from __future__ import annotations

import subprocess
import sys
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


IMPORT_EACH = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "spanmeter" or m.startswith("spanmeter.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed.append(f"{name}: {exc}")
print("\\n".join(failed))
"""


def test_every_module_imports_on_its_own() -> None:
    """Components' config models live in packages whose `__init__` imports the components themselves: a module
    that imports one of them at import time, from deep in that chain, makes a cycle that only shows when the
    module is the first one imported (a CLI command, a test, a script). Each module is imported first, once."""
    modules = sorted(
        "spanmeter." + ".".join(path.relative_to(REPO / "collector").with_suffix("").parts)
        for path in (REPO / "collector").rglob("*.py")
        if path.name != "__init__.py"
    )
    result = subprocess.run([sys.executable, "-c", IMPORT_EACH, *modules], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout
