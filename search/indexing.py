"""Rebuilding the search index from the database, and reporting how far behind it is.

`reindex` is what `agora search reindex` runs: after a restore, after the engine lost its data,
or when the index has drifted. It is safe while the site runs and other processes deliver
indexing jobs at the same time:

- It never drops the index or empties a course. It only upserts documents and deletes
  documents one id at a time, so searches keep working (and finding what they found before)
  throughout.
- It walks posts in id order, 500 at a time. For each window of ids it upserts the visible
  posts and deletes the documents of the others (hidden, removed, deleted by their author).
- A full rebuild (no course) also deletes the documents of ids inside the window that have no
  post any more ("gaps"). Both databases hand out ids in increasing order and never reuse one,
  so a gap below the largest id seen stays a gap. `--course` skips this: inside one course the
  ids of other courses' posts are gaps too.
- A job can change a post between the moment this reads it and the moment this writes it
  (an edit, a hide), and its own upsert may land first. So after writing a window it reads the
  window again and writes whatever differs from what it just wrote, until the two agree. Any
  change that commits after that last read has its own outbox job, which runs after the
  change commits, so after this write: the index ends up matching the database.
- Finally, for each course where the index holds more documents than the course has visible
  posts (documents of posts that no longer exist, e.g. the database was restored from a backup
  older than the index), it lists the course's documents through the engine, newest first,
  and deletes those without a visible post in that course. This removes only what is provably
  stale, instead of clearing the course first (`delete_course`), which would make its posts
  unsearchable until the rebuild reached them again.

Documents of courses that no longer exist in the database are not looked for: searches are
always limited to courses the asker is a member of, so nobody can reach them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from functools import partial
from typing import Any

from core.jobs import MAX_ATTEMPTS
from core.models import Course, OutboxEvent
from core.timeutil import utcnow
from forum.models import Post, PostState
from search import service
from search.backends import (
    MAX_PER_PAGE,
    PostDocument,
    SearchBackend,
    SearchQuery,
    SearchUnavailable,
)
from search.tasks import document_id, is_indexable, to_document

log = logging.getLogger("agora.search")

BATCH_SIZE = 500
VERIFY_ROUNDS = 5
SWEEP_MAX_PAGES = 100_000
OUTBOX_PREFIX = "search."

Progress = Callable[[int], None]
# What the index should hold for a post id: its document, or None for "no document".
Wanted = dict[int, PostDocument | None]

_ABSENT = object()


class _Courses:
    """Courses by id, read once per run (documents carry the course's slug in their url)."""

    def __init__(self) -> None:
        self._by_id: dict[int, Course] = {}

    async def get(self, ids: Iterable[int]) -> dict[int, Course]:
        missing = {i for i in ids if i not in self._by_id}
        if missing:
            for course in await Course.filter(id__in=sorted(missing)):
                self._by_id[course.id] = course
        return self._by_id


def posts_in(course_id: int | None) -> Any:
    query = Post.all()
    if course_id is not None:
        query = query.filter(thread__course_id=course_id)
    return query


async def _wanted(posts: list[Post], courses: _Courses) -> Wanted:
    by_id = await courses.get(p.thread.course_id for p in posts)  # type: ignore[attr-defined]
    wanted: Wanted = {}
    for post in posts:
        course = by_id.get(post.thread.course_id)  # type: ignore[attr-defined]
        indexable = course is not None and is_indexable(post)
        wanted[post.id] = to_document(post, post.thread, course) if indexable else None  # type: ignore[arg-type]
    return wanted


async def _read_window(lo: int, hi: int, course_id: int | None, courses: _Courses) -> Wanted:
    """What the index should hold for the posts with lo < id <= hi (of one course, if given)."""
    posts = (
        await posts_in(course_id).filter(id__gt=lo, id__lte=hi).select_related("author", "thread")
    )
    return await _wanted(list(posts), courses)


async def _read_ids(ids: list[int], courses: _Courses) -> Wanted:
    posts = await Post.filter(id__in=ids).select_related("author", "thread")
    found = await _wanted(list(posts), courses)
    return {i: found.get(i) for i in ids}


async def _write(backend: SearchBackend, changes: Wanted) -> None:
    docs = [doc for doc in changes.values() if doc is not None]
    gone = [document_id(i) for i, doc in changes.items() if doc is None]
    await backend.apply(docs, gone)


def _differences(written: Wanted, now: Wanted, *, absent_means_gone: bool) -> Wanted:
    changed: Wanted = {}
    for post_id, doc in now.items():
        if written.get(post_id, _ABSENT) != doc:
            changed[post_id] = doc
    if absent_means_gone:
        for post_id, doc in written.items():
            if post_id not in now and doc is not None:
                changed[post_id] = None
    return changed


async def _settle(
    backend: SearchBackend,
    written: Wanted,
    read_again: Callable[[], Awaitable[Wanted]],
    what: str,
) -> Wanted:
    """Re-read and re-write until the index holds what the database now says."""
    for _ in range(VERIFY_ROUNDS):
        now = await read_again()
        changed = _differences(written, now, absent_means_gone=True)
        if not changed:
            return written
        await _write(backend, changed)
        written.update(changed)
    log.warning("%s kept changing while it was reindexed; its jobs will bring it up to date", what)
    return written


async def _sync_window(
    backend: SearchBackend, lo: int, hi: int, course_id: int | None, courses: _Courses
) -> int:
    wanted = await _read_window(lo, hi, course_id, courses)
    written: Wanted = dict(wanted)
    if course_id is None:
        for gap in range(lo + 1, hi + 1):
            written.setdefault(gap, None)
    await _write(backend, written)
    written = await _settle(
        backend,
        written,
        partial(_read_window, lo, hi, course_id, courses),
        f"posts {lo + 1}-{hi}",
    )
    return sum(1 for post_id, doc in written.items() if doc is not None and lo < post_id <= hi)


async def visible_post_count(course_id: int) -> int:
    """How many documents the index should hold for a course."""
    return await Post.filter(
        thread__course_id=course_id, deleted_at=None, state=PostState.VISIBLE
    ).count()


async def _sweep_course(backend: SearchBackend, course_id: int, courses: _Courses) -> int:
    """Delete the course's documents that have no visible post in it; returns how many."""
    removed = 0
    before = None
    seen: set[int] = set()
    for _ in range(SWEEP_MAX_PAGES):
        page = await backend.search(
            SearchQuery(
                text="", course_ids=[course_id], created_before=before, per_page=MAX_PER_PAGE
            )
        )
        if not page.hits:
            break
        ids = [hit.post_id for hit in page.hits]
        posts = {p.id: p for p in await Post.filter(id__in=ids).select_related("thread")}
        stale = [
            i
            for i in ids
            if i not in posts
            or not is_indexable(posts[i])
            or posts[i].thread.course_id != course_id  # type: ignore[attr-defined]
        ]
        if stale:
            gone: Wanted = dict.fromkeys(stale)
            await _write(backend, gone)
            # One of them may have become visible (and been indexed) since it was read.
            await _settle(backend, gone, partial(_read_ids, stale, courses), f"course {course_id}")
            removed += len(stale)
        kept = [posts[i] for i in ids if i not in set(stale)]
        fresh = [p for p in kept if p.id not in seen]
        seen.update(p.id for p in kept)
        if not kept:
            continue  # the whole page was stale and is gone: look at the same window again
        if len(page.hits) < MAX_PER_PAGE and not stale:
            break
        oldest = min(p.created_at for p in kept)
        # Newest first, `before` exclusive: step back to the oldest post seen, keeping posts
        # created in the same microsecond in view, unless nothing new came back.
        before = oldest + timedelta(microseconds=1) if fresh else oldest
    return removed


async def reindex(course_id: int | None = None, *, progress: Progress | None = None) -> int:
    """Rebuild the index from the database (one course, or everything); see the module docs.

    `progress` is called after each batch with the number of posts just processed. Returns
    the number of visible posts indexed. Raises SearchUnavailable if the engine is down
    (running it again later is safe: it only ever brings the index closer to the database).
    """
    backend = service.backend()
    await backend.ensure_ready()
    courses = _Courses()
    indexed = 0
    lo = 0
    while True:
        ids = (
            await posts_in(course_id)
            .filter(id__gt=lo)
            .order_by("id")
            .limit(BATCH_SIZE)
            .values_list("id", flat=True)
        )
        if not ids:
            break
        hi = int(ids[-1])
        indexed += await _sync_window(backend, lo, hi, course_id, courses)
        if progress is not None:
            progress(len(ids))
        lo = hi
    scope = [course_id] if course_id is not None else [c.id for c in await Course.all()]
    for cid in scope:
        if await backend.count(cid) > await visible_post_count(cid):
            removed = await _sweep_course(backend, cid, courses)
            if removed:
                log.info("removed %d stale search documents of course %s", removed, cid)
    return indexed


async def outbox_lag() -> dict[str, Any]:
    """Undelivered search jobs: how many, how old the oldest is, and the latest failure."""

    def undelivered() -> Any:
        return OutboxEvent.filter(delivered_at=None, kind__startswith=OUTBOX_PREFIX)

    oldest = await undelivered().order_by("id").first()
    latest_failure = await undelivered().filter(attempts__gt=0).order_by("-id").first()
    lag = None if oldest is None else max(0.0, (utcnow() - oldest.created_at).total_seconds())
    return {
        "lag_seconds": lag,
        "pending": await undelivered().count(),
        "failing": await undelivered().filter(attempts__gt=0).count(),
        "given_up": await undelivered().filter(attempts__gte=MAX_ATTEMPTS).count(),
        "last_error": None if latest_failure is None else latest_failure.last_error,
    }


async def status() -> dict[str, Any]:
    """Document counts (total and per course) next to the visible posts, and the indexing lag.

    `lag_seconds` is the age of the oldest undelivered "search.*" outbox job (None when none
    is waiting). Counts are None when the engine cannot be reached; the lag is still reported.
    """
    backend = service.backend()
    health = await backend.health()
    report: dict[str, Any] = {
        "engine": health.get("engine"),
        "available": bool(health.get("ok")),
        "detail": health.get("detail"),
    }
    rows: list[dict[str, Any]] = [
        {
            "id": c.id,
            "slug": c.slug,
            "title": c.title,
            "documents": None,
            "visible_posts": await visible_post_count(c.id),
        }
        for c in await Course.all().order_by("slug")
    ]
    total: int | None = None
    try:
        total = await backend.count()
        for row in rows:
            row["documents"] = await backend.count(row["id"])
    except SearchUnavailable as exc:
        report["available"] = False
        report["detail"] = str(exc)
        total = None
        for row in rows:
            row["documents"] = None
    report["total"] = total
    report["courses"] = rows
    report["unattributed"] = (
        None if total is None else total - sum(int(row["documents"]) for row in rows)
    )
    report.update(await outbox_lag())
    return report
