"""Every moderation act: the change, its log entry and the notice, in one transaction.

Each act checks permission, cites a course rule and a reason, changes state, appends exactly
one entry to the tamper-evident log (moderation/log.py) and tells the person affected
(DESIGN.md invariants 2 and 4). Acts whose caller already holds a transaction say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from tortoise.transactions import in_transaction

from core import jobs, runtime
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.models import Course, Membership, Role, User
from core.timeutil import utcnow
from forum.markup import plain_text
from forum.models import Forum, Post, PostState, Thread
from moderation import log
from moderation.models import (
    DEFAULT_RULES,
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
    Source,
    TargetType,
)

REASON_MIN = 10
REASON_MAX = 2000
MAX_SANCTION_DAYS = 365
SYSTEM_ROLE = "system"


@dataclass(frozen=True, slots=True)
class Citation:
    """The rule an act cites and the reason given, both shown verbatim to everyone."""

    rule: Rule
    reason: str


async def ensure_default_rules(course: Course) -> list[Rule]:
    """Give a course the default rules the first time anyone needs them."""
    rules = await Rule.filter(course_id=course.id).order_by("position", "id")
    if rules:
        return list(rules)
    for position, (code, text) in enumerate(DEFAULT_RULES):
        await Rule.get_or_create(
            course=course, code=code, defaults={"text": text, "position": position}
        )
    return list(await Rule.filter(course_id=course.id).order_by("position", "id"))


async def _cite(course_id: int, rule_code: str, reason: str) -> Citation:
    errors: dict[str, str] = {}
    course = await Course.get(id=course_id)
    await ensure_default_rules(course)
    rule = await Rule.get_or_none(
        course_id=course_id, code=(rule_code or "").strip(), retired=False
    )
    if rule is None:
        errors["rule"] = "Choose one of the course's rules."
    reason = " ".join((reason or "").split())
    if len(reason) < REASON_MIN:
        errors["reason"] = (
            f"Give a reason of at least {REASON_MIN} characters; it is shown as written."
        )
    elif len(reason) > REASON_MAX:
        errors["reason"] = f"A reason can be at most {REASON_MAX} characters."
    if errors:
        raise InvalidInput("Every moderation act cites a rule and gives a reason.", fields=errors)
    assert rule is not None
    return Citation(rule=rule, reason=reason)


async def staff_role(course_id: int, user: User) -> str:
    """The role an actor acts in: their course role, or 'admin' for site administrators."""
    membership = await Membership.get_or_none(course_id=course_id, user_id=user.id)
    if membership is not None and Role(membership.role).is_staff:
        return Role(membership.role).value
    if user.is_admin:
        return "admin"
    raise PermissionDenied("Only the course's mentors, instructors and site admins moderate.")


async def _rank(course_id: int, user_id: int) -> int:
    membership = await Membership.get_or_none(course_id=course_id, user_id=user_id)
    role = Role(membership.role) if membership else Role.LEARNER
    return {Role.LEARNER: 0, Role.MENTOR: 1, Role.INSTRUCTOR: 2}[role]


async def _check_over(course_id: int, actor: User, actor_role: str, target_user_id: int) -> None:
    """Mentors act on learners; instructors on learners and mentors; admins on anyone."""
    if actor.id == target_user_id:
        raise PermissionDenied("You cannot moderate yourself.")
    if actor_role == "admin":
        return
    own = {"mentor": 1, "instructor": 2}[actor_role]
    if await _rank(course_id, target_user_id) >= own:
        raise PermissionDenied("You can only act on members with a lower role than yours.")


async def _notify(
    *,
    user_id: int,
    course: Course | None,
    entry: LogEntry,
    summary: str,
    citation: Citation | None,
    excerpt: str = "",
    ends_at: object = None,
    appealable: bool = True,
) -> Notice:
    """The durable notice for the person affected, written with the act."""
    appeal_until = (
        entry.created_at + timedelta(days=runtime.settings().appeal_days) if appealable else None
    )
    notice = await Notice.create(
        user_id=user_id,
        course_id=course.id if course else None,
        entry_seq=entry.seq,
        act=entry.act,
        summary=summary,
        content_excerpt=excerpt,
        rule_code=citation.rule.code if citation else "",
        rule_text=citation.rule.text if citation else "",
        reason=citation.reason if citation else entry.reason,
        automatic=entry.source == Source.AUTOMATIC,
        ends_at=ends_at,
        appeal_until=appeal_until,
        created_at=entry.created_at,
    )
    await jobs.enqueue(
        "core.notify",
        {
            "user_id": user_id,
            "kind": "moderation",
            "message": summary,
            "link": "/me/standing",
            "notice_id": notice.id,
        },
    )
    return notice


async def _post_context(post: Post) -> tuple[Thread, Course]:
    thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
    course = await Course.get(id=thread.course_id)  # type: ignore[attr-defined]
    return thread, course


def _excerpt(post: Post) -> str:
    return plain_text(post.body_html, is_html=True, max_chars=300)


async def _resolve_flags(post_id: int, entry: LogEntry, outcome: str) -> None:
    """Open flags on the post are answered by the act taken on it."""
    flags = await Flag.filter(post_id=post_id, resolved_at=None)
    for flag in flags:
        await Flag.filter(id=flag.id).update(
            resolved_at=entry.created_at, resolution_seq=entry.seq, outcome=outcome
        )
        await jobs.enqueue(
            "core.notify",
            {
                "user_id": flag.flagger_id,
                "kind": "flag",  # type: ignore[attr-defined]
                "message": f"Your flag was handled: {outcome}",
                "link": "/me/standing",
            },
        )


async def _set_post_state(
    post: Post,
    new_state: PostState,
    act: Act,
    *,
    rule_code: str,
    reason: str,
    acting_user: User,
    source: Source = Source.MANUAL,
    reverses_seq: int | None = None,
) -> LogEntry:
    thread, course = await _post_context(post)
    actor_role = await staff_role(course.id, acting_user)
    if post.author_id is not None:  # type: ignore[attr-defined]
        await _check_over(course.id, acting_user, actor_role, post.author_id)  # type: ignore[attr-defined]
    citation = await _cite(course.id, rule_code, reason)
    old_state = PostState(post.state)
    expected_from = {
        PostState.HIDDEN: {PostState.VISIBLE},
        PostState.REMOVED: {PostState.VISIBLE, PostState.HIDDEN},
        PostState.VISIBLE: {PostState.HIDDEN, PostState.REMOVED},
    }[new_state]
    if post.is_deleted:
        raise Conflict("Its author deleted this post; there is nothing to moderate.")
    if old_state not in expected_from:
        done = {
            Act.HIDE_POST: "hidden",
            Act.REMOVE_POST: "removed",
            Act.UNHIDE_POST: "unhidden",
            Act.RESTORE_POST: "restored",
        }[act]
        raise Conflict(f"This post is {old_state.value}; it cannot be {done} now.")
    words = {
        Act.HIDE_POST: "was hidden from other learners",
        Act.REMOVE_POST: "was removed",
        Act.UNHIDE_POST: "is visible again",
        Act.RESTORE_POST: "was restored",
    }[act]
    async with in_transaction():
        entry = await log.append(
            course_id=course.id,
            actor_id=acting_user.id,
            actor_role=actor_role,
            act=act.value,
            target_type=TargetType.POST.value,
            target_id=post.id,
            rule_code=citation.rule.code,
            reason=citation.reason,
            old_value=old_state.value,
            new_value=new_state.value,
            reverses_seq=reverses_seq,
            source=source.value,
        )
        updated = await Post.filter(id=post.id, state=old_state).update(
            state=new_state, state_seq=entry.seq if new_state != PostState.VISIBLE else None
        )
        if not updated:
            raise Conflict("Someone else moderated this post just now; reload and look again.")
        await jobs.enqueue("search.index_post", {"post_id": post.id})
        if post.author_id is not None:  # type: ignore[attr-defined]
            await _notify(
                user_id=post.author_id,  # type: ignore[attr-defined]
                course=course,
                entry=entry,
                summary=f"Your post in “{thread.title}” ({course.title}) {words}.",
                citation=citation,
                excerpt=_excerpt(post),
                appealable=new_state != PostState.VISIBLE,
            )
        if new_state != PostState.VISIBLE:
            await _resolve_flags(post.id, entry, f"the post {words}.")
    post.state = new_state
    post.state_seq = entry.seq if new_state != PostState.VISIBLE else None
    await jobs.wake()
    return entry


async def hide_post(
    post: Post, *, rule_code: str, reason: str, acting_user: User, source: Source = Source.MANUAL
) -> LogEntry:
    """Hide a post from learners; its author and the staff still see it."""
    return await _set_post_state(
        post,
        PostState.HIDDEN,
        Act.HIDE_POST,
        rule_code=rule_code,
        reason=reason,
        acting_user=acting_user,
        source=source,
    )


async def unhide_post(
    post: Post, *, rule_code: str, reason: str, acting_user: User, source: Source = Source.MANUAL
) -> LogEntry:
    """Make a hidden post visible again."""
    if post.state != PostState.HIDDEN:
        raise Conflict("This post is not hidden.")
    return await _set_post_state(
        post,
        PostState.VISIBLE,
        Act.UNHIDE_POST,
        rule_code=rule_code,
        reason=reason,
        acting_user=acting_user,
        source=source,
        reverses_seq=post.state_seq,
    )


async def remove_post(
    post: Post, *, rule_code: str, reason: str, acting_user: User, source: Source = Source.MANUAL
) -> LogEntry:
    """Remove a post: only the course's staff still see its text (kept for appeals)."""
    return await _set_post_state(
        post,
        PostState.REMOVED,
        Act.REMOVE_POST,
        rule_code=rule_code,
        reason=reason,
        acting_user=acting_user,
        source=source,
    )


async def restore_post(
    post: Post, *, rule_code: str, reason: str, acting_user: User, source: Source = Source.MANUAL
) -> LogEntry:
    """Bring a removed post back."""
    if post.state != PostState.REMOVED:
        raise Conflict("This post is not removed.")
    return await _set_post_state(
        post,
        PostState.VISIBLE,
        Act.RESTORE_POST,
        rule_code=rule_code,
        reason=reason,
        acting_user=acting_user,
        source=source,
        reverses_seq=post.state_seq,
    )


async def log_staff_edit(
    post: Post,
    thread: Thread,
    *,
    rule_code: str,
    reason: str,
    acting_user: User,
    old_text: str,
    new_text: str,
) -> LogEntry:
    """The log entry and notice for a staff member editing someone else's post.

    Runs inside forum.actions.edit_post's transaction, so the edit and its entry commit
    together.
    """
    course = await Course.get(id=thread.course_id)  # type: ignore[attr-defined]
    actor_role = await staff_role(course.id, acting_user)
    if post.author_id is not None:  # type: ignore[attr-defined]
        await _check_over(course.id, acting_user, actor_role, post.author_id)  # type: ignore[attr-defined]
    citation = await _cite(course.id, rule_code, reason)
    entry = await log.append(
        course_id=course.id,
        actor_id=acting_user.id,
        actor_role=actor_role,
        act=Act.EDIT_POST.value,
        target_type=TargetType.POST.value,
        target_id=post.id,
        rule_code=citation.rule.code,
        reason=citation.reason,
        old_value=f"revision {post.revision_count}",
        new_value=f"revision {post.revision_count + 1}",
    )
    if post.author_id is not None:  # type: ignore[attr-defined]
        await _notify(
            user_id=post.author_id,  # type: ignore[attr-defined]
            course=course,
            entry=entry,
            summary=f"A moderator edited your post in “{thread.title}”; the history keeps "
            "your text.",
            citation=citation,
            excerpt=plain_text(old_text, max_chars=300),
        )
    return entry


async def _thread_act(
    thread: Thread,
    act: Act,
    changes: dict[str, object],
    *,
    old_value: str,
    new_value: str,
    rule_code: str,
    reason: str,
    acting_user: User,
    reverses_seq: int | None = None,
    source: Source = Source.MANUAL,
) -> LogEntry:
    course = await Course.get(id=thread.course_id)  # type: ignore[attr-defined]
    actor_role = await staff_role(course.id, acting_user)
    citation = await _cite(course.id, rule_code, reason)
    async with in_transaction():
        entry = await log.append(
            course_id=course.id,
            actor_id=acting_user.id,
            actor_role=actor_role,
            act=act.value,
            target_type=TargetType.THREAD.value,
            target_id=thread.id,
            rule_code=citation.rule.code,
            reason=citation.reason,
            old_value=old_value,
            new_value=new_value,
            reverses_seq=reverses_seq,
            source=source.value,
        )
        await Thread.filter(id=thread.id).update(**changes)
        if act == Act.MOVE_THREAD:
            await jobs.enqueue("search.index_thread", {"thread_id": thread.id})
        if thread.author_id is not None and thread.author_id != acting_user.id:  # type: ignore[attr-defined]
            await _notify(
                user_id=thread.author_id,  # type: ignore[attr-defined]
                course=course,
                entry=entry,
                summary=f"Your thread “{thread.title}”: {act.value.replace('_', ' ')} "
                f"({old_value} → {new_value}).",
                citation=citation,
                appealable=act in {Act.LOCK_THREAD, Act.MOVE_THREAD},
            )
    for name, value in changes.items():
        setattr(thread, name, value)
    await jobs.wake()
    return entry


async def lock_thread(
    thread: Thread,
    *,
    locked: bool,
    rule_code: str,
    reason: str,
    acting_user: User,
    source: Source = Source.MANUAL,
    reverses_seq: int | None = None,
) -> LogEntry:
    """Lock a thread against new replies, or unlock it."""
    if thread.is_locked == locked:
        raise Conflict("The thread is already " + ("locked." if locked else "unlocked."))
    return await _thread_act(
        thread,
        Act.LOCK_THREAD if locked else Act.UNLOCK_THREAD,
        {"is_locked": locked},
        old_value="locked" if thread.is_locked else "open",
        new_value="locked" if locked else "open",
        rule_code=rule_code,
        reason=reason,
        acting_user=acting_user,
        source=source,
        reverses_seq=reverses_seq,
    )


async def pin_thread(
    thread: Thread, *, pinned: bool, rule_code: str, reason: str, acting_user: User
) -> LogEntry:
    """Pin a thread to the top of its forum, or unpin it."""
    if thread.is_pinned == pinned:
        raise Conflict("The thread is already " + ("pinned." if pinned else "not pinned."))
    return await _thread_act(
        thread,
        Act.PIN_THREAD if pinned else Act.UNPIN_THREAD,
        {"is_pinned": pinned},
        old_value="pinned" if thread.is_pinned else "unpinned",
        new_value="pinned" if pinned else "unpinned",
        rule_code=rule_code,
        reason=reason,
        acting_user=acting_user,
    )


async def move_thread(
    thread: Thread,
    forum: Forum,
    *,
    rule_code: str,
    reason: str,
    acting_user: User,
    source: Source = Source.MANUAL,
    reverses_seq: int | None = None,
) -> LogEntry:
    """Move a thread to another forum of the same course."""
    if forum.course_id != thread.course_id:  # type: ignore[attr-defined]
        raise InvalidInput("Choose a forum of the same course.", fields={"forum": "other course"})
    if forum.id == thread.forum_id:  # type: ignore[attr-defined]
        raise Conflict("The thread is already in that forum.")
    return await _thread_act(
        thread,
        Act.MOVE_THREAD,
        {"forum_id": forum.id},
        old_value=f"forum {thread.forum_id}",
        new_value=f"forum {forum.id}",  # type: ignore[attr-defined]
        rule_code=rule_code,
        reason=reason,
        acting_user=acting_user,
        source=source,
        reverses_seq=reverses_seq,
    )


_SANCTION_ACTS = {
    SanctionKind.WARNING: Act.WARN_USER,
    SanctionKind.SILENCE: Act.SILENCE_USER,
    SanctionKind.SUSPENSION: Act.SUSPEND_USER,
}


async def sanction_user(
    course: Course,
    user: User,
    kind: SanctionKind | str,
    *,
    rule_code: str,
    reason: str,
    days: float | None = None,
    acting_user: User | None,
    source: Source = Source.MANUAL,
) -> LogEntry:
    """Warn, silence (can read, cannot post) or suspend (no access) a member of a course.

    acting_user None is the system (an automatic rule); it still cites a rule and a reason.
    """
    try:
        kind = SanctionKind(kind)
    except ValueError:
        message = "Choose a warning, a silence or a suspension."
        raise InvalidInput(message, fields={"kind": message}) from None
    if acting_user is None:
        actor_role, actor_id = SYSTEM_ROLE, None
    else:
        actor_role, actor_id = await staff_role(course.id, acting_user), acting_user.id
        await _check_over(course.id, acting_user, actor_role, user.id)
    if not await Membership.filter(course_id=course.id, user_id=user.id).exists():
        raise NotFound("This person is not a member of the course.")
    citation = await _cite(course.id, rule_code, reason)
    duration: int | None = None
    if kind != SanctionKind.WARNING:
        if days is None or not 0 < days <= MAX_SANCTION_DAYS:
            message = f"Give a duration between a few minutes and {MAX_SANCTION_DAYS} days."
            raise InvalidInput(message, fields={"days": message})
        duration = round(days * 86400)
    now = utcnow()
    ends_at = now + timedelta(seconds=duration) if duration else None
    async with in_transaction():
        entry = await log.append(
            course_id=course.id,
            actor_id=actor_id,
            actor_role=actor_role,
            act=_SANCTION_ACTS[kind].value,
            target_type=TargetType.USER.value,
            target_id=user.id,
            rule_code=citation.rule.code,
            reason=citation.reason,
            duration_seconds=duration,
            source=source.value,
        )
        await Sanction.create(
            course=course,
            user=user,
            kind=kind,
            starts_at=entry.created_at,
            ends_at=ends_at,
            entry_seq=entry.seq,
        )
        what = {
            SanctionKind.WARNING: "You received a warning",
            SanctionKind.SILENCE: "You are silenced (you can read but not post)",
            SanctionKind.SUSPENSION: "You are suspended from the course",
        }[kind]
        until = f" until {ends_at:%Y-%m-%d %H:%M} UTC" if ends_at else ""
        await _notify(
            user_id=user.id,
            course=course,
            entry=entry,
            summary=f"{what} in {course.title}{until}.",
            citation=citation,
            ends_at=ends_at,
        )
    await jobs.wake()
    return entry


async def lift_sanction(
    sanction: Sanction,
    *,
    rule_code: str,
    reason: str,
    acting_user: User,
    source: Source = Source.MANUAL,
) -> LogEntry:
    """End a silence or suspension early (or withdraw a warning)."""
    course = await Course.get(id=sanction.course_id)  # type: ignore[attr-defined]
    actor_role = await staff_role(course.id, acting_user)
    await _check_over(course.id, acting_user, actor_role, sanction.user_id)  # type: ignore[attr-defined]
    if sanction.lifted_at is not None:
        raise Conflict("This sanction was already lifted.")
    citation = await _cite(course.id, rule_code, reason)
    async with in_transaction():
        entry = await log.append(
            course_id=course.id,
            actor_id=acting_user.id,
            actor_role=actor_role,
            act=Act.LIFT_SANCTION.value,
            target_type=TargetType.USER.value,
            target_id=sanction.user_id,  # type: ignore[attr-defined]
            rule_code=citation.rule.code,
            reason=citation.reason,
            old_value=SanctionKind(sanction.kind).value,
            new_value="lifted",
            reverses_seq=sanction.entry_seq,
            source=source.value,
        )
        await Sanction.filter(id=sanction.id).update(lifted_at=entry.created_at)
        await _notify(
            user_id=sanction.user_id,  # type: ignore[attr-defined]
            course=course,
            entry=entry,
            summary=f"Your {SanctionKind(sanction.kind).value} in {course.title} was lifted.",
            citation=citation,
            appealable=False,
        )
    sanction.lifted_at = entry.created_at
    await jobs.wake()
    return entry


async def log_role_change(
    course: Course,
    member: User,
    *,
    old_role: Role | None,
    new_role: Role,
    acting_user: User,
) -> LogEntry:
    """The log entry for a role change; runs inside core.actions.set_member_role's transaction."""
    actor_role = await staff_role(course.id, acting_user)
    return await log.append(
        course_id=course.id,
        actor_id=acting_user.id,
        actor_role=actor_role,
        act=Act.CHANGE_ROLE.value,
        target_type=TargetType.USER.value,
        target_id=member.id,
        rule_code="",
        reason="Role assigned by the course's instructors.",
        old_value=old_role.value if old_role else "none",
        new_value=new_role.value,
    )


async def flag_post(
    post: Post, *, category: FlagCategory | str, text: str = "", acting_user: User
) -> Flag:
    """A member reports a post to the course's moderators."""
    _, course = await _post_context(post)
    role = await course.role_of(acting_user)
    if role is None and not acting_user.is_admin:
        raise PermissionDenied("Join the course to flag posts.")
    try:
        category = FlagCategory(category)
    except ValueError:
        raise InvalidInput(
            "Choose why you are flagging this post.", fields={"category": "Choose a reason."}
        ) from None
    text = " ".join((text or "").split())
    if category == FlagCategory.OTHER and len(text) < 5:
        message = "Say briefly what is wrong with the post."
        raise InvalidInput(message, fields={"text": message})
    if len(text) > 1000:
        raise InvalidInput("Keep it under 1,000 characters.", fields={"text": "too long"})
    if post.is_by(acting_user):
        raise InvalidInput("You cannot flag your own post.")
    existing = await Flag.get_or_none(post_id=post.id, flagger_id=acting_user.id, resolved_at=None)
    if existing is not None:
        return existing
    return await Flag.create(
        course_id=course.id,
        post_id=post.id,
        flagger=acting_user,
        category=category,
        text=text,
        created_at=utcnow(),
    )


async def dismiss_flag(flag: Flag, *, rule_code: str, reason: str, acting_user: User) -> LogEntry:
    """Close a flag without acting on the post; the flagger learns the outcome."""
    actor_role = await staff_role(flag.course_id, acting_user)
    if flag.resolved_at is not None:
        raise Conflict("This flag was already handled.")
    citation = await _cite(flag.course_id, rule_code, reason)
    async with in_transaction():
        entry = await log.append(
            course_id=flag.course_id,
            actor_id=acting_user.id,
            actor_role=actor_role,
            act=Act.RESOLVE_FLAG.value,
            target_type=TargetType.FLAG.value,
            target_id=flag.id,
            rule_code=citation.rule.code,
            reason=citation.reason,
            old_value="open",
            new_value="dismissed",
            source=Source.FLAG.value,
        )
        outcome = f"no action was taken ({citation.reason})"
        await Flag.filter(id=flag.id).update(
            resolved_at=entry.created_at, resolution_seq=entry.seq, outcome=outcome
        )
        await jobs.enqueue(
            "core.notify",
            {
                "user_id": flag.flagger_id,
                "kind": "flag",  # type: ignore[attr-defined]
                "message": f"Your flag was handled: {outcome}",
                "link": "/me/standing",
            },
        )
    await jobs.wake()
    return entry


async def appeal(notice: Notice, *, text: str, acting_user: User) -> Appeal:
    """The affected person asks for a second look, once per act, within the appeal window."""
    if notice.user_id != acting_user.id:  # type: ignore[attr-defined]
        raise PermissionDenied("Only the person affected can appeal.")
    if notice.appeal_until is None:
        raise Conflict("This act cannot be appealed.")
    if utcnow() > notice.appeal_until:
        raise Conflict(f"The appeal window closed on {notice.appeal_until:%Y-%m-%d}.")
    text = (text or "").strip()
    if not 20 <= len(text) <= 4000:
        message = "Explain in 20 to 4,000 characters why the decision should change."
        raise InvalidInput(message, fields={"text": message})
    if await Appeal.filter(entry_seq=notice.entry_seq).exists():
        raise Conflict("This act has already been appealed.")
    return await Appeal.create(
        notice=notice,
        entry_seq=notice.entry_seq,
        appellant=acting_user,
        course_id=notice.course_id,
        text=text,
        created_at=utcnow(),
    )


async def decide_appeal(
    appeal_row: Appeal, *, overturn: bool, decision: str, acting_user: User
) -> LogEntry:
    """A different staff member decides; overturning reverses the act, also on the record."""
    if appeal_row.status != AppealStatus.PENDING:
        raise Conflict("This appeal was already decided.")
    original = await LogEntry.get(seq=appeal_row.entry_seq)
    if original.course_id is None:
        raise PermissionDenied("Site-wide acts are appealed to the administrators.")
    actor_role = await staff_role(original.course_id, acting_user)
    if original.actor_id == acting_user.id:
        raise PermissionDenied("Someone other than the moderator who acted must decide.")
    if original.actor_role == "instructor" and actor_role not in {"instructor", "admin"}:
        raise PermissionDenied("An instructor's act is decided by another instructor.")
    if original.actor_role == "mentor" and actor_role == "mentor":
        raise PermissionDenied("A mentor's act is decided by an instructor.")
    decision = " ".join((decision or "").split())
    if len(decision) < REASON_MIN:
        message = f"Write a decision of at least {REASON_MIN} characters; the appellant reads it."
        raise InvalidInput(message, fields={"decision": message})
    # The reversal cites the original rule after the decision commits: check it still can.
    if (
        overturn
        and original.rule_code
        and not await Rule.filter(
            course_id=original.course_id, code=original.rule_code, retired=False
        ).exists()
    ):
        raise Conflict(f"Rule {original.rule_code} is retired; bring it back before overturning.")
    notice = await Notice.get(id=appeal_row.notice_id)  # type: ignore[attr-defined]
    async with in_transaction():
        entry = await log.append(
            course_id=original.course_id,
            actor_id=acting_user.id,
            actor_role=actor_role,
            act=Act.DECIDE_APPEAL.value,
            target_type=TargetType.APPEAL.value,
            target_id=appeal_row.id,
            rule_code=original.rule_code,
            reason=decision,
            old_value="pending",
            new_value="overturned" if overturn else "upheld",
            reverses_seq=original.seq if overturn else None,
            source=Source.APPEAL.value,
        )
        status = AppealStatus.OVERTURNED if overturn else AppealStatus.UPHELD
        await Appeal.filter(id=appeal_row.id, status=AppealStatus.PENDING).update(
            status=status,
            decided_at=entry.created_at,
            decided_by_id=acting_user.id,
            decision_text=decision,
            decision_seq=entry.seq,
        )
        course = await Course.get(id=original.course_id)
        rule = await Rule.get_or_none(course_id=course.id, code=original.rule_code)
        await _notify(
            user_id=notice.user_id,  # type: ignore[attr-defined]
            course=course,
            entry=entry,
            summary=f"Your appeal in {course.title} was decided: {status.value}. {decision}",
            citation=Citation(rule=rule, reason=decision) if rule else None,
            excerpt=notice.content_excerpt,
            appealable=False,
        )
        if overturn:
            # Same transaction: a decision to overturn never stands without its reversal.
            await _reverse(original, decision=decision, acting_user=acting_user)
    appeal_row.status = status
    await jobs.wake()
    return entry


async def _reverse(original: LogEntry, *, decision: str, acting_user: User) -> None:
    """Undo an overturned act with the matching act, itself logged with source 'appeal'."""
    reason = f"Appeal upheld: {decision}"
    act = Act(original.act)
    if act in {Act.HIDE_POST, Act.REMOVE_POST}:
        post = await Post.get(id=original.target_id)
        undo = unhide_post if act == Act.HIDE_POST else restore_post
        if post.state_seq == original.seq:
            await undo(
                post,
                rule_code=original.rule_code,
                reason=reason,
                acting_user=acting_user,
                source=Source.APPEAL,
            )
    elif act in {Act.SILENCE_USER, Act.SUSPEND_USER, Act.WARN_USER}:
        sanction = await Sanction.get(entry_seq=original.seq)
        if sanction.lifted_at is None:
            await lift_sanction(
                sanction,
                rule_code=original.rule_code,
                reason=reason,
                acting_user=acting_user,
                source=Source.APPEAL,
            )
    elif act == Act.LOCK_THREAD:
        thread = await Thread.get(id=original.target_id)
        if thread.is_locked:
            await lock_thread(
                thread,
                locked=False,
                rule_code=original.rule_code,
                reason=reason,
                acting_user=acting_user,
                source=Source.APPEAL,
                reverses_seq=original.seq,
            )
    elif act == Act.MOVE_THREAD:
        thread = await Thread.get(id=original.target_id)
        forum = await Forum.get(id=int(original.old_value.removeprefix("forum ")))
        if thread.forum_id != forum.id:  # type: ignore[attr-defined]
            await move_thread(
                thread,
                forum,
                rule_code=original.rule_code,
                reason=reason,
                acting_user=acting_user,
                source=Source.APPEAL,
                reverses_seq=original.seq,
            )
