"""The spend digest: its periods, its content read from spans sent through the real SDK, sent once per period
by two collectors on one store, an email with an HTML part, an inline chart and a plain-text part (real SMTP
server), the preview CLI against a running collector, and the config's errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path

import numpy as np
import pytest
import yaml
from aiosmtpd import controller as aiosmtpd_controller

from spanmeter.config import ConfigError
from spanmeter.digest import DigestConfig, DigestPeriod, latest_due
from spanmeter.digest.channels import email_message
from spanmeter.digest.content import build_digest
from spanmeter.service import Collector, CollectorThread

from .budget_helpers import budget_overrides, hook_channel, spend, wait_until, webhook_server
from .conftest import deep_merge, http_request, tracer_provider, wait_for_rows

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
YESTERDAY = TODAY - timedelta(days=1)
DAY_BEFORE = TODAY - timedelta(days=2)
# service -> (USD spent the day before yesterday, USD spent yesterday), one span per dollar amount
SPEND = {"chat-api": ([1], [2, 1]), "search": ([2], [1])}


@pytest.mark.parametrize(
    ("settings", "now", "start", "end"),
    [
        ({"schedule": "daily", "at": "08:00"}, "2026-12-02T08:00", "2026-12-01", "2026-12-02"),
        ({"schedule": "daily", "at": "08:00"}, "2026-12-02T07:59", "2026-11-30", "2026-12-01"),
        # 2026-12-07 is a Monday: the weekly digest due then covers the Monday to Sunday before
        ({"schedule": "weekly", "weekday": "monday"}, "2026-12-07T09:00", "2026-11-30", "2026-12-07"),
        ({"schedule": "weekly", "weekday": "monday"}, "2026-12-07T07:00", "2026-11-23", "2026-11-30"),
        ({"schedule": "weekly", "weekday": "friday"}, "2026-12-07T09:00", "2026-11-27", "2026-12-04"),
    ],
)
def test_the_period_a_digest_covers(settings, now, start, end):
    period = latest_due(DigestConfig(**settings), datetime.fromisoformat(now).replace(tzinfo=UTC))
    assert (period.start, period.end) == (
        datetime.fromisoformat(start).replace(tzinfo=UTC),
        datetime.fromisoformat(end).replace(tzinfo=UTC),
    )
    assert period.previous.end == period.start and period.previous.length == period.length


def send_spend(collector) -> int:
    """The SPEND table's spans at noon of their days, through the SDK; returns how many."""
    sent = 0
    for service, days in SPEND.items():
        provider = tracer_provider(collector, resource={"service.name": service})
        for day, amounts in zip((DAY_BEFORE, YESTERDAY), days, strict=True):
            for usd in amounts:
                spend(provider, usd, start=day + timedelta(hours=12))
                sent += 1
    return sent


def digest_extension(channels: list[str], **settings) -> dict:
    body = {"schedule": "daily", "at": "00:00", "channels": channels, "check_interval": "1h", **settings}
    return {"extensions": {"spanmeter_digest": body}, "service": {"extensions": ["spanmeter_digest"]}}


@pytest.fixture(scope="module")
def spent(start_module_collector: Callable[..., Collector]) -> Collector:
    """One collector with SPEND stored, for the tests that only read it (its database: `store_config.database`)."""
    collector = start_module_collector(budget_overrides([]))
    wait_for_rows(collector, send_spend(collector))
    return collector


def test_content_from_the_store(spent, store):
    period = DigestPeriod(YESTERDAY, TODAY)
    digest = build_digest(store, spent.store_config.database, period, top=4)
    assert (digest.totals.cost, digest.previous.cost) == (Decimal(4), Decimal(3))
    assert (digest.totals.requests, digest.previous.requests) == (3, 2)
    assert digest.change == 1 and digest.change_percent == Decimal("33.3")
    # the largest moves first, either way: chat-api +2, search -1 (the model, and the untagged feature, +1 in all)
    assert [(m.dimension, m.group, m.change) for m in digest.movers] == [
        ("service", "chat-api", 2),
        ("feature", "", 1),
        ("model", "budget-model", 1),
        ("service", "search", -1),
    ]
    by_day = {point.day: point.cost for point in digest.days}
    assert by_day[YESTERDAY.date()] == 4 and by_day[DAY_BEFORE.date()] == 3
    assert len(digest.days) == 14 and sum(by_day.values()) == 7


def test_two_collectors_send_the_digest_once(make_config, store, database, tmp_path):
    with webhook_server() as hook:
        overrides = deep_merge(budget_overrides([], {"ops": hook_channel(hook)}), digest_extension(["ops"]))
        configs = [
            make_config(deep_merge(overrides, {"exporters": {"clickhouse": {"queue": {"directory": str(wal)}}}}))
            for wal in (tmp_path / "wal-a", tmp_path / "wal-b")
        ]
        threads = [CollectorThread(config) for config in configs]
        a, b = (thread.start() for thread in threads)
        try:
            wait_for_rows(a, send_spend(a))
            sent = {}
            checks = [threading.Thread(target=lambda c=c: sent.__setitem__(c, c.digests[0].check())) for c in (a, b)]
            for check in checks:
                check.start()
            for check in checks:
                check.join()
            assert sum(digest is not None for digest in sent.values()) == 1, sent
            (request,) = hook.wait_for(1)
            body = request.json()
            assert body["type"] == "spanmeter.digest"
            assert (Decimal(body["totals"]["cost"]), Decimal(body["previous"]["cost"])) == (4, 3)
            assert body["period"]["start"].startswith(YESTERDAY.date().isoformat())
            # checking again in the same period sends nothing, from either collector
            assert a.digests[0].check() is None and b.digests[0].check() is None
            assert len(hook.requests) == 1
        finally:
            for thread in threads:
                thread.stop()
    rows = store.query(
        "SELECT outcome, channel, collector_id FROM {db:Identifier}.digest_deliveries ORDER BY recorded_at",
        parameters={"db": database},
    ).result_rows
    outcomes = [row[0] for row in rows]
    assert outcomes.count("delivered") == 1 and set(outcomes) == {"claimed", "delivered"}


def test_the_scheduler_sends_by_itself(start_collector):
    with webhook_server() as hook:
        overrides = deep_merge(
            budget_overrides([], {"ops": hook_channel(hook)}), digest_extension(["ops"], check_interval="300ms")
        )
        start_collector(overrides)
        (request,) = hook.wait_for(1, timeout=15)
    assert request.json()["period"]["end"].startswith(TODAY.date().isoformat())


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content)
        return "250 OK"


def test_email_has_text_html_and_the_chart_inline(start_collector, store, database):
    mailbox = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = aiosmtpd_controller.Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        channel = {"type": "email", "host": "127.0.0.1", "port": port, "starttls": False, "from": "s@example.com",
                   "to": ["finance@example.com"]}  # fmt: skip
        collector = start_collector(deep_merge(budget_overrides([], {"mail": channel}), digest_extension(["mail"])))
        wait_for_rows(collector, send_spend(collector))
        assert collector.digests[0].check() is not None
        wait_until(lambda: mailbox.messages, what="an email")
    finally:
        smtp.stop()
    message = message_from_bytes(mailbox.messages[0], policy=policy.default)
    assert message["Subject"].startswith("[spanmeter] spend ") and "$4.00" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Spend $4.00 against $3.00 the period before (+$1.00, +33.3%)" in text
    html_part = message.get_body(preferencelist=("html",))
    html = html_part.get_content()
    (image,) = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert image.get_payload(decode=True).startswith(b"\x89PNG")
    assert f"src='cid:{image['Content-ID'].strip('<>')}'" in html
    assert ">4.00<" in html and ">3.00<" in html


def test_email_message_is_independent_of_the_channel():
    """The MIME structure alone: alternative(text, related(html, png)), so clients without HTML read text."""
    period = DigestPeriod(YESTERDAY, TODAY)
    from spanmeter.digest.content import Digest, Totals

    digest = Digest(period, "", Totals(Decimal(2), 1, 10, 0), Totals(Decimal(0), 0, 0, 0), [], [])
    message = email_message(digest, "a@example.com", ["b@example.com"])
    assert [part.get_content_type() for part in message.walk()] == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ]


def test_preview_through_the_collector_holding_the_store(spent, tmp_path):
    """`spanmeter digest --preview` in another process: the collector holds the embedded store, so the command
    asks its API; the file is the email's HTML with the chart inlined."""
    collector = spent
    config_file = tmp_path / "preview.yaml"
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines.yaml").read_text())
    raw["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = f"127.0.0.1:{collector.http_port}"
    raw["exporters"]["clickhouse"]["endpoint"] = collector.store_config.endpoint
    raw["exporters"]["clickhouse"]["database"] = collector.store_config.database
    config_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "digest.html"
    command = [str(Path(sys.executable).with_name("spanmeter")), "digest", "--config", str(config_file)]
    command += ["--schedule", "daily", "--preview", str(out)]
    # The daily digest due is sent at 08:00 UTC by default: before then it is still the one of the day before.
    due = latest_due(DigestConfig(schedule="daily"), datetime.now(UTC))
    total = {YESTERDAY: ">4.00<", DAY_BEFORE: ">3.00<"}[due.start]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert "src='data:image/png;base64," in html and "<td" in html
    assert "id='total-cost'" in html and total in html
    # The database asked for is the one read (--database sends it): here one that does not exist.
    missing = f"{collector.store_config.database}_none"
    status, _, body = http_request(collector, f"/v1/digest?schedule=daily&database={missing}")
    assert status == 400 and missing in body.decode(), body
    status, _, body = http_request(collector, "/v1/digest?schedule=daily&scope=team-a")
    assert status == 400 and "unknown parameter scope" in body.decode(), body


def test_unknown_channel_is_named(make_config):
    with pytest.raises(ConfigError) as error:
        make_config(deep_merge(budget_overrides([]), digest_extension(["nowhere"])))
    assert "extensions.spanmeter_digest.channels[0]" in str(error.value) or "channels.0" in str(error.value)
    assert "nowhere" in str(error.value)


CHROMIUM = Path("/usr/bin/chromium")


def test_the_html_renders_in_chromium_with_chart_and_totals(spent, store, tmp_path):
    """The preview opened in headless Chromium: the chart image decodes and is drawn (its bars' colour is in the
    screenshot where the image is), and the totals are on screen with the stored amounts."""
    from playwright import sync_api  # in the test extra; imported here, as only this test drives a browser

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make test installs it where apt-get can)")
    from PIL import Image

    from spanmeter.digest.render import render_html

    page_file = tmp_path / "digest.html"
    page_file.write_text(render_html(build_digest(store, spent.store_config.database, DigestPeriod(YESTERDAY, TODAY))))
    shot = tmp_path / "digest.png"
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        page = browser.new_page(viewport={"width": 800, "height": 900})
        page.goto(page_file.as_uri())
        assert page.eval_on_selector("#chart", "img => img.complete && img.naturalWidth") == 640
        totals = {name: page.inner_text(f"#{name}") for name in ("total-cost", "previous-cost", "change", "requests")}
        chart_box = page.locator("#chart").bounding_box()
        total_box = page.locator("#total-cost").bounding_box()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert totals == {"total-cost": "4.00", "previous-cost": "3.00", "change": "+$1.00, +33.3%", "requests": "3"}
    image = Image.open(shot).convert("RGB")

    def colours(box) -> set[tuple[int, int, int]]:
        left, top = int(box["x"]), int(box["y"])
        region = image.crop((left, top, left + int(box["width"]), top + int(box["height"])))
        return {tuple(pixel) for pixel in np.asarray(region).reshape(-1, 3).tolist()}

    chart = colours(chart_box)
    assert (0x3B, 0x6F, 0xD8) in chart, "the period's bars are not drawn where the chart is"
    assert (0xB8, 0xC6, 0xE6) in chart, "the earlier days' bars are not drawn"
    assert any(sum(pixel) < 200 for pixel in colours(total_box)), "the total is not drawn on screen"
