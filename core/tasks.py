"""Outbox handlers of the core package."""

from __future__ import annotations

from core import export, mail
from core.models import Notification, OutboxEvent, User


async def notify(event: OutboxEvent) -> None:
    """Create the in-app notification described by the event, once."""
    payload = event.payload
    user = await User.get_or_none(id=payload["user_id"])
    if user is None:
        return
    await Notification.get_or_create(
        dedupe_key=f"outbox:{event.id}",
        defaults={
            "user": user,
            "kind": payload["kind"],
            "message": payload["message"],
            "link": payload.get("link", ""),
        },
    )


HANDLERS = {"core.notify": notify, **export.HANDLERS, **mail.HANDLERS}
