"""Read-only page data for the forums, already stripped of what the viewer may not see.

Templates and API responses get these dataclasses, never a User behind an anonymous post,
so an author who is anonymous to classmates cannot leak through a template or a serializer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from math import ceil
from typing import TYPE_CHECKING, TypeVar

from markupsafe import Markup
from tortoise.expressions import F, RawSQL, Subquery
from tortoise.functions import Count
from tortoise.models import Model
from tortoise.queryset import QuerySet

from core.errors import NotFound
from core.models import Course, Role, User
from core.prepared import Prepared
from forum.markup import wrap_user_html
from forum.models import (
    ANONYMOUS_LABEL,
    DELETED_USER_LABEL,
    MAX_ID,
    Forum,
    Post,
    PostState,
    Thread,
    ThreadKind,
    ThreadVisit,
    Vote,
    is_staff,
)

if TYPE_CHECKING:
    from moderation.models import LogEntry

M = TypeVar("M", bound=Model)

THREADS_PER_PAGE = 30
POSTS_PER_PAGE = 30
# A thread with at most this many replies is read in one query and paged in memory.
WHOLE_THREAD_REPLIES = 150


@dataclass(frozen=True, slots=True)
class Author:
    name: str
    handle: str | None
    # True when learners see "Anonymous learner" and this viewer (staff or the author) sees more.
    anonymous_to_classmates: bool = False


@dataclass(frozen=True, slots=True)
class Person:
    """The only fields of a user that a page shows next to what they wrote."""

    id: int
    username: str
    display_name: str


def author_for(
    user: User | Person | None, anonymous: bool, viewer: User | None, role: Role | None
) -> Author:
    """How an author appears to `viewer`."""
    if user is None:
        return Author(DELETED_USER_LABEL, None)
    if anonymous:
        if viewer is not None and (viewer.id == user.id or is_staff(viewer, role)):
            return Author(user.display_name, user.username, anonymous_to_classmates=True)
        return Author(ANONYMOUS_LABEL, None)
    return Author(user.display_name, user.username)


def with_author(query: QuerySet[M]) -> QuerySet[M]:
    """The rows with their author's username and display name, read in the same query."""
    return query.annotate(
        author_username=F("author__username"), author_name=F("author__display_name")
    )


def author_of(row: Post | Thread) -> Person | None:
    """The author that `with_author` read alongside a post or thread (None once deleted)."""
    author_id: int | None = row.author_id  # type: ignore[union-attr]
    if author_id is None:
        return None
    return Person(author_id, getattr(row, "author_username", ""), getattr(row, "author_name", ""))


def is_answer(post: Post) -> bool:
    """A top-level reply: only these can be accepted as a question's answer."""
    return not post.is_opening and post.parent_id is None  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ModerationNote:
    """Why a post is hidden or removed, shown to everyone who can see the thread."""

    act: str
    seq: int
    at: datetime
    rule_code: str
    rule_text: str
    reason: str


def body_is_visible(post: Post, viewer: User | None, role: Role | None) -> bool:
    """Hidden posts stay readable for their author and staff; removed ones for staff only."""
    if post.is_deleted:
        return False
    if post.state == PostState.VISIBLE or is_staff(viewer, role):
        return True
    return post.state == PostState.HIDDEN and post.is_by(viewer)


def _thread_notes(thread_id: int, course_id: int) -> QuerySet[LogEntry]:
    """The log entries behind the state of any post of a thread, with their rule's text."""
    from moderation.models import LogEntry

    rule_text = RawSQL(
        '(SELECT "text" FROM "agora_rule" WHERE "course_id" = '
        f'{int(course_id)} AND "code" = "agora_log_entry"."rule_code")'
    )
    acts = Subquery(Post.filter(thread_id=thread_id).values("state_seq"))
    return (
        LogEntry.filter(seq__in=acts)
        .annotate(rule_text=rule_text)
        .only("id", "seq", "act", "created_at", "rule_code", "reason")
    )


_THREAD_NOTES = Prepared(_thread_notes, int, int)


async def moderation_notes(posts: list[Post], course_id: int) -> dict[int, ModerationNote]:
    """The log entry behind each hidden or removed post (all of one thread), with its rule's
    text."""
    seqs = {
        p.state_seq: p.id for p in posts if p.state != PostState.VISIBLE and p.state_seq is not None
    }
    if not seqs:
        return {}
    thread_id = posts[0].thread_id  # type: ignore[attr-defined]
    return {
        seqs[entry.seq]: ModerationNote(
            act=entry.act,
            seq=entry.seq,
            at=entry.created_at,
            rule_code=entry.rule_code,
            rule_text=str(getattr(entry, "rule_text", None) or ""),
            reason=entry.reason,
        )
        for entry in await _THREAD_NOTES.rows(thread_id, course_id)
        if entry.seq in seqs
    }


@dataclass(slots=True)
class PostView:
    id: int
    thread_id: int
    parent_id: int | None
    is_opening: bool
    author: Author
    body_html: Markup
    body_markdown: str
    created_at: datetime
    edited_at: datetime | None
    revision_count: int
    is_deleted: bool
    is_endorsed: bool
    vote_count: int
    voted: bool
    is_new: bool
    is_own: bool
    can_edit: bool
    can_delete: bool
    can_vote: bool
    is_accepted: bool
    can_accept: bool
    can_endorse: bool = False
    state: str = PostState.VISIBLE.value
    body_visible: bool = True
    note: ModerationNote | None = None
    replies: list[PostView] = field(default_factory=list)


@dataclass(slots=True)
class ThreadSummary:
    id: int
    title: str
    kind: ThreadKind
    author: Author
    created_at: datetime
    last_activity_at: datetime
    reply_count: int
    is_answered: bool
    is_pinned: bool
    is_locked: bool
    has_new: bool


@dataclass(slots=True)
class Page:
    number: int
    count: int

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.count


def page_of(number: int, total: int, per_page: int) -> Page:
    count = max(1, ceil(total / per_page))
    return Page(number=min(max(1, number), count), count=count)


async def thread_summaries(
    forum: Forum, viewer: User, role: Role | None, page_number: int
) -> tuple[list[ThreadSummary], Page]:
    base = Thread.filter(forum_id=forum.id)
    ordered = base.order_by("-is_pinned", "-last_activity_at", "-id")
    threads: list[Thread]
    if page_number <= 1:
        # A first page that is not full is the whole forum: no need to count.
        threads = list(await with_author(ordered.limit(THREADS_PER_PAGE)))
        total = len(threads) if len(threads) < THREADS_PER_PAGE else await base.count()
        page = page_of(1, total, THREADS_PER_PAGE)
    else:
        page = page_of(page_number, await base.count(), THREADS_PER_PAGE)
        threads = list(
            await with_author(
                ordered.offset((page.number - 1) * THREADS_PER_PAGE).limit(THREADS_PER_PAGE)
            )
        )
    if not threads:
        return [], page
    visits = dict(
        await ThreadVisit.filter(
            user_id=viewer.id, thread_id__in=[t.id for t in threads]
        ).values_list("thread_id", "last_seen_at")
    )
    return [
        ThreadSummary(
            id=t.id,
            title=t.title,
            kind=ThreadKind(t.kind),
            author=author_for(author_of(t), t.is_anonymous, viewer, role),
            created_at=t.created_at,
            last_activity_at=t.last_activity_at,
            reply_count=t.reply_count,
            is_answered=t.accepted_post_id is not None,
            is_pinned=t.is_pinned,
            is_locked=t.is_locked,
            has_new=t.id not in visits or t.last_activity_at > visits[t.id],
        )
        for t in threads
    ], page


@dataclass(slots=True)
class ThreadPage:
    thread: Thread
    forum: Forum
    opening: PostView
    posts: list[PostView]
    page: Page
    subscribed: bool
    can_reply: bool
    can_accept: bool
    last_seen_at: datetime | None
    # When the newest post on the page was written.
    newest_at: datetime
    can_moderate: bool = False


def _viewer_columns(viewer_id: int) -> dict[str, RawSQL]:
    """The viewer's read marker and subscription of a thread, read with the thread."""
    where = f'"thread_id" = "agora_thread"."id" AND "user_id" = {int(viewer_id)}'
    return {
        "viewer_seen_at": RawSQL(
            f'(SELECT "last_seen_at" FROM "agora_thread_visit" WHERE {where})'
        ),
        "viewer_subscriptions": RawSQL(
            f'(SELECT COUNT(*) FROM "agora_subscription" WHERE {where})'
        ),
    }


def _thread_for_viewer(thread_id: int, viewer_id: int) -> QuerySet[Thread]:
    query = Thread.filter(id=thread_id).select_related("forum")
    return query.annotate(**_viewer_columns(viewer_id)).limit(1)


_THREAD_FOR_VIEWER = Prepared(_thread_for_viewer, int, int)
_COURSE_THREAD_FOR_VIEWER = Prepared(
    lambda thread_id, viewer_id, course_id: _thread_for_viewer(thread_id, viewer_id).filter(
        course_id=course_id
    ),
    int,
    int,
    int,
)


async def thread_for_viewer(
    thread_id: int, viewer: User, *, course_id: int | None = None
) -> Thread:
    """The thread with its forum and `viewer`'s marker and subscription (for `thread_page`),
    else NotFound; with `course_id`, only a thread of that course."""
    if not 0 < thread_id <= MAX_ID:
        raise NotFound("There is no such thread in this course.")
    if course_id is None:
        thread = await _THREAD_FOR_VIEWER.first(thread_id, viewer.id)
    else:
        thread = await _COURSE_THREAD_FOR_VIEWER.first(thread_id, viewer.id, course_id)
    if thread is None:
        raise NotFound("There is no such thread in this course.")
    return thread


async def _viewer_state(thread: Thread, viewer: User) -> tuple[datetime | None, bool]:
    """When `viewer` last saw the thread and whether they follow it (read with the thread by
    `thread_for_viewer`; a thread read otherwise is read again that way)."""
    if not hasattr(thread, "viewer_seen_at"):
        thread = await thread_for_viewer(thread.id, viewer)
    raw_seen = thread.viewer_seen_at  # type: ignore[attr-defined]
    last_seen = ThreadVisit._meta.fields_map["last_seen_at"].to_python_value(raw_seen)
    return last_seen, bool(int(thread.viewer_subscriptions or 0))  # type: ignore[attr-defined]


def _with_viewer_votes(query: QuerySet[Post], viewer_id: int) -> QuerySet[Post]:
    """Posts with their author and `viewer_votes` (1 when the viewer upvoted the post)."""
    voted = RawSQL(
        '(SELECT COUNT(*) FROM "agora_vote" WHERE "post_id" = "agora_post"."id" '
        f'AND "user_id" = {int(viewer_id)})'
    )
    return with_author(query).annotate(viewer_votes=voted)


_WHOLE_THREAD = Prepared(
    lambda thread_id, viewer_id: _with_viewer_votes(
        Post.filter(thread_id=thread_id).order_by("id"), viewer_id
    ),
    int,
    int,
)


async def _page_posts(
    thread: Thread, page_number: int, viewer: User
) -> tuple[Post, list[Post], list[Post], Page]:
    """The opening post, one page of answers and the replies to those answers, each with
    `viewer_votes` (1 when the viewer upvoted it)."""

    def posts_of(query: QuerySet[Post]) -> QuerySet[Post]:
        return _with_viewer_votes(query, viewer.id)

    if thread.reply_count <= WHOLE_THREAD_REPLIES:
        every = await _WHOLE_THREAD.rows(thread.id, viewer.id)
        opening = next((p for p in every if p.is_opening), None)
        top_level = [p for p in every if is_answer(p)]
        page = page_of(page_number, len(top_level), POSTS_PER_PAGE)
        start = (page.number - 1) * POSTS_PER_PAGE
        answers = top_level[start : start + POSTS_PER_PAGE]
        shown = {a.id for a in answers}
        replies = [p for p in every if p.parent_id in shown]  # type: ignore[attr-defined]
    else:
        top = Post.filter(thread_id=thread.id, parent_id=None)
        page = page_of(page_number, await top.filter(is_opening=False).count(), POSTS_PER_PAGE)
        if page.number == 1:
            # The opening post sorts first, so one query reads it with the first answers.
            rows = await posts_of(top.order_by("-is_opening", "id").limit(POSTS_PER_PAGE + 1))
            opening = rows[0] if rows and rows[0].is_opening else None
            answers = [p for p in rows if not p.is_opening][:POSTS_PER_PAGE]
        else:
            opening = await posts_of(top.filter(is_opening=True)).first()
            answers = list(
                await posts_of(
                    top.filter(is_opening=False)
                    .order_by("id")
                    .offset((page.number - 1) * POSTS_PER_PAGE)
                    .limit(POSTS_PER_PAGE)
                )
            )
        replies = (
            list(
                await posts_of(
                    Post.filter(
                        thread_id=thread.id, parent_id__in=[a.id for a in answers]
                    ).order_by("id")
                )
            )
            if answers
            else []
        )
    if opening is None:
        raise NotFound("This thread has no opening post.")
    return opening, answers, replies, page


async def thread_page(
    thread: Thread, viewer: User, role: Role | None, page_number: int, forum: Forum | None = None
) -> ThreadPage:
    """The opening post and one page of answers with their replies, for this viewer."""
    if forum is None:
        forum = await Forum.get(id=thread.forum_id)  # type: ignore[attr-defined]
    opening, answers, replies, page = await _page_posts(thread, page_number, viewer)
    shown = [opening, *answers, *replies]
    voted = {p.id for p in shown if getattr(p, "viewer_votes", 0)}
    last_seen, subscribed = await _viewer_state(thread, viewer)
    can_accept = thread.can_accept_answer(viewer, role)
    staff = is_staff(viewer, role)
    notes = await moderation_notes(shown, thread.course_id)  # type: ignore[attr-defined]

    def view(post: Post) -> PostView:
        deleted = post.is_deleted
        readable = body_is_visible(post, viewer, role)
        own = post.is_by(viewer)
        return PostView(
            id=post.id,
            thread_id=thread.id,
            parent_id=post.parent_id,  # type: ignore[attr-defined]
            is_opening=post.is_opening,
            author=author_for(author_of(post), post.is_anonymous, viewer, role),
            body_html=wrap_user_html(post.body_html) if readable else Markup(""),
            body_markdown=post.body_markdown if readable else "",
            state=PostState(post.state).value,
            body_visible=readable,
            note=notes.get(post.id),
            created_at=post.created_at,
            edited_at=post.edited_at,
            revision_count=post.revision_count,
            is_deleted=deleted,
            is_endorsed=post.is_endorsed,
            vote_count=post.vote_count,
            voted=post.id in voted,
            is_new=last_seen is not None and post.created_at > last_seen and not own,
            is_own=own,
            can_edit=post.can_be_edited_by(viewer, role),
            can_delete=post.can_be_deleted_by(viewer),
            can_vote=post.can_be_voted_on_by(viewer, role),
            is_accepted=thread.accepted_post_id == post.id,
            can_accept=can_accept and is_answer(post) and not deleted and readable,
            can_endorse=staff and not deleted,
        )

    answer_views = [view(a) for a in answers]
    by_id = {a.id: a for a in answer_views}
    for reply in replies:
        by_id[reply.parent_id].replies.append(view(reply))  # type: ignore[attr-defined]
    return ThreadPage(
        thread=thread,
        forum=forum,
        opening=view(opening),
        posts=answer_views,
        page=page,
        subscribed=subscribed,
        can_reply=thread.can_be_replied_to_by(viewer, role),
        can_accept=can_accept,
        last_seen_at=last_seen,
        newest_at=max(p.created_at for p in shown),
        can_moderate=staff,
    )


async def post_view(post: Post, viewer: User, role: Role | None) -> PostView:
    """One post as `viewer` sees it (for htmx fragments and the API)."""
    thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
    await post.fetch_related("author")
    voted = await Vote.filter(user_id=viewer.id, post_id=post.id).exists()
    can_accept = thread.can_accept_answer(viewer, role)
    readable = body_is_visible(post, viewer, role)
    notes = await moderation_notes([post], thread.course_id)  # type: ignore[attr-defined]
    return PostView(
        id=post.id,
        thread_id=thread.id,
        parent_id=post.parent_id,  # type: ignore[attr-defined]
        is_opening=post.is_opening,
        author=author_for(post.author, post.is_anonymous, viewer, role),
        body_html=wrap_user_html(post.body_html) if readable else Markup(""),
        body_markdown=post.body_markdown if readable else "",
        state=PostState(post.state).value,
        body_visible=readable,
        note=notes.get(post.id),
        created_at=post.created_at,
        edited_at=post.edited_at,
        revision_count=post.revision_count,
        is_deleted=post.is_deleted,
        is_endorsed=post.is_endorsed,
        vote_count=post.vote_count,
        voted=voted,
        is_new=False,
        is_own=post.is_by(viewer),
        can_edit=post.can_be_edited_by(viewer, role),
        can_delete=post.can_be_deleted_by(viewer),
        can_vote=post.can_be_voted_on_by(viewer, role),
        is_accepted=thread.accepted_post_id == post.id,
        can_accept=can_accept and is_answer(post) and not post.is_deleted,
        can_endorse=is_staff(viewer, role) and not post.is_deleted,
    )


async def course_forums(course: Course) -> list[tuple[Forum, int]]:
    """The course's forums in order, each with its number of threads."""
    forums = await Forum.filter(course_id=course.id).order_by("position", "id")
    if not forums:
        return []
    counts = dict(
        await Thread.filter(forum_id__in=[f.id for f in forums])
        .group_by("forum_id")
        .annotate(threads=Count("id"))
        .values_list("forum_id", "threads")
    )
    return [(forum, counts.get(forum.id, 0)) for forum in forums]
