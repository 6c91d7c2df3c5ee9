"""Outbox handlers that keep the search index in step with the forums.

The index holds only posts that every member of the course may see, and an anonymous post
carries no trace of its author (DESIGN.md invariants 5 and 7).
"""

from __future__ import annotations

from core.models import Course, OutboxEvent
from forum.markup import plain_text
from forum.models import Post, PostState, Thread, ThreadKind
from search import service
from search.backends import PostDocument

BODY_CHARS = 20_000


def document_id(post_id: int) -> str:
    return f"post:{post_id}"


def is_indexable(post: Post) -> bool:
    """Only what every member of the course may read goes into the index."""
    return not post.is_deleted and post.state == PostState.VISIBLE


def to_document(post: Post, thread: Thread, course: Course) -> PostDocument:
    author = None if post.is_anonymous or post.author is None else post.author.username
    return PostDocument(
        id=document_id(post.id),
        post_id=post.id,
        course_id=course.id,
        forum_id=thread.forum_id,  # type: ignore[attr-defined]
        thread_id=thread.id,
        thread_kind=ThreadKind(thread.kind).value,  # type: ignore[arg-type]
        thread_title=thread.title,
        body=plain_text(post.body_html, is_html=True, max_chars=BODY_CHARS),
        author_handle=author,
        is_answered=thread.accepted_post_id is not None,
        created_at=post.created_at,
        url=f"/courses/{course.slug}/threads/{thread.id}#post-{post.id}",
    )


async def sync_posts(posts: list[Post]) -> None:
    """Upsert the visible posts and delete the others, for one thread."""
    if not posts:
        return
    thread = await Thread.get(id=posts[0].thread_id)  # type: ignore[attr-defined]
    course = await Course.get(id=thread.course_id)  # type: ignore[attr-defined]
    backend = service.backend()
    visible = [p for p in posts if is_indexable(p)]
    gone = [document_id(p.id) for p in posts if not is_indexable(p)]
    if visible:
        await backend.upsert([to_document(p, thread, course) for p in visible])
    if gone:
        await backend.delete(gone)


async def index_post(event: OutboxEvent) -> None:
    post = await Post.get_or_none(id=event.payload["post_id"]).select_related("author")
    if post is None:
        await service.backend().delete([document_id(event.payload["post_id"])])
        return
    await sync_posts([post])


async def index_thread(event: OutboxEvent) -> None:
    posts = await Post.filter(thread_id=event.payload["thread_id"]).select_related("author")
    await sync_posts(list(posts))


HANDLERS = {"search.index_post": index_post, "search.index_thread": index_thread}
