"""Email over SMTP: notification messages, daily digests, and sending them with aiosmtplib.

`AGORA_SMTP_URL` is `smtp://user:password@host:port` (STARTTLS when the server offers it,
port 25 unless given) or `smtps://…` (TLS from the first byte, port 465 unless given).
A failed send raises, so the outbox (or the next digest run) tries again: nothing is lost.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from core import runtime
from core.models import Notification, OutboxEvent, User
from core.timeutil import utcnow

if TYPE_CHECKING:
    from moderation.models import Notice

log = logging.getLogger("agora.mail")

SETTINGS_PATH = "/me/notifications/settings"
SEND_TIMEOUT_SECONDS = 30
SUBJECT_MAX = 140


class MailNotConfigured(RuntimeError):
    """No AGORA_SMTP_URL: Agora sends no email, notifications stay in the app."""


@dataclass(frozen=True, slots=True)
class SmtpServer:
    hostname: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool


def smtp_server(url: str) -> SmtpServer:
    """Where and how to send, read from an smtp:// or smtps:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise MailNotConfigured(f"not an smtp:// or smtps:// address: {url!r}")
    implicit_tls = parts.scheme == "smtps"
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return SmtpServer(
        hostname=parts.hostname,
        port=parts.port or (465 if implicit_tls else 25),
        username=username,
        password=password if password is not None or username is None else "",
        implicit_tls=implicit_tls,
    )


def is_configured() -> bool:
    return bool(runtime.settings().smtp_url)


async def send(message: EmailMessage) -> None:
    """Hand one message to the SMTP server; raises when it cannot be sent now."""
    url = runtime.settings().smtp_url
    if not url:
        raise MailNotConfigured("AGORA_SMTP_URL is not set")
    server = smtp_server(url)
    await aiosmtplib.send(
        message,
        hostname=server.hostname,
        port=server.port,
        username=server.username,
        password=server.password,
        use_tls=server.implicit_tls,
        # None: upgrade with STARTTLS whenever the server offers it.
        start_tls=False if server.implicit_tls else None,
        timeout=SEND_TIMEOUT_SECONDS,
    )


# --- building messages --------------------------------------------------------------------


def absolute(link: str) -> str:
    """A link as someone reading the email can follow it."""
    if link.startswith(("http://", "https://")):
        return link
    base = runtime.settings().base_url.rstrip("/")
    return f"{base}/{link.lstrip('/')}" if link else f"{base}/"


def _mail_domain() -> str:
    return urlsplit(runtime.settings().base_url).hostname or "localhost"


def message_id(key: str) -> str:
    """The same Message-ID for every attempt, so a repeated send is recognised as one mail."""
    return f"<agora.{key}@{_mail_domain()}>"


def _one_line(text: str, limit: int) -> str:
    text = " ".join(
        "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text).split()
    )
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _recipient(user: User) -> Address:
    assert user.email
    name = _one_line(user.display_name or user.username, 80)
    local, _, domain = user.email.strip().rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def _message(user: User, *, subject: str, body: str, key: str) -> EmailMessage:
    settings = runtime.settings()
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = _recipient(user)
    message["Subject"] = _one_line(subject, SUBJECT_MAX)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id(key)
    message["List-Unsubscribe"] = f"<{absolute(SETTINGS_PATH)}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


def _footer(reason: str) -> list[str]:
    return [
        "",
        "-- ",
        reason,
        f"Choose which emails you get, or stop them: {absolute(SETTINGS_PATH)}",
    ]


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def notification_email(user: User, notification: Notification) -> EmailMessage:
    """One notification, sent as soon as it happens."""
    lines = [f"Hello {user.display_name},", "", notification.message, ""]
    if notification.link:
        lines.append(f"Open it: {absolute(notification.link)}")
    lines += _footer("You get this email because you chose to hear about this right away.")
    return _message(
        user,
        subject=notification.message,
        body="\n".join(lines) + "\n",
        key=f"notification.{notification.id}",
    )


def moderation_email(user: User, notification: Notification, notice: Notice | None) -> EmailMessage:
    """A moderation notice: what was done, the rule, the reason and how to appeal."""
    lines = [f"Hello {user.display_name},", "", notification.message, ""]
    if notice is not None:
        lines.append(f"When: {_when(notice.created_at)}")
        lines.append(
            "By: an automatic rule (the system)" if notice.automatic else "By: a moderator"
        )
        if notice.rule_code:
            lines.append(
                f"Rule {notice.rule_code}: {notice.rule_text}"
                if notice.rule_text
                else f"Rule: {notice.rule_code}"
            )
        if notice.reason:
            lines.append(f"Reason: {notice.reason}")
        if notice.ends_at is not None:
            lines.append(f"Ends: {_when(notice.ends_at)}")
        if notice.content_excerpt:
            lines += ["", "The content concerned:", f"  {notice.content_excerpt}"]
        lines.append("")
        if notice.appeal_until is not None:
            lines += [
                f"How to appeal: until {_when(notice.appeal_until)} you can ask for a second "
                "look. Open the notice, explain why the decision should change, and someone "
                "other than the person who acted decides:",
                absolute(f"/me/notices/{notice.id}/appeal"),
            ]
        else:
            lines.append("This act cannot be appealed.")
        lines.append("")
    lines.append(
        f"Every moderation act that affects you is on your standing page: "
        f"{absolute('/me/standing')}"
    )
    lines += _footer(
        "Moderation notices always come by email when your account has an address: no one "
        "is sanctioned without being told. They cannot be turned off."
    )
    return _message(
        user,
        subject=f"Moderation notice: {notification.message}",
        body="\n".join(lines) + "\n",
        key=f"notification.{notification.id}",
    )


def digest_email(user: User, notifications: Sequence[Notification]) -> EmailMessage:
    """The day's notifications in one message, newest first."""
    count = len(notifications)
    heading = "1 new notification" if count == 1 else f"{count} new notifications"
    lines = [f"Hello {user.display_name},", "", f"You have {heading}, newest first:", ""]
    for notification in notifications:
        lines.append(f"* {notification.message} ({_when(notification.created_at)})")
        if notification.link:
            lines.append(f"  {absolute(notification.link)}")
    lines += ["", f"All your notifications: {absolute('/notifications')}"]
    lines += _footer("You get this daily digest for the kinds of notification you chose.")
    ids = sorted(n.id for n in notifications)
    return _message(
        user,
        subject=f"Your Agora digest: {heading}",
        body="\n".join(lines) + "\n",
        key=f"digest.{user.id}.{ids[0]}-{ids[-1]}.{count}",
    )


# --- the outbox handler -------------------------------------------------------------------


async def _moderation_notice(notification: Notification, notice_id: int | None) -> Notice | None:
    """The notice behind a moderation notification, for its rule, reason and appeal window."""
    from moderation.models import Notice

    user_id = notification.user_id  # type: ignore[attr-defined]
    if notice_id is not None:
        found = await Notice.get_or_none(id=notice_id, user_id=user_id)
        if found is not None:
            return found
    return (
        await Notice.filter(user_id=user_id, summary=notification.message)
        .order_by("-created_at", "-id")
        .first()
    )


async def email_notification(event: OutboxEvent) -> None:
    """Send one notification by email, unless it already went or is no longer wanted now."""
    from core import notifications

    notification = await Notification.get_or_none(
        id=event.payload["notification_id"]
    ).select_related("user")
    if notification is None or notification.emailed_at is not None:
        return
    user = notification.user
    if not notifications.wants_email_now(user, notification.kind):
        return
    if not is_configured():
        log.info("no SMTP server configured; notification %s stays in-app", notification.id)
        return
    if notifications.category_of(notification.kind) == notifications.MODERATION:
        notice = await _moderation_notice(notification, event.payload.get("notice_id"))
        message = moderation_email(user, notification, notice)
    else:
        message = notification_email(user, notification)
    await send(message)
    await Notification.filter(id=notification.id, emailed_at=None).update(emailed_at=utcnow())


HANDLERS: dict[str, Any] = {"core.email": email_notification}
"""Outbox handlers of the core package."""
