"""`spanmeter forecast`: spend to the end of the month, per service, model or feature and in total, and each
budget's spend at the end of its window, with a 90 % band, from the daily spend with its weekday rhythm.

It reads the store directly; when a running collector holds the embedded store, it asks that collector's API.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from decimal import Decimal

from ..forecast import BAND, BY, Forecast, ForecastReport, ForecastRequest, parse_forecast_by, run_forecast
from .common import EXIT_CONFIG, add_config_argument, add_store_arguments, fail, get_json, load_or_exit, read_store

__all__ = ["register", "render", "run"]

FORMATS = ("table", "json")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "forecast", help="spend forecast to month end and budget window ends", description=__doc__
    )
    add_config_argument(parser)
    parser.add_argument("--by", default="total", help=f"also per {', '.join(b for b in BY if b != 'total')}")
    parser.add_argument("--project", default="", help="only this project")
    parser.add_argument("--format", choices=FORMATS, default="table")
    add_store_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        request = ForecastRequest(parse_forecast_by(args.by, "--by"), args.project)
    except ValueError as exc:
        return fail(str(exc), EXIT_CONFIG)
    report = read_store(
        args,
        load_or_exit(args.config),
        local=lambda client, database: run_forecast(client, database, request),
        remote=lambda base, database: fetch_forecast(base, request),
        what="forecast",
    )
    sys.stdout.write(render(report, args.format))
    return 0


def fetch_forecast(base_url: str, request: ForecastRequest) -> ForecastReport:
    query = urllib.parse.urlencode({"by": request.by, "project": request.project})
    return ForecastReport.from_json(get_json(f"{base_url.rstrip('/')}/v1/forecast?{query}"))


def render(report: ForecastReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2) + "\n"
    band = f"{BAND:.0%}"
    out = []
    if report.month:
        first = report.month[0]
        out.append(f"Spend to the end of the month, {first.start:%Y-%m-%d} .. {first.end:%Y-%m-%d} UTC ({band} band)")
        out += _table(
            [report.by if report.by != "total" else "scope"],
            [[item.scope] for item in report.month],
            report.month,
            band,
        )
    if report.budgets:
        out.append("")
        out.append(f"Budgets at the end of their window ({band} band)")
        out += _table(
            ["budget", "scope", "window end", "limit"],
            [
                [b.budget, b.scope_value or "-", f"{b.forecast.end:%Y-%m-%d %H:%M}", _usd(b.limit)]
                for b in report.budgets
            ],
            [b.forecast for b in report.budgets],
            band,
        )
    notes = dict.fromkeys(item.note for item in [*report.month, *(b.forecast for b in report.budgets)] if item.note)
    out += [f"note: {note}" for note in notes]
    return "\n".join(out) + "\n"


def _table(head: list[str], lead: list[list[str]], items: list[Forecast], band: str) -> list[str]:
    header = [*head, "spent", "forecast", f"low ({band})", f"high ({band})", "method"]
    body = [
        [*cells, _usd(item.spent), _usd(item.expected), _usd(item.low), _usd(item.high), item.method]
        for cells, item in zip(lead, items, strict=True)
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    left = len(head)

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left or i == len(cells) - 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), "-" * len(line(header)), *(line(row) for row in body)]


def _usd(value: Decimal) -> str:
    return f"{value:,.2f}"
