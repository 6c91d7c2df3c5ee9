"""Deleting an account: the person's data goes, the public record stays whole and verifiable.

The User row stays, emptied: log entries, posts and reviews refer to its id, and the
moderation log hashes ids, never names, so it keeps verifying. The account is renamed
deleted-<id>, shown as "Deleted user", has no email, profile or usable password, and can never
sign in again. Its old username is free for someone new.

Deleted: sessions, API tokens, notifications, data exports (rows and files), thread
subscriptions, visit markers, course memberships (a staff member leaving is a role change on
the log; a course's only instructor is refused until they hand it over), course-record
settings, unfinished review leases, and failed sign-in counters kept under the username.

Kept, and why:
- Posts, shown as by "Deleted user", so discussions others took part in still read. When the
  person asks and the course allows it (`Course.allow_removal_on_deletion`), each is withdrawn
  exactly as the author's own delete does (forum.actions.withdraw_post): a tombstone, text and
  history gone. Replies, votes and the thread stay.
- Peer review. Submitted reviews keep their scores and calibration answers stay: the grades of
  other learners are fitted from them, so removing them would move those grades. With removal
  asked and allowed, the review comments are blanked. Their own submissions are private work:
  the text, the attachments (rows and files) and the similarity signature go, but the rows
  stay, because classmates' reviews of them count for those reviewers, and staff grades,
  overrides and log entries refer to them. Emptied work is no longer handed out for review;
  other people's unfinished leases on it are released.
- The moderation record: sanctions, notices, appeals and flags refer to log entries and are
  what staff decided (or still have to decide) on; they refer to the person by id. An appeal
  or flag keeps the words its author wrote to staff. A notice's copy of a withdrawn post's
  text is blanked with the post.

Text written for other people that named the person ("<name> replied in …") now says
"Deleted user", and every thread they posted in is indexed again, so search forgets the name.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from tortoise.transactions import in_transaction

from core import jobs, runtime
from core.actions import DELETED_USERNAME_PREFIX
from core.errors import Conflict, NotFound, PermissionDenied
from core.models import (
    ApiToken,
    AuthSession,
    Course,
    DataExport,
    Membership,
    Notification,
    RateLimitCounter,
    Role,
    User,
)
from core.timeutil import utcnow
from forum import actions as forum_actions
from forum.models import DELETED_USER_LABEL, Post, Subscription, ThreadVisit
from moderation import log as moderation_log
from moderation.models import Act, LogEntry, Notice, TargetType
from peer_review import attachments
from peer_review.models import (
    Assignment,
    Attachment,
    LearnerRecord,
    Review,
    ReviewStatus,
    Submission,
)

log = logging.getLogger("agora.deletion")

# No password hash starts with "!": nothing ever verifies against it.
UNUSABLE_PASSWORD = "!deleted"
EXPORTS_FOLDER = "exports"
# How a reply notification goes on after the replier's name (forum/tasks.py: notify_reply).
REPLIED = " replied in “"
# Bound the size of IN (...) lists; SQLite limits the number of parameters of a statement.
CHUNK = 500

T = TypeVar("T")


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _titles(courses: Iterable[Course]) -> str:
    quoted = [f"“{course.title}”" for course in courses]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


@dataclass(frozen=True, slots=True)
class DeletionPlan:
    """What deleting an account would do, shown before anyone confirms."""

    # Courses where this person is the only instructor: deletion waits for a hand-over.
    sole_instructor_of: list[Course]
    # Their courses that keep posts and review comments even when removal is asked for.
    keeps_posts_in: list[Course]
    post_count: int
    review_count: int

    @property
    def blocked(self) -> bool:
        return bool(self.sole_instructor_of)


@dataclass(frozen=True, slots=True)
class DeletionResult:
    """What deletion did, for the page and the command line to report."""

    user_id: int
    # What the account is called now (deleted-<id>).
    username: str
    posts_removed: int
    posts_kept: int
    reviews_blanked: int
    # Titles of the courses whose rules kept posts although removal was asked for.
    kept_in: list[str]


async def _sole_instructor_of(user: User) -> list[Course]:
    teaching = cast(
        list[int],
        await Membership.filter(user_id=user.id, role=Role.INSTRUCTOR).values_list(
            "course_id", flat=True
        ),
    )
    alone: list[int] = []
    for course_id in teaching:
        others = (
            await Membership.filter(course_id=course_id, role=Role.INSTRUCTOR, user__is_active=True)
            .exclude(user_id=user.id)
            .count()
        )
        if others == 0:
            alone.append(course_id)
    return list(await Course.filter(id__in=alone).order_by("title")) if alone else []


async def deletion_plan(user: User) -> DeletionPlan:
    """The courses that block or limit deleting this account, and what it has written."""
    post_courses = cast(
        list[int],
        await Post.filter(author_id=user.id, deleted_at=None).values_list(
            "thread__course_id", flat=True
        ),
    )
    review_courses = cast(
        list[int],
        await Review.filter(reviewer_id=user.id, status__not=ReviewStatus.LEASED).values_list(
            "assignment__course_id", flat=True
        ),
    )
    member_of = cast(
        list[int], await Membership.filter(user_id=user.id).values_list("course_id", flat=True)
    )
    involved = {*post_courses, *review_courses, *member_of}
    keeps = (
        list(
            await Course.filter(id__in=sorted(involved), allow_removal_on_deletion=False).order_by(
                "title"
            )
        )
        if involved
        else []
    )
    return DeletionPlan(
        sole_instructor_of=await _sole_instructor_of(user),
        keeps_posts_in=keeps,
        post_count=len(post_courses),
        review_count=len(review_courses),
    )


def _hand_over_message(user: User, courses: list[Course], *, own: bool) -> str:
    who = "You are" if own else f"@{user.username} is"
    then = "delete your account" if own else "delete the account"
    return (
        f"{who} the only instructor of {_titles(courses)}. A course cannot be left without an "
        "instructor: make another member an instructor on the course's Members page first, "
        f"then {then}. Nothing was deleted."
    )


async def delete_account(
    user: User, *, remove_posts: bool, acting_user: User | None
) -> DeletionResult:
    """Delete an account by its owner, or (acting_user None) by a site admin's command.

    One transaction; files (attachments, exports) are removed once it has committed.
    """
    if acting_user is not None and acting_user.id != user.id and not acting_user.is_admin:
        raise PermissionDenied("You can delete only your own account.")
    own = acting_user is not None and acting_user.id == user.id
    data_dir = runtime.settings().data_dir
    async with in_transaction():
        account = await User.select_for_update().get_or_none(id=user.id)
        if account is None:
            raise NotFound("There is no such account.")
        if account.deleted_at is not None:
            raise Conflict("This account has already been deleted.")
        plan = await deletion_plan(account)
        if plan.blocked:
            raise Conflict(_hand_over_message(account, plan.sole_instructor_of, own=own))
        forbidden = {course.id for course in plan.keeps_posts_in}
        await _leave_courses(account, acting_user)
        removed, kept = await _forget_posts(account, remove_posts=remove_posts, forbidden=forbidden)
        blanked, stored = await _forget_peer_review(
            account, remove_posts=remove_posts, forbidden=forbidden
        )
        exports = await _forget_private_data(account)
        await _empty_account(account)
    _remove_files(data_dir, attachment_names=stored, export_names=exports)
    await jobs.wake()
    for name in ("username", "display_name", "email", "password_hash", "is_active", "deleted_at"):
        setattr(user, name, getattr(account, name))
    return DeletionResult(
        user_id=account.id,
        username=account.username,
        posts_removed=removed,
        posts_kept=kept,
        reviews_blanked=blanked,
        kept_in=[course.title for course in plan.keeps_posts_in] if remove_posts else [],
    )


async def _leave_courses(account: User, acting_user: User | None) -> None:
    """Memberships go; a mentor or instructor leaving is a role change on the public log."""
    memberships = await Membership.filter(user_id=account.id).order_by("course_id")
    for membership in memberships:
        role = Role(membership.role)
        if not role.is_staff:
            continue
        if acting_user is None:
            actor_role, reason = "system", "The account was deleted by a site administrator."
        elif acting_user.id == account.id:
            actor_role, reason = role.value, "The member deleted their account."
        else:
            actor_role, reason = "admin", "The account was deleted by a site administrator."
        await moderation_log.append(
            course_id=membership.course_id,  # type: ignore[attr-defined]
            actor_id=acting_user.id if acting_user is not None else None,
            actor_role=actor_role,
            act=Act.CHANGE_ROLE.value,
            target_type=TargetType.USER.value,
            target_id=account.id,
            reason=reason,
            old_value=role.value,
            new_value="none",
        )
    await Membership.filter(user_id=account.id).delete()


async def _forget_posts(
    account: User, *, remove_posts: bool, forbidden: set[int]
) -> tuple[int, int]:
    """Withdraw posts where asked and allowed, unname notifications, reindex; (removed, kept)."""
    rows: list[dict[str, Any]] = await Post.filter(author_id=account.id).values(
        "id", "thread_id", "deleted_at", "is_anonymous", "thread__course_id", "thread__course__slug"
    )
    # Anonymous posts were announced as "Anonymous learner": those notifications name nobody.
    links = sorted(
        f"/courses/{r['thread__course__slug']}/threads/{r['thread_id']}#post-{r['id']}"
        for r in rows
        if not r["is_anonymous"]
    )
    await _unname_reply_notifications(links, account.display_name)
    withdraw = [
        r["id"]
        for r in rows
        if remove_posts and r["deleted_at"] is None and r["thread__course_id"] not in forbidden
    ]
    for chunk in _chunks(withdraw):
        for post in await Post.filter(id__in=list(chunk)).order_by("id"):
            await forum_actions.withdraw_post(post)
    await _blank_notice_excerpts(account, withdraw)
    # Search documents carry the author's username: index every thread they wrote in again.
    for thread_id in sorted({r["thread_id"] for r in rows}):
        await jobs.enqueue("search.index_thread", {"thread_id": thread_id})
    await Subscription.filter(user_id=account.id).delete()
    await ThreadVisit.filter(user_id=account.id).delete()
    kept = sum(1 for r in rows if r["deleted_at"] is None) - len(withdraw)
    return len(withdraw), kept


async def _unname_reply_notifications(links: list[str], name: str) -> None:
    """Other people's "<name> replied in …" notifications about these posts say "Deleted user".

    The name is whatever it was when the reply was announced, perhaps an earlier one, so the
    text before the fixed wording (forum/tasks.py) is replaced, not the current name.
    """
    for chunk in _chunks(links):
        for notification in await Notification.filter(kind="reply", link__in=list(chunk)):
            text = notification.message
            at = text.find(REPLIED)
            if at >= 0:
                text = DELETED_USER_LABEL + text[at:]
            elif name:
                text = text.replace(name, DELETED_USER_LABEL)
            if text != notification.message:
                await Notification.filter(id=notification.id).update(message=text)


async def _blank_notice_excerpts(account: User, post_ids: list[int]) -> None:
    """A notice's copy of a withdrawn post's text goes with the post."""
    for chunk in _chunks(post_ids):
        seqs = await LogEntry.filter(
            target_type=TargetType.POST.value, target_id__in=list(chunk)
        ).values_list("seq", flat=True)
        if seqs:
            await Notice.filter(user_id=account.id, entry_seq__in=list(seqs)).update(
                content_excerpt=""
            )


async def _forget_peer_review(
    account: User, *, remove_posts: bool, forbidden: set[int]
) -> tuple[int, list[str]]:
    """Empty their submissions, end leases, blank comments where asked and allowed.

    Returns how many reviews were blanked and the attachment files to remove after commit.
    """
    await Review.filter(reviewer_id=account.id, status=ReviewStatus.LEASED).delete()
    submission_ids = list(
        await Submission.filter(author_id=account.id).values_list("id", flat=True)
    )
    stored: list[str] = []
    for chunk in _chunks(submission_ids):
        ids = list(chunk)
        # Others' unfinished reviews of work that is now empty: they get other work instead.
        await Review.filter(submission_id__in=ids, status=ReviewStatus.LEASED).delete()
        stored += [
            str(name)
            for name in await Attachment.filter(submission_id__in=ids).values_list(
                "storage_name", flat=True
            )
        ]
        await Attachment.filter(submission_id__in=ids).delete()
    if submission_ids:
        await Submission.filter(author_id=account.id).update(
            body_markdown="", body_html="", signature=None
        )
    await LearnerRecord.filter(learner_id=account.id).delete()
    blanked = 0
    if remove_posts:
        allowed = Assignment.filter(course__allow_removal_on_deletion=True)
        if forbidden:
            allowed = allowed.exclude(course_id__in=sorted(forbidden))
        assignment_ids = list(await allowed.values_list("id", flat=True))
        reviews = (
            await Review.filter(reviewer_id=account.id, assignment_id__in=assignment_ids)
            if assignment_ids
            else []
        )
        for review in reviews:
            answers = {
                cid: {**answer, "comment": ""} if isinstance(answer, dict) else answer
                for cid, answer in (review.answers or {}).items()
            }
            if answers == review.answers and not review.overall_comment:
                continue
            await Review.filter(id=review.id).update(answers=answers, overall_comment="")
            blanked += 1
    return blanked, stored


async def _forget_private_data(account: User) -> list[str]:
    """Sessions, tokens, notifications, exports and counters; returns export files to remove."""
    await AuthSession.filter(user_id=account.id).delete()
    await ApiToken.filter(user_id=account.id).delete()
    await Notification.filter(user_id=account.id).delete()
    exports = [
        str(name)
        for name in await DataExport.filter(user_id=account.id).values_list("file_name", flat=True)
        if name
    ]
    await DataExport.filter(user_id=account.id).delete()
    # Failed sign-ins are counted under the username (core/views.py: login).
    await RateLimitCounter.filter(key=f"login-user:{account.username}").delete()
    return exports


async def _empty_account(account: User) -> None:
    username = f"{DELETED_USERNAME_PREFIX}{account.id}"
    if await User.filter(username=username).exclude(id=account.id).exists():
        username = f"{username}-{secrets.token_hex(3)}"
    values: dict[str, Any] = {
        "username": username,
        "display_name": DELETED_USER_LABEL,
        "email": None,
        "password_hash": UNUSABLE_PASSWORD,
        "is_admin": False,
        "can_create_courses": False,
        "is_active": False,
        "about": "",
        "links": [],
        "profile_public": False,
        "email_prefs": {},
        "last_digest_at": None,
        "deleted_at": utcnow(),
    }
    await User.filter(id=account.id).update(**values)
    for name, value in values.items():
        setattr(account, name, value)


def _remove_files(
    data_dir: Path, *, attachment_names: Sequence[str], export_names: Sequence[str]
) -> None:
    """Remove the files of a committed deletion; a failure is logged, never raised."""
    paths: list[Path] = []
    for name in attachment_names:
        try:
            paths.append(attachments.storage_path(data_dir, name))
        except ValueError:
            log.warning("attachment with an invalid storage name %r left alone", name)
    for name in export_names:
        if Path(name).name == name and not name.startswith("."):
            paths.append(data_dir / EXPORTS_FOLDER / name)
        else:
            log.warning("export with an invalid file name %r left alone", name)
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            log.exception("could not remove %s of a deleted account", path)
