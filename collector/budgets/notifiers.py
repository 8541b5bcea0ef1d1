"""Notification channels: webhook (signed JSON), Slack incoming webhook, email over SMTP with STARTTLS.

Each `send` makes one attempt and raises `DeliveryError` (retryable or not); `deliver` retries
with backoff and returns the outcome. HTTP targets on private, loopback or link-local addresses
are refused unless `allow_private_targets` is set, and redirects are never followed (a redirect
could point inside the network). Secrets and passwords are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from typing import TypeVar
from urllib.parse import urlsplit

from .config import EmailChannelConfig, SlackChannelConfig, WebhookChannelConfig
from .model import Crossing

__all__ = [
    "SIGNATURE_HEADER",
    "DeliveryError",
    "Notifier",
    "deliver",
    "make_notifier",
    "post_json",
    "send_email",
    "sign",
]

SIGNATURE_HEADER = "X-Spanmeter-Signature"
EVENT_HEADER = "X-Spanmeter-Event-Id"
_USER_AGENT = "spanmeter-budgets/1"

T = TypeVar("T")


class DeliveryError(Exception):
    def __init__(self, message: str, retryable: bool = True, outcome: str = "failed") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.outcome = outcome


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def check_target(url: str, allow_private: bool) -> None:
    """Refuse a URL whose host resolves to a non-public address (unless allowed)."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP
        )
    except OSError as exc:
        raise DeliveryError(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            raise DeliveryError(
                f"{host} resolves to {address}, a private or loopback address; refused "
                "(set processors.budget.allow_private_targets to allow)",
                retryable=False,
                outcome="refused",
            )


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool) -> None:
    check_target(url, allow_private)
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"User-Agent": _USER_AGENT, "Content-Type": "application/json", **headers},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        retryable = exc.code >= 500 or exc.code in (408, 429)
        raise DeliveryError(f"HTTP {exc.code}", retryable=retryable) from None
    except (OSError, urllib.error.URLError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
    except ValueError as exc:  # http.client.InvalidURL and urllib's "unknown url type" repeat the URL: not said
        raise DeliveryError(f"{type(exc).__name__}: the channel's URL cannot be requested", retryable=False) from None


Notifier = Callable[[Crossing], None]


def make_notifier(
    config: WebhookChannelConfig | SlackChannelConfig | EmailChannelConfig, allow_private: bool
) -> Notifier:
    if isinstance(config, WebhookChannelConfig):

        def webhook(crossing: Crossing) -> None:
            body = json.dumps(crossing.payload(), separators=(",", ":"), sort_keys=True).encode()
            post_json(config, body, allow_private, crossing.event_id)

        return webhook
    if isinstance(config, SlackChannelConfig):

        def slack(crossing: Crossing) -> None:
            post_json(config, json.dumps({"text": crossing.summary()}).encode(), allow_private)

        return slack

    def email(crossing: Crossing) -> None:
        message = EmailMessage()
        message["Subject"] = f"[spanmeter] budget {crossing.budget.name} at {crossing.threshold}%"
        message["From"] = config.from_
        message["To"] = ", ".join(config.to)
        message["Message-ID"] = f"<{crossing.event_id}@spanmeter>"
        message.set_content(crossing.summary() + "\n\n" + json.dumps(crossing.payload(), indent=2) + "\n")
        send_email(config, message)

    return email


def post_json(
    config: WebhookChannelConfig | SlackChannelConfig, body: bytes, allow_private: bool, event_id: str = ""
) -> None:
    """One POST to a webhook (signed, with the event id) or a Slack incoming webhook."""
    headers: dict[str, str] = {}
    if isinstance(config, WebhookChannelConfig):
        headers = {**config.headers, SIGNATURE_HEADER: sign(config.secret, body), EVENT_HEADER: event_id}
    _post(config.url, body, headers, config.timeout, allow_private)


def send_email(config: EmailChannelConfig, message: EmailMessage) -> None:
    """Send one message over SMTP (STARTTLS unless turned off); a 4xx answer is worth retrying, a 5xx not."""
    try:
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout) as smtp:
            smtp.ehlo()
            if config.starttls:
                context = ssl.create_default_context(cafile=config.ca_file)
                smtp.starttls(context=context)
                smtp.ehlo()
            if config.username:
                smtp.login(config.username, config.password)
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP {exc.smtp_code}", retryable=exc.smtp_code >= 400 and exc.smtp_code < 500) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None


def deliver(
    notifier: Callable[[T], None], message: T, retries: int, backoff: float, stop: Callable[[float], bool]
) -> tuple[str, int, str]:
    """Send with retries; (outcome, attempts, detail). `stop(seconds)` waits and says whether to give up."""
    delay = backoff
    attempts = 0
    while True:
        attempts += 1
        try:
            notifier(message)
        except DeliveryError as exc:
            if not exc.retryable or attempts > retries or stop(delay):
                return exc.outcome, attempts, str(exc)
            delay *= 2
            continue
        return "delivered", attempts, ""
