"""Suite-wide: chDB allows ONE data directory per process (a second path fails with "EmbeddedServer already
initialized with path ..."). Fixtures named `chdb_path` may be defined by several conftests (tests/collector's,
and the ones tests/grafana re-exports from it); pytest keeps a separate session instance per definition, so every
`chdb_path` of this process is made to resolve to the first one created.

Registered as a global plugin: a conftest's own hooks do not see session-scoped fixtures, which are set up for the
session node, above this directory."""

from __future__ import annotations

from pathlib import Path

import pytest

_SHARED_CHDB_PATH = pytest.StashKey[Path]()


class _OneChdbPath:
    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):  # type: ignore[type-arg]
        result = yield
        if fixturedef.argname == "chdb_path":
            shared = request.config.stash.setdefault(_SHARED_CHDB_PATH, result)
            if shared != result:
                fixturedef.cached_result = (shared, fixturedef.cache_key(request), None)  # type: ignore[arg-type]
                result = shared
        return result


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("spanmeter-one-chdb-path"):
        config.pluginmanager.register(_OneChdbPath(), "spanmeter-one-chdb-path")
