"""What the commands share: finding and loading the config, logging, errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..config import Config, ConfigError, load_config

DEFAULT_CONFIG = "pipelines.yaml"
EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get("SPANMETER_CONFIG", DEFAULT_CONFIG),
        help="pipelines file (default: $SPANMETER_CONFIG or ./pipelines.yaml)",
    )


def load_or_exit(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"spanmeter: configuration error\n{exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(message: str, code: int = EXIT_RUNTIME) -> int:
    print(f"spanmeter: {message}", file=sys.stderr)
    return code
