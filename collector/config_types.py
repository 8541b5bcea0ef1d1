"""What every component's config model uses: its base model, an error naming a key, durations and day counts.

Kept apart from `config.py` so a component can define its own config model next to its code and
`config.py` can import it to wire the file together, without an import cycle.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

__all__ = ["Days", "KeyedError", "Seconds", "StrictModel", "parse_duration"]


class StrictModel(BaseModel):
    """A section of pipelines.yaml: an unknown key is an error (a typo is not silently ignored); frozen once
    loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyedError(ValueError):
    """Carries a key path out of pydantic's validators so the message can name it."""

    def __init__(self, path: tuple[Any, ...], detail: str | ValidationError) -> None:
        super().__init__(str(detail))
        self.path = path
        self.detail = detail


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> object:
    """Accept Collector-style durations (`500ms`, `1s`, `5m`, `1h`, `30d`) or a number of seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"expected a duration such as 500ms, 1s, 5m, 1h or 30d, got {value!r}")
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]

_DAYS = re.compile(r"^\s*(\d+)\s*([dhw]?)\s*$")


def _parse_days(value: object) -> object:
    """A retention: `400d`, `2w`, `72h` (whole days: TTLs are set in days) or a number of days; 0 keeps forever."""
    if isinstance(value, str):
        match = _DAYS.match(value)
        if not match:
            raise ValueError(f"expected a number of days such as 30d, 2w or 72h, got {value!r}")
        number, unit = int(match.group(1)), match.group(2)
        if unit == "h" and number % 24:
            raise ValueError(f"expected whole days, got {value!r}")
        return number * 7 if unit == "w" else number // 24 if unit == "h" else number
    return value


Days = Annotated[int, BeforeValidator(_parse_days), Field(ge=0, le=36500)]
