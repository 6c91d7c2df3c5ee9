"""The forum section of a data export: posts with every version, threads, votes, follows, visits.

Other people appear only as pseudonyms; the author of someone else's anonymous post is never
named, not even by pseudonym.
"""

from __future__ import annotations

from typing import Any

from core.export import ExportContext
from core.models import Course
from forum.models import (
    ANONYMOUS_LABEL,
    DELETED_USER_LABEL,
    Forum,
    Post,
    Revision,
    Subscription,
    Thread,
    ThreadVisit,
    Vote,
)


class _Places:
    """Threads, forums and courses by id, loaded once for the whole section."""

    def __init__(self) -> None:
        self.threads: dict[int, Thread] = {}
        self.forums: dict[int, Forum] = {}
        self.courses: dict[int, Course] = {}

    async def load(self, thread_ids: set[int]) -> None:
        missing = thread_ids - set(self.threads)
        if missing:
            for thread in await Thread.filter(id__in=list(missing)):
                self.threads[thread.id] = thread
        forum_ids = {t.forum_id for t in self.threads.values()} - set(self.forums)  # type: ignore[attr-defined]
        if forum_ids:
            for forum in await Forum.filter(id__in=list(forum_ids)):
                self.forums[forum.id] = forum
        course_ids = {t.course_id for t in self.threads.values()} - set(self.courses)  # type: ignore[attr-defined]
        if course_ids:
            for course in await Course.filter(id__in=list(course_ids)):
                self.courses[course.id] = course

    def where(self, thread_id: int) -> dict[str, Any]:
        """Where a thread is: its title, forum and course."""
        thread = self.threads[thread_id]
        forum = self.forums[thread.forum_id]  # type: ignore[attr-defined]
        course = self.courses[thread.course_id]  # type: ignore[attr-defined]
        return {
            "thread_id": thread.id,
            "thread_title": thread.title,
            "forum_id": forum.id,
            "forum_title": forum.title,
            "course_slug": course.slug,
            "course_title": course.title,
        }

    def url(self, thread_id: int, post_id: int | None = None) -> str:
        thread = self.threads[thread_id]
        course = self.courses[thread.course_id]  # type: ignore[attr-defined]
        anchor = f"#post-{post_id}" if post_id is not None else ""
        return f"/courses/{course.slug}/threads/{thread.id}{anchor}"


async def sections(ctx: ExportContext) -> dict[str, Any]:
    user_id = ctx.user.id
    posts = await Post.filter(author_id=user_id).order_by("created_at", "id")
    started = await Thread.filter(author_id=user_id).order_by("created_at", "id")
    votes = await Vote.filter(user_id=user_id).select_related("post").order_by("created_at", "id")
    follows = await Subscription.filter(user_id=user_id).order_by("created_at", "id")
    visits = await ThreadVisit.filter(user_id=user_id).order_by("last_seen_at", "id")

    places = _Places()
    await places.load(
        {p.thread_id for p in posts}  # type: ignore[attr-defined]
        | {t.id for t in started}
        | {v.post.thread_id for v in votes}  # type: ignore[attr-defined]
        | {s.thread_id for s in follows}  # type: ignore[attr-defined]
        | {v.thread_id for v in visits}  # type: ignore[attr-defined]
    )
    revisions: dict[int, list[Revision]] = {}
    for revision in await Revision.filter(post_id__in=[p.id for p in posts]).order_by("id"):
        revisions.setdefault(revision.post_id, []).append(revision)  # type: ignore[attr-defined]

    return {
        "forum": {
            "posts": [_post(ctx, places, p, revisions.get(p.id, [])) for p in posts],
            "threads_started": [await _thread(ctx, places, t) for t in started],
            "votes_cast": [
                {
                    "post_id": v.post.id,
                    **places.where(v.post.thread_id),  # type: ignore[attr-defined]
                    "voted_at": ctx.ts(v.created_at),
                    "url": places.url(v.post.thread_id, v.post.id),  # type: ignore[attr-defined]
                }
                for v in votes
            ],
            "subscriptions": [
                {
                    **places.where(s.thread_id),  # type: ignore[attr-defined]
                    "subscribed_at": ctx.ts(s.created_at),
                }
                for s in follows
            ],
            "visit_markers": [
                {
                    **places.where(v.thread_id),  # type: ignore[attr-defined]
                    "last_seen_at": ctx.ts(v.last_seen_at),
                }
                for v in visits
            ],
        }
    }


def _post(
    ctx: ExportContext, places: _Places, post: Post, revisions: list[Revision]
) -> dict[str, Any]:
    thread_id: int = post.thread_id  # type: ignore[attr-defined]
    thread = places.threads[thread_id]
    return {
        "post_id": post.id,
        **places.where(thread_id),
        "url": places.url(thread_id, post.id),
        "is_opening_post": post.is_opening,
        "reply_to_post_id": post.parent_id,  # type: ignore[attr-defined]
        "anonymous": post.is_anonymous,
        "state": post.state.value,
        "state_log_seq": post.state_seq,
        "created_at": ctx.ts(post.created_at),
        "edited_at": ctx.ts(post.edited_at),
        "deleted_at": ctx.ts(post.deleted_at),
        "text": post.body_markdown,
        "vote_count": post.vote_count,
        "is_endorsed": post.is_endorsed,
        "is_accepted_answer": thread.accepted_post_id == post.id,
        "versions": _versions(ctx, post, revisions, thread),
    }


def _versions(
    ctx: ExportContext, post: Post, revisions: list[Revision], thread: Thread
) -> list[dict[str, Any]]:
    """Every text the post has had, oldest first, with who wrote it and when it was replaced.

    A revision row keeps the text from before one edit, so version k's text is in revision k
    and the last version is the post's current text.
    """
    if post.is_deleted:
        return []
    author = "you"
    versions: list[dict[str, Any]] = []
    written_at, written_by, by_staff = post.created_at, author, False
    for number, revision in enumerate(revisions, start=1):
        versions.append(
            {
                "version": number,
                "text": revision.previous_markdown,
                "title": revision.previous_title if post.is_opening else None,
                "written_at": ctx.ts(written_at),
                "written_by": written_by,
                "by_staff": by_staff,
                "replaced_at": ctx.ts(revision.edited_at),
            }
        )
        written_at = revision.edited_at
        editor_id = revision.editor_id  # type: ignore[attr-defined]
        written_by = ctx.pseudonym(editor_id) if editor_id is not None else "unknown"
        by_staff = revision.by_staff
    versions.append(
        {
            "version": len(revisions) + 1,
            "text": post.body_markdown,
            "title": thread.title if post.is_opening else None,
            "written_at": ctx.ts(written_at),
            "written_by": written_by,
            "by_staff": by_staff,
            "replaced_at": None,
        }
    )
    return versions


def _author_label(ctx: ExportContext, post: Post) -> str:
    """Who wrote someone's post, as this export may say it."""
    if post.is_by(ctx.user):
        return "you"
    if post.is_anonymous:
        return ANONYMOUS_LABEL
    if post.author_id is None:  # type: ignore[attr-defined]
        return DELETED_USER_LABEL
    return ctx.pseudonym(post.author_id)  # type: ignore[attr-defined]


async def _thread(ctx: ExportContext, places: _Places, thread: Thread) -> dict[str, Any]:
    accepted: dict[str, Any] | None = None
    if thread.accepted_post_id is not None:
        answer = await Post.get_or_none(id=thread.accepted_post_id)
        if answer is not None:
            accepted = {
                "post_id": answer.id,
                "author": _author_label(ctx, answer),
                "url": places.url(thread.id, answer.id),
            }
    return {
        **places.where(thread.id),
        "url": places.url(thread.id),
        "kind": thread.kind.value,
        "anonymous": thread.is_anonymous,
        "created_at": ctx.ts(thread.created_at),
        "last_activity_at": ctx.ts(thread.last_activity_at),
        "reply_count": thread.reply_count,
        "is_locked": thread.is_locked,
        "is_pinned": thread.is_pinned,
        "accepted_answer": accepted,
    }
