"""A digest as an email (HTML with a chart image, and plain text), a Slack message, and JSON."""

from __future__ import annotations

import base64
import html
import io
from decimal import Decimal
from typing import Any

from ..budgets.model import format_usd, iso
from .content import Digest

__all__ = ["chart_png", "render_html", "render_json", "render_text", "subject"]

CHART_CID = "spend-chart"
_CURRENT = "#3b6fd8"
_EARLIER = "#b8c6e6"


def subject(digest: Digest) -> str:
    scope = f" {digest.project}" if digest.project else ""
    return f"[spanmeter] spend{scope} {digest.period.label()}: ${format_usd(digest.totals.cost)} ({_change(digest)})"


def chart_png(digest: Digest) -> bytes:
    """Daily spend as bars, the digest's period in the strong colour, rendered by matplotlib (no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 2.4), dpi=100)
    axes = figure.subplots()
    positions = list(range(len(digest.days)))
    costs = [float(point.cost) for point in digest.days]
    colours = [_CURRENT if digest.period.start.date() <= point.day else _EARLIER for point in digest.days]
    axes.bar(positions, costs, color=colours, width=0.8)
    step = max(1, len(positions) // 10)
    axes.set_xticks(positions[::step], [f"{point.day:%d %b}" for point in digest.days[::step]], fontsize=8)
    axes.set_ylabel("USD per day")
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def render_html(digest: Digest, chart_src: str | None = None) -> str:
    """The email's HTML. `chart_src` is where the chart image is (a `cid:` in an email); default: inlined."""
    if chart_src is None:
        chart_src = "data:image/png;base64," + base64.b64encode(chart_png(digest)).decode()
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(subject(digest))}</title></head>",
        "<body style='font-family: Helvetica, Arial, sans-serif; color: #1d2330; max-width: 680px; margin: 24px;'>",
        f"<h1 style='font-size: 20px;'>spanmeter spend digest: {e(digest.period.label())}</h1>",
        f"<p style='color:#5b6478'>{e(_scope(digest))}</p>",
        "<table id='totals' style='border-collapse: collapse; margin-bottom: 16px;'><tr>",
        _stat("Spend (USD)", format_usd(digest.totals.cost), "total-cost"),
        _stat("Previous period", format_usd(digest.previous.cost), "previous-cost"),
        _stat("Change", _change(digest), "change"),
        _stat("Calls", f"{digest.totals.requests:,}", "requests"),
        "</tr></table>",
        f"<img id='chart' src='{e(chart_src, quote=True)}' alt='Daily spend' width='640' height='240'>",
    ]
    if digest.totals.unpriced:
        parts.append(
            f"<p>{digest.totals.unpriced:,} calls used models with no known price: not counted in the spend.</p>"
        )
    parts.append(
        _table(
            "Top movers",
            ["", "", "spend (USD)", "previous", "change"],
            [
                [m.dimension, m.group or "(none)", format_usd(m.cost), format_usd(m.previous_cost), _signed(m.change)]
                for m in digest.movers
            ],
        )
    )
    if digest.budgets:
        parts.append(
            _table(
                "Budgets",
                ["budget", "scope", "spend (USD)", "limit", "used", "projected", "state"],
                [
                    [
                        b.budget,
                        b.scope_value,
                        format_usd(b.spend_usd),
                        format_usd(b.limit_usd),
                        f"{b.percent:.0f}%",
                        format_usd(b.projected_usd),
                        b.state,
                    ]
                    for b in digest.budgets
                ],
            )
        )
    if digest.findings:
        parts.append(
            _table(
                "Findings, by savings",
                ["finding", "scope", "action", "saves (USD/month)"],
                [[f.kind, f.scope, f.action, format_usd(f.savings_usd_per_month)] for f in digest.findings],
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def render_text(digest: Digest) -> str:
    """The plain-text part of the email, and the Slack message."""
    lines = [
        f"spanmeter spend digest: {digest.period.label()} ({_scope(digest)})",
        f"Spend ${format_usd(digest.totals.cost)} against ${format_usd(digest.previous.cost)} "
        f"the period before ({_change(digest)}); {digest.totals.requests:,} calls.",
    ]
    if digest.totals.unpriced:
        lines.append(f"{digest.totals.unpriced:,} calls used models with no known price (not counted).")
    if digest.movers:
        lines.append("Top movers:")
        lines += [
            f"  {m.dimension} {m.group or '(none)'}: ${format_usd(m.cost)} ({_signed(m.change)})" for m in digest.movers
        ]
    if digest.budgets:
        lines.append("Budgets:")
        lines += [
            f"  {b.budget} {b.scope_value}: ${format_usd(b.spend_usd)} of ${format_usd(b.limit_usd)} "
            f"({b.percent:.0f}%), projected ${format_usd(b.projected_usd)}"
            for b in digest.budgets
        ]
    if digest.findings:
        lines.append("Findings, by savings:")
        lines += [
            f"  {f.kind} ({f.scope}): saves ${format_usd(f.savings_usd_per_month)}/month: {f.action}"
            for f in digest.findings
        ]
    return "\n".join(lines) + "\n"


def render_json(digest: Digest) -> dict[str, Any]:
    """The webhook's body: amounts as decimal strings, times in ISO 8601."""
    return {
        "type": "spanmeter.digest",
        "period": {"start": iso(digest.period.start), "end": iso(digest.period.end)},
        "project": digest.project,
        "totals": _money(digest.totals.__dict__),
        "previous": _money(digest.previous.__dict__),
        "movers": [_money({**m.__dict__, "change": m.change}) for m in digest.movers],
        "days": [{"day": p.day.isoformat(), "cost": str(p.cost), "requests": p.requests} for p in digest.days],
        "budgets": [_money({**b.__dict__, "window_end": iso(b.window_end)}) for b in digest.budgets],
        "findings": [_money(f.__dict__) for f in digest.findings],
    }


def _money(values: dict[str, Any]) -> dict[str, Any]:
    return {k: format(v, "f") if isinstance(v, Decimal) else v for k, v in values.items()}


def _scope(digest: Digest) -> str:
    return f"project {digest.project}" if digest.project else "all projects"


def _change(digest: Digest) -> str:
    percent = digest.change_percent
    text = _signed(digest.change)
    return f"{text}, {percent:+}%" if percent is not None else text


def _signed(amount: Decimal) -> str:
    return ("+" if amount >= 0 else "-") + "$" + format_usd(abs(amount))


def _stat(label: str, value: str, element_id: str) -> str:
    return (
        "<td style='padding: 8px 20px 8px 0;'>"
        f"<div style='font-size: 12px; color: #5b6478;'>{html.escape(label)}</div>"
        f"<div id='{element_id}' style='font-size: 22px; font-weight: bold;'>{html.escape(value)}</div></td>"
    )


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return f"<h2 style='font-size: 16px;'>{html.escape(title)}</h2><p>None.</p>"
    cell = "style='padding: 4px 12px 4px 0; border-bottom: 1px solid #e3e7ef; text-align: left;'"
    head = "".join(f"<th {cell}>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td {cell}>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return (
        f"<h2 style='font-size: 16px;'>{html.escape(title)}</h2>"
        f"<table style='border-collapse: collapse;'><tr>{head}</tr>{body}</table>"
    )
