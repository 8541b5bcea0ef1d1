"""Budget configuration: bad budgets fail loading (and `spanmeter serve` exits 2) with a message naming
the key; the secret comes from the environment and is never shown; the shipped example parses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from spanmeter.config import BudgetProcessorConfig, ConfigError, load_config

from .budget_helpers import budget_overrides
from .test_config import serve, write_config

GOOD = {"name": "b", "limit_usd": 10}
HOOK = {"type": "webhook", "url": "https://hooks.example.com/x", "secret": "s"}
P = "processors.budget"

BAD = {
    "unknown-scope-key": (
        [{**GOOD, "scope": {"team": "growth"}}],
        {},
        f"{P}.budgets[0].scope: Value error, unknown scope key 'team'; expected one of project, service",
    ),
    "negative-limit": ([{**GOOD, "limit_usd": -5}], {}, f"{P}.budgets[0].limit_usd: Input should be greater than 0"),
    "threshold-out-of-range": (
        [{**GOOD, "thresholds": [80, 1200]}],
        {},
        f"{P}.budgets[0].thresholds[1]: Input should be less than or equal to 1000",
    ),
    "zero-threshold": ([{**GOOD, "thresholds": [0]}], {}, f"{P}.budgets[0].thresholds[0]: Input should be greater"),
    "unknown-channel": (
        [{**GOOD, "channels": ["ops", "pager"]}],
        {"ops": HOOK},
        f"{P}.budgets[0].channels[1]: unknown channel 'pager' (declared under channels: ['ops'])",
    ),
    "bad-window": ([{**GOOD, "window": "week"}], {}, f"{P}.budgets[0].window: Value error, expected day, month"),
    "bad-action": ([{**GOOD, "action": "stop"}], {}, f"{P}.budgets[0].action: Input should be 'notify' or 'block'"),
    "duplicate-name": ([GOOD, GOOD], {}, f"{P}.budgets[1].name: duplicate budget name 'b'"),
    "missing-limit": ([{"name": "b"}], {}, f"{P}.budgets[0].limit_usd: required key is missing"),
    "unknown-budget-key": ([{**GOOD, "limit": 3}], {}, f"{P}.budgets[0].limit: unknown key"),
    "webhook-without-secret": ([GOOD], {"ops": {**HOOK, "secret": ""}}, f"{P}.channels.ops.webhook.secret:"),
    "unknown-channel-type": ([GOOD], {"ops": {"type": "pager"}}, f"{P}.channels.ops: Input tag 'pager'"),
    "loopback-webhook": (
        [GOOD],
        {"ops": {**HOOK, "url": "http://127.0.0.1:9000/x"}},
        f"{P}.channels.ops.url: targets a private or loopback address; refused unless allow_private_targets",
    ),
}


def overrides(budgets, channels, **settings):
    raw = budget_overrides(budgets, channels, **settings)
    raw["processors"]["budget"]["allow_private_targets"] = False
    return raw


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_budget_config_names_the_key(tmp_path: Path, case: str) -> None:
    budgets, channels, message = BAD[case]
    path = write_config(tmp_path, overrides(budgets, channels))
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert f"{path}: {message}" in str(raised.value)


@pytest.mark.parametrize("case", ["unknown-scope-key", "negative-limit", "threshold-out-of-range", "unknown-channel"])
def test_serve_exits_2_on_a_bad_budget(tmp_path: Path, case: str) -> None:
    budgets, channels, message = BAD[case]
    result = serve(write_config(tmp_path, overrides(budgets, channels)))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_secret_from_the_environment_is_not_shown(tmp_path: Path) -> None:
    hook = {**HOOK, "secret": "${env:HOOK_SECRET}"}
    path = write_config(tmp_path, overrides([{**GOOD, "channels": ["ops"]}], {"ops": hook}))
    config = load_config(path, env={"HOOK_SECRET": "hunter2-very-secret"})
    budget: BudgetProcessorConfig = config.processors["budget"]
    assert budget.channels["ops"].secret == "hunter2-very-secret"
    assert "hunter2" not in repr(config)
    with pytest.raises(ConfigError, match=r"channels\.ops\.secret: environment variable HOOK_SECRET is not set"):
        load_config(path, env={})
    allowed = write_config(tmp_path, overrides([GOOD], {"ops": {**HOOK, "url": "http://10.0.0.7/x"}}))
    raw = yaml.safe_load(allowed.read_text())
    raw["processors"]["budget"]["allow_private_targets"] = True
    allowed.write_text(yaml.safe_dump(raw))
    assert load_config(allowed, env={}).processors["budget"].allow_private_targets


def test_the_commented_example_in_the_shipped_file_is_valid(tmp_path: Path) -> None:
    """pipelines.yaml carries a commented `budget` example; uncommented, it loads."""
    text = (Path(__file__).resolve().parents[2] / "pipelines.yaml").read_text()
    block = re.search(r"^  # budget:\n((?:  #.*\n)+)", text, re.MULTILINE)
    assert block, "no commented budget example in pipelines.yaml"
    example = yaml.safe_load("budget:\n" + re.sub(r"^  # ?", "", block.group(1), flags=re.MULTILINE))
    config = BudgetProcessorConfig.model_validate(example["budget"])
    assert config.budgets and config.channels
