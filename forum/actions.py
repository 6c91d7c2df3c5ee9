"""Every state change in the forums (DESIGN.md invariant 1)."""

from __future__ import annotations

import unicodedata
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from core import jobs
from core.errors import InvalidInput, NotFound, PermissionDenied
from core.models import Course, Membership, Role, User
from core.timeutil import utcnow
from forum import _sql
from forum.markup import MarkupError, render_markdown, validate_body
from forum.models import (
    Forum,
    Post,
    PostState,
    Revision,
    Subscription,
    Thread,
    ThreadKind,
    ThreadVisit,
    Vote,
    is_staff,
)

TITLE_MIN, TITLE_MAX = 3, 200


def _title(raw: str) -> str:
    title = " ".join(unicodedata.normalize("NFC", raw or "").split())
    if len(title) < TITLE_MIN:
        message = f"Give the thread a title of at least {TITLE_MIN} characters."
        raise InvalidInput(message, fields={"title": message})
    if len(title) > TITLE_MAX:
        message = f"A title can be at most {TITLE_MAX} characters; this one has {len(title)}."
        raise InvalidInput(message, fields={"title": message})
    return title


def _body(raw: str) -> tuple[str, str]:
    try:
        markdown = validate_body(raw or "")
    except MarkupError as exc:
        raise InvalidInput(str(exc), fields={"body": str(exc)}) from None
    return markdown, render_markdown(markdown)


async def _role(course_id: int, user: User | None) -> Role | None:
    if user is None:
        return None
    roles = await Membership.filter(course_id=course_id, user_id=user.id).values_list(
        "role", flat=True
    )
    return Role(str(roles[0])) if roles else None


def _refuse_sanctioned(kind: str | None, ends_at: datetime | None) -> None:
    """Silenced or suspended members are told so, with where to read why (no shadow bans)."""
    if kind is None:
        return
    from moderation.models import SanctionKind

    what = "silenced" if kind == SanctionKind.SILENCE else "suspended"
    until = f" until {ends_at:%Y-%m-%d %H:%M} UTC" if ends_at else ""
    raise PermissionDenied(
        f"You are {what} in this course{until}, so you cannot post. Your standing page "
        "(/me/standing) shows the rule, the reason and how to appeal."
    )


async def _check_may_write(course_id: int, user: User) -> None:
    from moderation.models import active_sanction

    sanction = await active_sanction(course_id, user.id, utcnow())
    if sanction is not None:
        _refuse_sanctioned(sanction.kind, sanction.ends_at)


async def _standing(thread_id: int, user: User, now: datetime) -> _sql.Standing:
    """The writer's role and sanction with the thread's course, read in one statement."""
    standing = await _sql.standing(thread_id, user.id, now)
    if standing is None:
        raise NotFound("There is no such thread in this course.")
    return standing


async def _over_post_limit(course_id: int, user: User) -> bool:
    """Count one post; True when it goes over the post rate limit (staff are exempt: the
    caller checks)."""
    from core import ratelimit, runtime

    limit = runtime.settings().post_rate_limit
    return await ratelimit.record(f"post:{course_id}:{user.id}", window_seconds=60) > limit


async def _silence_flooder(course_id: int, user: User) -> None:
    """Past the post rate limit the system silences the member for a while, on the record."""
    from core import runtime
    from moderation.actions import sanction_user
    from moderation.models import SanctionKind, Source

    limit = runtime.settings().post_rate_limit
    course = await Course.get(id=course_id)
    await sanction_user(
        course,
        user,
        SanctionKind.SILENCE,
        rule_code="R3",
        reason=f"Automatic: more than {limit} posts within one minute.",
        days=10 / 1440,
        acting_user=None,
        source=Source.AUTOMATIC,
    )
    raise PermissionDenied(
        f"You posted more than {limit} times in a minute, so posting is paused for 10 minutes. "
        "Your standing page (/me/standing) has the details."
    )


async def _check_flood(course_id: int, user: User) -> None:
    if await _over_post_limit(course_id, user) and not is_staff(user, await _role(course_id, user)):
        await _silence_flooder(course_id, user)


async def _changed(post_id: int) -> None:
    await jobs.enqueue_many([("search.index_post", {"post_id": post_id})])


async def create_forum(
    course: Course,
    *,
    title: str,
    description: str = "",
    allow_anonymous: bool = True,
    acting_user: User,
) -> Forum:
    """Add a forum at the end of the course's list (instructors)."""
    forum = Forum(course=course)
    if not forum.can_be_managed_by(acting_user, await course.role_of(acting_user)):
        raise PermissionDenied("Only the course's instructors can create forums.")
    title = " ".join((title or "").split())
    if not 1 <= len(title) <= 120:
        message = "A forum needs a title of 1-120 characters."
        raise InvalidInput(message, fields={"title": message})
    if len(description or "") > 2000:
        message = "A description can be at most 2,000 characters."
        raise InvalidInput(message, fields={"description": message})
    last = await Forum.filter(course_id=course.id).order_by("-position").first()
    return await Forum.create(
        course=course,
        title=title,
        description=(description or "").strip(),
        allow_anonymous=allow_anonymous,
        position=(last.position + 1) if last else 0,
    )


async def update_forum(
    forum: Forum, *, title: str, description: str, allow_anonymous: bool, acting_user: User
) -> Forum:
    """Rename, describe, or change the anonymity setting of a forum (instructors)."""
    if not forum.can_be_managed_by(acting_user, await _role(forum.course_id, acting_user)):  # type: ignore[attr-defined]
        raise PermissionDenied("Only the course's instructors can change forums.")
    title = " ".join((title or "").split())
    if not 1 <= len(title) <= 120:
        message = "A forum needs a title of 1-120 characters."
        raise InvalidInput(message, fields={"title": message})
    if len(description or "") > 2000:
        message = "A description can be at most 2,000 characters."
        raise InvalidInput(message, fields={"description": message})
    forum.title, forum.description = title, (description or "").strip()
    forum.allow_anonymous = allow_anonymous
    await forum.save(update_fields=["title", "description", "allow_anonymous"])
    return forum


async def move_forum(forum: Forum, *, up: bool, acting_user: User) -> list[Forum]:
    """Swap a forum with its neighbour in the course's order; returns the new order."""
    course_id: int = forum.course_id  # type: ignore[attr-defined]
    if not forum.can_be_managed_by(acting_user, await _role(course_id, acting_user)):
        raise PermissionDenied("Only the course's instructors can reorder forums.")
    async with in_transaction():
        ordered = await Forum.filter(course_id=course_id).order_by("position", "id")
        index = next(i for i, f in enumerate(ordered) if f.id == forum.id)
        other = index - 1 if up else index + 1
        if 0 <= other < len(ordered):
            ordered[index], ordered[other] = ordered[other], ordered[index]
        for position, item in enumerate(ordered):
            if item.position != position:
                item.position = position
                await Forum.filter(id=item.id).update(position=position)
    return ordered


async def start_thread(
    forum: Forum,
    *,
    kind: ThreadKind | str,
    title: str,
    body: str,
    anonymous: bool = False,
    acting_user: User,
) -> Thread:
    """Open a discussion or ask a question; the author is subscribed to replies."""
    course_id: int = forum.course_id  # type: ignore[attr-defined]
    role = await _role(course_id, acting_user)
    if not forum.can_be_posted_in_by(acting_user, role):
        raise PermissionDenied("Join the course to post in its forums.")
    await _check_may_write(course_id, acting_user)
    try:
        kind = ThreadKind(kind)
    except ValueError:
        message = "Choose discussion or question."
        raise InvalidInput(message, fields={"kind": message}) from None
    errors: dict[str, str] = {}
    try:
        title = _title(title)
    except InvalidInput as exc:
        errors.update(exc.fields)
    try:
        markdown, html = _body(body)
    except InvalidInput as exc:
        errors.update(exc.fields)
    if anonymous and not forum.allow_anonymous:
        errors["anonymous"] = "This forum does not allow anonymous posts."
    if errors:
        raise InvalidInput("Please correct the marked fields.", fields=errors)
    await _check_flood(course_id, acting_user)
    now = utcnow()
    async with in_transaction():
        thread = await Thread.create(
            forum=forum,
            course_id=course_id,
            kind=kind,
            title=title,
            author=acting_user,
            is_anonymous=anonymous,
            last_activity_at=now,
        )
        post = await Post.create(
            thread=thread,
            is_opening=True,
            author=acting_user,
            is_anonymous=anonymous,
            body_markdown=markdown,
            body_html=html,
        )
        await Subscription.create(thread=thread, user=acting_user)
        await ThreadVisit.create(thread=thread, user=acting_user, last_seen_at=now)
        await _changed(post.id)
    await jobs.wake()
    return thread


async def reply(
    thread: Thread,
    *,
    body: str,
    parent: Post | None = None,
    anonymous: bool = False,
    acting_user: User,
) -> Post:
    """Reply to a thread, or to one of its top-level posts; subscribers are told."""
    post, _ = await reply_and_count(
        thread, body=body, parent=parent, anonymous=anonymous, acting_user=acting_user
    )
    return post


async def reply_and_count(
    thread: Thread,
    *,
    body: str,
    parent: Post | None = None,
    anonymous: bool = False,
    acting_user: User,
) -> tuple[Post, int | None]:
    """`reply`, and for a new answer how many answers the thread has with it (None for a
    reply to an answer), so the caller can show the page the answer landed on."""
    now = utcnow()
    flooding = False
    answers: int | None = None
    # The checks read on the connection of the write: one statement for role, sanction
    # and forum setting, and the flood counter is kept even when the post is refused.
    async with in_transaction():
        standing = await _standing(thread.id, acting_user, now)
        role = Role(standing.role) if standing.role else None
        if not thread.can_be_replied_to_by(acting_user, role):
            if thread.is_locked:
                raise PermissionDenied("This thread is locked: no new replies.")
            raise PermissionDenied("Join the course to reply.")
        _refuse_sanctioned(standing.sanction_kind, standing.sanction_ends_at)
        if anonymous and not standing.allow_anonymous:
            message = "This forum does not allow anonymous posts."
            raise InvalidInput(message, fields={"anonymous": message})
        if parent is not None:
            if parent.thread_id != thread.id or parent.is_opening:  # type: ignore[attr-defined]
                message = "You can reply to the thread or to one of its answers."
                raise InvalidInput(message, fields={"parent": message})
            if parent.parent_id is not None:  # type: ignore[attr-defined]
                parent = await Post.get(id=parent.parent_id)  # type: ignore[attr-defined]
        markdown, html = _body(body)
        flooding = await _over_post_limit(standing.course_id, acting_user) and not is_staff(
            acting_user, role
        )
        if not flooding:
            post_id, answers = await _sql.add_reply(
                thread.id,
                parent.id if parent is not None else None,
                acting_user.id,
                anonymous=anonymous,
                markdown=markdown,
                html=html,
                at=now,
                count_answers=parent is None,
            )
            post = Post.construct(
                _saved_in_db=True,
                id=post_id,
                thread=thread,
                parent=parent,
                author=acting_user,
                is_opening=False,
                is_anonymous=anonymous,
                body_markdown=markdown,
                body_html=html,
                created_at=now,
                edited_at=None,
                revision_count=0,
                deleted_at=None,
                is_endorsed=False,
                vote_count=0,
                state=PostState.VISIBLE,
                state_seq=None,
            )
            await jobs.enqueue_many(
                [
                    ("forum.reply", {"post_id": post.id}),
                    ("search.index_post", {"post_id": post.id}),
                ]
            )
    if flooding:
        await _silence_flooder(standing.course_id, acting_user)
    thread.reply_count += 1
    thread.last_activity_at = now
    await jobs.wake()
    return post, answers


async def edit_post(
    post: Post,
    *,
    body: str,
    title: str | None = None,
    acting_user: User,
    rule_code: str = "",
    reason: str = "",
) -> Post:
    """Change a post's text (and the thread title for an opening post), keeping a revision.

    Staff editing someone else's post is a moderation act: it cites a rule and a reason and
    is logged with the edit.
    """
    thread_id: int = post.thread_id  # type: ignore[attr-defined]
    now = utcnow()
    async with in_transaction():
        standing = await _standing(thread_id, acting_user, now)
        role = Role(standing.role) if standing.role else None
        if not post.can_be_edited_by(acting_user, role):
            raise PermissionDenied("You can edit only your own posts.")
        moderating = not post.is_by(acting_user)
        if not moderating:
            _refuse_sanctioned(standing.sanction_kind, standing.sanction_ends_at)
        errors: dict[str, str] = {}
        old_title = standing.title
        new_title = old_title
        if title is not None and post.is_opening:
            try:
                new_title = _title(title)
            except InvalidInput as exc:
                errors.update(exc.fields)
        try:
            markdown, html = _body(body)
        except InvalidInput as exc:
            errors.update(exc.fields)
        if errors:
            raise InvalidInput("Please correct the marked fields.", fields=errors)
        if markdown == post.body_markdown and new_title == old_title:
            return post
        await Revision.create(
            post=post,
            editor=acting_user,
            previous_markdown=post.body_markdown,
            previous_title=old_title if post.is_opening else None,
            by_staff=moderating,
        )
        await Post.filter(id=post.id).update(
            body_markdown=markdown,
            body_html=html,
            edited_at=now,
            revision_count=F("revision_count") + 1,
        )
        if moderating:
            from moderation.actions import log_staff_edit

            await log_staff_edit(
                post,
                await Thread.get(id=thread_id),
                rule_code=rule_code,
                reason=reason,
                acting_user=acting_user,
                old_text=post.body_markdown,
                new_text=markdown,
            )
        if new_title != old_title:
            await Thread.filter(id=thread_id).update(title=new_title)
            # Every post of the thread carries its title in the index.
            await jobs.enqueue("search.index_thread", {"thread_id": thread_id})
        else:
            await _changed(post.id)
    post.body_markdown, post.body_html, post.edited_at = markdown, html, now
    post.revision_count += 1
    await jobs.wake()
    return post


async def delete_own_post(post: Post, *, acting_user: User) -> Post:
    """The author withdraws a post: its text and history go, a tombstone and replies stay."""
    if not post.can_be_deleted_by(acting_user):
        raise PermissionDenied("You can delete only your own posts.")
    async with in_transaction():
        now = await withdraw_post(post)
    post.deleted_at, post.body_markdown, post.body_html = now, "", ""
    await jobs.wake()
    return post


async def withdraw_post(post: Post) -> datetime:
    """Empty a post and its history, leaving a tombstone; runs in the caller's transaction.

    Shared by delete_own_post and account deletion (core/deletion.py), which checks its own
    permission; the caller calls jobs.wake() after commit.
    """
    now = utcnow()
    await Revision.filter(post_id=post.id).delete()
    await Post.filter(id=post.id).update(
        deleted_at=now, body_markdown="", body_html="", revision_count=0
    )
    if not post.is_opening:
        await Thread.filter(id=post.thread_id, reply_count__gt=0).update(  # type: ignore[attr-defined]
            reply_count=F("reply_count") - 1
        )
    # A withdrawn answer cannot stay the accepted one: the question is open again.
    unaccepted = await Thread.filter(
        id=post.thread_id,  # type: ignore[attr-defined]
        accepted_post_id=post.id,
    ).update(accepted_post_id=None)
    if unaccepted:
        await jobs.enqueue("search.index_thread", {"thread_id": post.thread_id})  # type: ignore[attr-defined]
    await _changed(post.id)
    return now


async def set_vote(post: Post, *, up: bool, acting_user: User) -> Post:
    """Upvote a post, or take the upvote back."""
    thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
    role = await _role(thread.course_id, acting_user)  # type: ignore[attr-defined]
    if not post.can_be_voted_on_by(acting_user, role):
        if post.is_by(acting_user):
            raise PermissionDenied("You cannot vote on your own post.")
        raise PermissionDenied("Join the course to vote.")
    await _check_may_write(thread.course_id, acting_user)  # type: ignore[attr-defined]
    async with in_transaction():
        if up:
            try:
                async with in_transaction():
                    await Vote.create(post=post, user=acting_user)
            except IntegrityError:
                pass
        else:
            await Vote.filter(post_id=post.id, user_id=acting_user.id).delete()
        count = await Vote.filter(post_id=post.id).count()
        await Post.filter(id=post.id).update(vote_count=count)
    post.vote_count = count
    return post


async def accept_answer(thread: Thread, post: Post | None, *, acting_user: User) -> Thread:
    """Mark (or with None, clear) the accepted answer of a question."""
    role = await _role(thread.course_id, acting_user)  # type: ignore[attr-defined]
    if not thread.can_accept_answer(acting_user, role):
        may_act = role is not None or acting_user.is_admin
        if thread.kind != ThreadKind.QUESTION and may_act:
            raise InvalidInput("Only questions have accepted answers.")
        raise PermissionDenied("Only the asker or the course's staff can accept an answer.")
    if post is not None:
        wrong_thread = post.thread_id != thread.id  # type: ignore[attr-defined]
        if wrong_thread or post.is_opening or post.is_deleted or post.parent_id is not None:  # type: ignore[attr-defined]
            raise InvalidInput("Choose an answer in this thread (not a reply to an answer).")
    thread.accepted_post_id = post.id if post else None
    async with in_transaction():
        await Thread.filter(id=thread.id).update(accepted_post_id=thread.accepted_post_id)
        await jobs.enqueue("search.index_thread", {"thread_id": thread.id})
    await jobs.wake()
    return thread


async def endorse(post: Post, *, endorsed: bool, acting_user: User) -> Post:
    """Staff mark a post as a good one (or take that back)."""
    thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
    if not is_staff(acting_user, await _role(thread.course_id, acting_user)):  # type: ignore[attr-defined]
        raise PermissionDenied("Only the course's staff can endorse posts.")
    post.is_endorsed = endorsed
    await Post.filter(id=post.id).update(is_endorsed=endorsed)
    return post


async def set_subscription(thread: Thread, *, subscribed: bool, acting_user: User) -> bool:
    """Follow or stop following a thread's replies."""
    role = await _role(thread.course_id, acting_user)  # type: ignore[attr-defined]
    if role is None and not acting_user.is_admin:
        raise PermissionDenied("Join the course to follow its threads.")
    if subscribed:
        await Subscription.get_or_create(thread=thread, user=acting_user)
    else:
        await Subscription.filter(thread_id=thread.id, user_id=acting_user.id).delete()
    return subscribed


async def mark_visited(thread: Thread, *, acting_user: User) -> None:
    """Remember that the user has read the thread up to now."""
    now = utcnow()
    updated = await ThreadVisit.filter(thread_id=thread.id, user_id=acting_user.id).update(
        last_seen_at=now
    )
    if not updated:
        try:
            await ThreadVisit.create(thread=thread, user=acting_user, last_seen_at=now)
        except IntegrityError:
            pass
