"""Outbox handlers that keep the search index in step with the forums.

The index holds only posts that every member of the course may see, and an anonymous post
carries no trace of its author (DESIGN.md invariants 5 and 7).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from tortoise.connection import get_connection
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from core.models import Course, OutboxEvent
from forum.markup import plain_text
from forum.models import Post, PostState, Thread, ThreadKind
from search import service
from search.backends import PostDocument

BODY_CHARS = 20_000
# pg_advisory_xact_lock key that orders index jobs across processes ("agoraidx").
INDEX_LOCK_KEY = 0x6167_6F72_6169_6478

_local_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


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
        thread_kind=ThreadKind(thread.kind).value,
        thread_title=thread.title,
        body=plain_text(post.body_html, is_html=True, max_chars=BODY_CHARS),
        author_handle=author,
        is_answered=thread.accepted_post_id is not None,
        created_at=post.created_at,
        url=f"/courses/{course.slug}/threads/{thread.id}#post-{post.id}",
    )


def _local_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _local_locks.get(loop)
    if lock is None:
        lock = _local_locks[loop] = asyncio.Lock()
    return lock


@asynccontextmanager
async def _index_turn() -> AsyncIterator[None]:
    """Index jobs take turns, in this process and (on PostgreSQL) across processes.

    A job reads the posts, then writes the index. Two jobs doing that for the same post at
    once could land the older read last; taking turns, the last to write read last, so the
    index ends with the current text. On SQLite no transaction is held: it would stop every
    other query of the process while the index commits.
    """
    async with _local_lock():
        if get_connection("default").capabilities.dialect != "postgres":
            yield
            return
        async with in_transaction() as connection:
            await connection.execute_query("SELECT pg_advisory_xact_lock($1)", [INDEX_LOCK_KEY])
            yield


async def index_events(events: Sequence[OutboxEvent]) -> None:
    """Bring the index in step with the posts and threads named by events, in one commit."""
    post_ids = {int(e.payload["post_id"]) for e in events if e.kind == "search.index_post"}
    thread_ids = {int(e.payload["thread_id"]) for e in events if e.kind == "search.index_thread"}
    if not post_ids and not thread_ids:
        return
    wanted = Q(id__in=sorted(post_ids)) if post_ids else Q()
    if thread_ids:
        in_threads = Q(thread_id__in=sorted(thread_ids))
        wanted = (wanted | in_threads) if post_ids else in_threads
    async with _index_turn():
        posts = await Post.filter(wanted).select_related("author", "thread__course")
        docs = [to_document(p, p.thread, p.thread.course) for p in posts if is_indexable(p)]
        seen = {p.id for p in posts}
        gone = [document_id(p.id) for p in posts if not is_indexable(p)]
        gone += [document_id(i) for i in sorted(post_ids - seen)]
        await service.backend().apply(docs, gone)


async def index_post(event: OutboxEvent) -> None:
    await index_events([event])


async def index_thread(event: OutboxEvent) -> None:
    await index_events([event])


HANDLERS = {"search.index_post": index_post, "search.index_thread": index_thread}
BATCH_HANDLERS = {"search.index_post": index_events, "search.index_thread": index_events}
