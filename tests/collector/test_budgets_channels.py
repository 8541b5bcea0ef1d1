"""Notification channels against real servers run by the test: email over SMTP with STARTTLS (aiosmtpd,
a certificate made here), a Slack incoming webhook, webhook retries with backoff, and a refused private
target; every delivery's outcome lands in budget_deliveries and the collector's metrics."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from email import message_from_bytes
from pathlib import Path

import pytest

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd (the test's SMTP server) missing")
x509 = pytest.importorskip("cryptography.x509", reason="cryptography (to make the test's TLS certificate) missing")

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from .budget_helpers import budget_overrides, hook_channel, spend, valid_signature, wait_until, webhook_server  # noqa: E402
from .conftest import metric_value, tracer_provider  # noqa: E402


def deliveries(store, database):
    return store.query(
        "SELECT channel, channel_type, outcome, attempts, detail FROM {db:Identifier}.budget_deliveries "
        "ORDER BY delivered_at",
        parameters={"db": database},
    ).result_rows


def certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content, session.ssl is not None))
        return "250 OK"


def test_email_over_starttls(start_collector, store, database, tmp_path):
    cert, key = certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    with socket.socket() as probe:  # aiosmtpd needs the port up front
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = aiosmtpd_controller.Controller(
        mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    smtp.start()
    try:
        channel = {
            "type": "email",
            "host": "127.0.0.1",
            "port": port,
            "ca_file": str(cert),
            "from": "spanmeter@example.com",
            "to": ["finance@example.com", "ops@example.com"],
        }
        budget = {"name": "mail-me", "limit_usd": 10, "thresholds": [50], "channels": ["finance"]}
        collector = start_collector(budget_overrides([budget], {"finance": channel}))
        spend(tracer_provider(collector), 6)
        wait_until(lambda: mailbox.messages, what="an email")
    finally:
        smtp.stop()
    (sender, recipients, content, over_tls) = mailbox.messages[0]
    assert over_tls, "the message was sent before STARTTLS"
    assert (sender, recipients) == ("spanmeter@example.com", ["finance@example.com", "ops@example.com"])
    message = message_from_bytes(content)
    assert message["Subject"] == "[spanmeter] budget mail-me at 50%"
    assert "reached 50%" in message.get_payload()
    wait_until(lambda: deliveries(store, database), what="a delivery row")
    assert deliveries(store, database) == [("finance", "email", "delivered", 1, "")]


def test_slack_incoming_webhook(start_collector):
    with webhook_server() as slack:
        budget = {"name": "slack-me", "limit_usd": 10, "thresholds": [100], "channels": ["team"]}
        collector = start_collector(budget_overrides([budget], {"team": {"type": "slack", "url": slack.url}}))
        spend(tracer_provider(collector), 10, **{"user.id": "u-1"})
        (request,) = slack.wait_for(1)
    text = request.json()["text"]
    assert text.startswith("spanmeter budget 'slack-me' reached 100% (10.00 of 10.00 USD, day window")
    assert list(request.json()) == ["text"]


def test_webhook_retries_with_backoff_then_delivers(start_collector, store, database):
    with webhook_server() as hook:
        hook.statuses = [503, 500]
        budget = {"name": "flaky", "limit_usd": 10, "thresholds": [80], "channels": ["ops"]}
        collector = start_collector(budget_overrides([budget], {"ops": hook_channel(hook, retries=3)}))
        spend(tracer_provider(collector), 9)
        attempts = hook.wait_for(3)
        wait_until(lambda: deliveries(store, database), what="a delivery row")
    assert len({a.body for a in attempts}) == 1 and all(valid_signature(a) for a in attempts)
    assert deliveries(store, database) == [("ops", "webhook", "delivered", 3, "")]
    assert metric_value(collector, "spanmeter_budget_notifications_total", channel="ops", outcome="delivered") == 1


def test_webhook_gives_up_after_its_retries_and_a_4xx_is_not_retried(start_collector, store, database):
    with webhook_server() as down, webhook_server() as gone:
        down.statuses = [500] * 10
        gone.statuses = [404]
        budget = {"name": "b", "limit_usd": 10, "thresholds": [80], "channels": ["down", "gone"]}
        channels = {"down": hook_channel(down, retries=2), "gone": hook_channel(gone, retries=2)}
        collector = start_collector(budget_overrides([budget], channels))
        spend(tracer_provider(collector), 9)
        wait_until(lambda: len(deliveries(store, database)) == 2, what="two delivery rows")
        assert (len(down.requests), len(gone.requests)) == (3, 1)
    assert sorted(deliveries(store, database)) == [
        ("down", "webhook", "failed", 3, "HTTP 500"),
        ("gone", "webhook", "failed", 1, "HTTP 404"),
    ]
    assert metric_value(collector, "spanmeter_budget_notifications_total", channel="down", outcome="failed") == 1


def test_private_target_refused_unless_allowed(start_collector, store, database):
    """`localhost` passes the config check (a name), but it resolves to loopback: refused when sending."""
    with webhook_server() as hook:
        url = hook.url.replace("127.0.0.1", "localhost")
        budget = {"name": "b", "limit_usd": 10, "thresholds": [80], "channels": ["ops"]}
        channels = {"ops": {**hook_channel(hook), "url": url}}
        collector = start_collector(budget_overrides([budget], channels, allow_private_targets=False))
        spend(tracer_provider(collector), 9)
        wait_until(lambda: deliveries(store, database), what="a delivery row")
        assert hook.requests == []
    ((channel, _kind, outcome, attempts, detail),) = deliveries(store, database)
    assert (channel, outcome, attempts) == ("ops", "refused", 1)
    assert "private or loopback" in detail
