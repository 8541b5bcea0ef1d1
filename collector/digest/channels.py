"""Sending a digest over the budget processor's channels: email (HTML with the chart inline, and plain
text), Slack (text), webhook (signed JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid

from ..budgets.config import EmailChannelConfig, SlackChannelConfig, WebhookChannelConfig
from ..budgets.notifiers import post_json, send_email
from .content import Digest
from .render import chart_png, render_html, render_json, render_text, subject

__all__ = ["ChannelConfig", "digest_sender", "email_message"]

ChannelConfig = WebhookChannelConfig | SlackChannelConfig | EmailChannelConfig


def email_message(digest: Digest, sender: str, recipients: list[str]) -> EmailMessage:
    """multipart/alternative: the plain text, then the HTML with the chart as a related inline image."""
    message = EmailMessage()
    message["Subject"] = subject(digest)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content(render_text(digest))
    chart_id = make_msgid(domain="spanmeter")
    message.add_alternative(render_html(digest, chart_src=f"cid:{chart_id[1:-1]}"), subtype="html")
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html_part.add_related(chart_png(digest), maintype="image", subtype="png", cid=chart_id, filename="spend.png")
    return message


def digest_sender(config: ChannelConfig, allow_private: bool, event_id: str) -> Callable[[Digest], None]:
    """One attempt at sending a digest on a channel; raises DeliveryError as the budget notifications do."""
    if isinstance(config, EmailChannelConfig):
        return lambda digest: send_email(config, email_message(digest, config.from_, config.to))
    if isinstance(config, SlackChannelConfig):
        return lambda digest: post_json(config, json.dumps({"text": render_text(digest)}).encode(), allow_private)

    def webhook(digest: Digest) -> None:
        body = json.dumps(render_json(digest), separators=(",", ":"), sort_keys=True).encode()
        post_json(config, body, allow_private, event_id)

    return webhook
