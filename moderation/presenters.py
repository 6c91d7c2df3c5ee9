"""Read-only page data for the moderation pages (queues, standing, notices).

Post excerpts go through forum.presenters.author_for, so an anonymous author is named only to
the course's staff and to the author.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.models import Course, Role, User
from core.timeutil import utcnow
from forum.markup import plain_text
from forum.models import Post, PostState, Thread
from forum.presenters import POSTS_PER_PAGE, Author, author_for
from moderation.log import timestamp
from moderation.models import (
    Act,
    Appeal,
    AppealStatus,
    Flag,
    FlagCategory,
    LogEntry,
    Notice,
    Rule,
    Sanction,
    SanctionKind,
)

FLAG_LABELS = {
    FlagCategory.SPAM: "Spam or advertising",
    FlagCategory.HARASSMENT: "Harassment or disrespect",
    FlagCategory.OFF_TOPIC: "Off topic",
    FlagCategory.PLAGIARISM: "Shares solutions or copies others' work",
    FlagCategory.OTHER: "Something else (say what)",
}
# The default rule a flag's category points at, offered first in the queue.
FLAG_RULES = {
    FlagCategory.HARASSMENT: "R1",
    FlagCategory.OFF_TOPIC: "R2",
    FlagCategory.SPAM: "R3",
    FlagCategory.PLAGIARISM: "R4",
}
ACT_NAMES = {
    Act.HIDE_POST.value: "Post hidden",
    Act.UNHIDE_POST.value: "Post visible again",
    Act.REMOVE_POST.value: "Post removed",
    Act.RESTORE_POST.value: "Post restored",
    Act.EDIT_POST.value: "Post edited by staff",
    Act.LOCK_THREAD.value: "Thread locked",
    Act.UNLOCK_THREAD.value: "Thread unlocked",
    Act.PIN_THREAD.value: "Thread pinned",
    Act.UNPIN_THREAD.value: "Thread unpinned",
    Act.MOVE_THREAD.value: "Thread moved",
    Act.WARN_USER.value: "Warning",
    Act.SILENCE_USER.value: "Silence",
    Act.SUSPEND_USER.value: "Suspension",
    Act.LIFT_SANCTION.value: "Sanction lifted",
    Act.CHANGE_ROLE.value: "Role changed",
    Act.RESOLVE_FLAG.value: "Flag resolved",
    Act.DECIDE_APPEAL.value: "Appeal decided",
}


def age(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def log_url(course: Course | None, seq: int) -> str:
    """The public log's page for entry `seq` (site-wide acts have no course)."""
    base = f"/courses/{course.slug}/moderation" if course else "/moderation"
    return f"{base}?seq={seq}"


# --- posts ------------------------------------------------------------------------------


@dataclass(slots=True)
class PostPreview:
    id: int
    thread_id: int
    thread_title: str
    author: Author
    author_username: str | None  # only when this viewer may see who wrote it
    excerpt: str
    state: str
    is_deleted: bool
    created_at: datetime
    url: str


async def post_url(course: Course, post: Post) -> str:
    """The thread page (with the right page number) anchored at the post."""
    top = post
    if post.parent_id is not None:  # type: ignore[attr-defined]
        top = await Post.get(id=post.parent_id)  # type: ignore[attr-defined]
    page = 1
    if not top.is_opening:
        before = await Post.filter(
            thread_id=top.thread_id,  # type: ignore[attr-defined]
            parent_id=None,
            is_opening=False,
            id__lt=top.id,
        ).count()
        page = before // POSTS_PER_PAGE + 1
    suffix = f"?page={page}" if page > 1 else ""
    return f"/courses/{course.slug}/threads/{post.thread_id}{suffix}#post-{post.id}"  # type: ignore[attr-defined]


async def post_preview(course: Course, post: Post, viewer: User, role: Role | None) -> PostPreview:
    await post.fetch_related("author")
    thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
    author = author_for(post.author, post.is_anonymous, viewer, role)
    excerpt = plain_text(post.body_html, is_html=True, max_chars=600) if post.body_html else ""
    return PostPreview(
        id=post.id,
        thread_id=thread.id,
        thread_title=thread.title,
        author=author,
        author_username=post.author.username if post.author and author.handle else None,
        excerpt=excerpt,
        state=PostState(post.state).value,
        is_deleted=post.is_deleted,
        created_at=post.created_at,
        url=await post_url(course, post),
    )


# --- staff queues -----------------------------------------------------------------------


@dataclass(slots=True)
class SanctionRow:
    sanction: Sanction
    entry: LogEntry | None
    active: bool


async def sanction_rows(course: Course, user_id: int) -> list[SanctionRow]:
    now = utcnow()
    sanctions = await Sanction.filter(course_id=course.id, user_id=user_id).order_by("-id")
    entries = {e.seq: e for e in await LogEntry.filter(seq__in=[s.entry_seq for s in sanctions])}
    return [
        SanctionRow(
            s,
            entries.get(s.entry_seq),
            s.lifted_at is None and (s.kind == SanctionKind.WARNING or s.is_active(now)),
        )
        for s in sanctions
    ]


@dataclass(slots=True)
class FlagItem:
    flag: Flag
    flagger: User
    label: str
    post: PostPreview | None
    age: str
    suggested_rule: str


async def open_flags(
    course: Course, viewer: User, role: Role | None, rules: list[Rule]
) -> list[FlagItem]:
    """The course's open flags, oldest first, each with its post and a rule to suggest."""
    now = utcnow()
    codes = {r.code for r in rules}
    items = []
    flags = await Flag.filter(course_id=course.id, resolved_at=None).order_by("created_at", "id")
    for flag in flags:
        post = await Post.get_or_none(id=flag.post_id)
        category = FlagCategory(flag.category)
        suggestion = FLAG_RULES.get(category, "")
        items.append(
            FlagItem(
                flag=flag,
                flagger=await User.get(id=flag.flagger_id),  # type: ignore[attr-defined]
                label=FLAG_LABELS[category],
                post=await post_preview(course, post, viewer, role) if post else None,
                age=age(flag.created_at, now),
                suggested_rule=suggestion if suggestion in codes else "",
            )
        )
    return items


@dataclass(slots=True)
class AppealItem:
    appeal: Appeal
    appellant: User
    entry: LogEntry
    actor: User | None
    notice: Notice
    age: str
    own_act: bool


async def course_appeals(course: Course, viewer: User) -> tuple[list[AppealItem], list[AppealItem]]:
    """Pending appeals (oldest first) and the last 20 decided ones (newest first)."""
    now = utcnow()
    pending: list[AppealItem] = []
    decided: list[AppealItem] = []
    for row in await Appeal.filter(course_id=course.id).order_by("created_at", "id"):
        entry = await LogEntry.get(seq=row.entry_seq)
        item = AppealItem(
            appeal=row,
            appellant=await User.get(id=row.appellant_id),  # type: ignore[attr-defined]
            entry=entry,
            actor=await User.get_or_none(id=entry.actor_id) if entry.actor_id else None,
            notice=await Notice.get(id=row.notice_id),  # type: ignore[attr-defined]
            age=age(row.created_at, now),
            own_act=entry.actor_id == viewer.id,
        )
        (pending if row.status == AppealStatus.PENDING else decided).append(item)
    return pending, list(reversed(decided))[:20]


# --- the affected person ----------------------------------------------------------------


@dataclass(slots=True)
class NoticeItem:
    notice: Notice
    course: Course | None
    at: str  # UTC to the microsecond, as in the public log
    log_url: str
    appeal: Appeal | None
    can_appeal: bool
    appeal_note: str


def _appeal_state(notice: Notice, appeal: Appeal | None, now: datetime) -> tuple[bool, str]:
    if appeal is not None:
        return False, f"Appealed: {AppealStatus(appeal.status).value}."
    if notice.appeal_until is None:
        return False, "This act is not appealable."
    if now > notice.appeal_until:
        return False, f"The appeal window closed on {notice.appeal_until:%Y-%m-%d %H:%M} UTC."
    return True, f"You can appeal until {notice.appeal_until:%Y-%m-%d %H:%M} UTC."


async def notice_items(notices: list[Notice]) -> list[NoticeItem]:
    now = utcnow()
    course_ids = {n.course_id for n in notices if n.course_id}
    courses = {c.id: c for c in await Course.filter(id__in=course_ids)}
    seqs = [n.entry_seq for n in notices]
    appeals = {a.entry_seq: a for a in await Appeal.filter(entry_seq__in=seqs)}
    items = []
    for notice in notices:
        course = courses.get(notice.course_id) if notice.course_id else None
        appeal = appeals.get(notice.entry_seq)
        can_appeal, note = _appeal_state(notice, appeal, now)
        items.append(
            NoticeItem(
                notice=notice,
                course=course,
                at=timestamp(notice.created_at),
                log_url=log_url(course, notice.entry_seq),
                appeal=appeal,
                can_appeal=can_appeal,
                appeal_note=note,
            )
        )
    return items


@dataclass(slots=True)
class FlagFiled:
    flag: Flag
    course: Course
    label: str
    post_url: str


@dataclass(slots=True)
class Standing:
    notices: list[NoticeItem]
    sanctions: list[tuple[Sanction, Course, NoticeItem | None]]
    appeals: list[tuple[Appeal, NoticeItem | None]]
    flags: list[FlagFiled]


async def standing_of(user: User) -> Standing:
    """Every notice of the user, what restricts them now, their appeals and their flags."""
    now = utcnow()
    notices = await notice_items(list(await Notice.filter(user_id=user.id)))
    by_seq = {item.notice.entry_seq: item for item in notices}
    sanctions = [
        (s, await Course.get(id=s.course_id), by_seq.get(s.entry_seq))  # type: ignore[attr-defined]
        for s in await Sanction.filter(user_id=user.id, lifted_at=None).order_by("-id")
        if s.is_active(now)
    ]
    appeals = [
        (a, by_seq.get(a.entry_seq))
        for a in await Appeal.filter(appellant_id=user.id).order_by("-created_at", "-id")
    ]
    filed = []
    for row in await Flag.filter(flagger_id=user.id).order_by("-created_at", "-id").limit(100):
        course = await Course.get(id=row.course_id)
        post = await Post.get_or_none(id=row.post_id)
        filed.append(
            FlagFiled(
                row,
                course,
                FLAG_LABELS[FlagCategory(row.category)],
                await post_url(course, post) if post else "",
            )
        )
    return Standing(notices, sanctions, appeals, filed)
