"""Outbox handlers of the forum package."""

from __future__ import annotations

from core import notifications
from core.models import Course, OutboxEvent
from forum.models import ANONYMOUS_LABEL, Post, Subscription, Thread


async def notify_reply(event: OutboxEvent) -> None:
    """Tell each subscriber of the thread, except the one who replied, once per event."""
    post = await Post.get_or_none(id=event.payload["post_id"]).select_related("author")
    if post is None or post.is_deleted:
        return
    thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
    course = await Course.get(id=thread.course_id)  # type: ignore[attr-defined]
    # The notice goes to learners too, so an anonymous author stays anonymous in it.
    who = ANONYMOUS_LABEL if post.is_anonymous or post.author is None else post.author.display_name
    subscribers = await Subscription.filter(thread_id=thread.id).values_list("user_id", flat=True)
    for user_id in subscribers:
        if user_id == post.author_id:  # type: ignore[attr-defined]
            continue
        await notifications.deliver(
            int(user_id),  # type: ignore[call-overload]
            kind="reply",
            message=f"{who} replied in “{thread.title}”.",
            link=f"/courses/{course.slug}/threads/{thread.id}#post-{post.id}",
            dedupe_key=f"outbox:{event.id}:{user_id}",
        )


HANDLERS = {"forum.reply": notify_reply}
