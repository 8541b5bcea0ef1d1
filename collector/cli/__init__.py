"""The `spanmeter` command: serve, report, forecast, findings, calls, tail, top, digest, demo, budget, block,
rejected, keys."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import budget, calls, demo, digest, findings, forecast, keys, rejected, report, serve, tail, top
from .common import CommandError, fail

__all__ = ["main"]

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spanmeter",
        description="OpenTelemetry-native LLM cost pipeline: price, tag and store GenAI spans in ClickHouse.",
    )
    parser.add_argument("--version", action="version", version=f"spanmeter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (serve, report, forecast, findings, calls, tail, top, digest, demo, budget, rejected, keys):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CommandError as exc:
        return fail(str(exc), exc.code)


if __name__ == "__main__":
    sys.exit(main())
