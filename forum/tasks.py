"""Outbox handlers of the forum package."""

from __future__ import annotations

from collections.abc import Sequence

from core import notifications
from core.models import OutboxEvent
from forum.models import ANONYMOUS_LABEL, Post, Subscription


async def notify_replies(events: Sequence[OutboxEvent]) -> None:
    """Tell each subscriber of a thread, except the one who replied, once per event.

    A whole batch of replies costs a few queries: the posts with their threads and courses,
    the threads' subscribers, and the notifications (core.notifications.deliver_many).
    """
    post_ids = sorted({int(e.payload["post_id"]) for e in events})
    posts = {
        p.id: p
        for p in await Post.filter(id__in=post_ids, deleted_at=None).select_related(
            "author", "thread__course"
        )
    }
    thread_ids = sorted({p.thread_id for p in posts.values()})  # type: ignore[attr-defined]
    subscribers: dict[int, list[int]] = {}
    for thread_id, user_id in await Subscription.filter(thread_id__in=thread_ids).values_list(
        "thread_id", "user_id"
    ):
        subscribers.setdefault(int(thread_id), []).append(int(user_id))
    outgoing: list[notifications.Outgoing] = []
    for event in events:
        post = posts.get(int(event.payload["post_id"]))
        if post is None:
            continue
        thread = post.thread
        # The notice goes to learners too, so an anonymous author stays anonymous in it.
        author = post.author
        who = ANONYMOUS_LABEL if post.is_anonymous or author is None else author.display_name
        message = f"{who} replied in “{thread.title}”."
        link = f"/courses/{thread.course.slug}/threads/{thread.id}#post-{post.id}"
        for user_id in subscribers.get(thread.id, []):
            if user_id == post.author_id:  # type: ignore[attr-defined]
                continue
            outgoing.append(
                notifications.Outgoing(
                    user_id=user_id,
                    kind="reply",
                    message=message,
                    link=link,
                    dedupe_key=f"outbox:{event.id}:{user_id}",
                )
            )
    await notifications.deliver_many(outgoing)


async def notify_reply(event: OutboxEvent) -> None:
    """Tell each subscriber of the thread, except the one who replied, once per event."""
    await notify_replies([event])


HANDLERS = {"forum.reply": notify_reply}
BATCH_HANDLERS = {"forum.reply": notify_replies}
