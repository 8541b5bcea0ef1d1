"""Findings: where money goes to waste and what to do about it, computed from the stored spans.

Each kind is a small named rule (its own module: SQL over `genai_spans` in a `.sql` file beside it, and
genai-prices where a what-if price is needed) with its thresholds under `findings:` in pipelines.yaml.
This package's `__init__` imports only the config model and the finding itself, so that `config.py` can wire
the section without importing the store.
"""

from __future__ import annotations

from .config import FindingsConfig
from .model import Finding

__all__ = ["Finding", "FindingsConfig"]
