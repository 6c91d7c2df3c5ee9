"""Outbox handlers of the core package."""

from __future__ import annotations

from core import export, mail, notifications
from core.models import OutboxEvent


async def notify(event: OutboxEvent) -> None:
    """Create the in-app notification described by the event (and its email), once."""
    payload = event.payload
    await notifications.deliver(
        payload["user_id"],
        kind=payload["kind"],
        message=payload["message"],
        link=payload.get("link", ""),
        dedupe_key=f"outbox:{event.id}",
        notice_id=payload.get("notice_id"),
    )


HANDLERS = {"core.notify": notify, **export.HANDLERS, **mail.HANDLERS}
