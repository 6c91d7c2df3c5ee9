"""Every act of moderation/actions.py: the new state, exactly one log entry, the notice.

A refused act changes nothing: no state, no log entry, no notice, no outbox row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from tortoise.models import Model

from core import actions as core_actions
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.models import Course, Notification, OutboxEvent, Role, User
from core.settings import Settings
from core.timeutil import utcnow
from forum import actions as forum_actions
from forum.models import Forum, Post, PostState, Revision, Thread
from moderation import actions
from moderation import rules as rule_actions
from moderation.models import (
    DEFAULT_RULES,
    Act,
    Appeal,
    AppealStatus,
    Flag,
    LogEntry,
    Notice,
    Sanction,
    SanctionKind,
    Source,
    active_sanction,
)
from tests.conftest import drain_jobs
from tests.factories import (
    add_member,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

REASON = "Insults another learner by name."
RULE_TEXT = dict(DEFAULT_RULES)


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass(slots=True)
class Cast:
    course: Course
    forum: Forum
    other_forum: Forum
    ines: User  # instructor, created the course
    ivan: User  # instructor
    mona: User  # mentor
    max: User  # mentor
    ali: User  # learner, the author
    lea: User  # learner
    bo: User  # learner
    otto: User  # not a member
    thread: Thread  # by ali
    post: Post  # ali's reply
    mona_post: Post
    max_post: Post
    ivan_post: Post


@pytest.fixture
async def cast(db: Settings) -> Cast:
    """A course with two instructors, two mentors, three learners and posts by most of them."""
    ines = await make_user("ines")
    course = await make_course(ines, title="Ethics")
    ivan, mona, mx = await make_user("ivan"), await make_user("mona"), await make_user("max")
    ali, lea, bo = await make_user("ali"), await make_user("lea"), await make_user("bo")
    await add_member(course, ivan, Role.INSTRUCTOR)
    await add_member(course, mona, Role.MENTOR)
    await add_member(course, mx, Role.MENTOR)
    for learner in (ali, lea, bo):
        await add_member(course, learner)
    otto = await make_user("otto")
    forum = await make_forum(course, title="General")
    other_forum = await make_forum(course, title="Off topic")
    thread = await make_thread(forum, ali, title="Is lying ever right?")
    post = await make_reply(thread, ali, body="Only **fools** think so.")
    mona_post = await make_reply(thread, mona, body="A mentor's reply.")
    max_post = await make_reply(thread, mx, body="Another mentor's reply.")
    ivan_post = await make_reply(thread, ivan, body="An instructor's reply.")
    await drain_jobs()
    return Cast(
        course,
        forum,
        other_forum,
        ines,
        ivan,
        mona,
        mx,
        ali,
        lea,
        bo,
        otto,
        await Thread.get(id=thread.id),
        post,
        mona_post,
        max_post,
        ivan_post,
    )


TABLES: tuple[type[Model], ...] = (
    LogEntry,
    Notice,
    Sanction,
    Appeal,
    Flag,
    Notification,
    OutboxEvent,
    Revision,
)


async def row_counts() -> dict[str, int]:
    return {model.__name__: await model.all().count() for model in TABLES}


async def refused(
    error: type[Exception],
    work: Awaitable[object],
    *,
    fields: set[str] | None = None,
    state: Callable[[], Awaitable[object]] | None = None,
) -> Exception:
    """`work` raises `error` and writes nothing: no state change, entry, notice or job."""
    await drain_jobs()
    before = await row_counts()
    state_before = await state() if state else None
    with pytest.raises(error) as caught:
        await work
    if fields is not None:
        assert isinstance(caught.value, InvalidInput)
        assert set(caught.value.fields) == fields
        assert all(message.strip() for message in caught.value.fields.values())
    await drain_jobs()
    assert await row_counts() == before
    if state is not None:
        assert await state() == state_before
    return caught.value


async def acted(work: Awaitable[LogEntry], notified: User | None) -> tuple[LogEntry, Notice | None]:
    """Run one act: exactly one new entry, and one notice (+ notification) for `notified`."""
    entries, notices = await LogEntry.all().count(), await Notice.all().count()
    returned = await work
    assert await LogEntry.all().count() == entries + 1
    entry = await LogEntry.get(seq=returned.seq)
    assert entry.seq == entries and entry.leaf_hash
    if notified is None:
        assert await Notice.all().count() == notices
        return entry, None
    assert await Notice.all().count() == notices + 1
    notice = await Notice.get(entry_seq=entry.seq)
    assert notice.user_id == notified.id  # type: ignore[attr-defined]
    assert notice.act == entry.act
    assert notice.created_at == entry.created_at
    assert notice.course_id == entry.course_id
    await drain_jobs()
    assert await Notification.filter(
        user_id=notified.id, kind="moderation", message=notice.summary, link="/me/standing"
    ).exists()
    return entry, notice


def cites(entry: LogEntry, notice: Notice | None, rule: str = "R1", reason: str = REASON) -> None:
    assert (entry.rule_code, entry.reason) == (rule, reason)
    if notice is not None:
        assert (notice.rule_code, notice.rule_text, notice.reason) == (
            rule,
            RULE_TEXT[rule],
            reason,
        )


def appeal_window(notice: Notice, appealable: bool) -> None:
    if appealable:
        assert notice.appeal_until == notice.created_at + timedelta(days=14)
    else:
        assert notice.appeal_until is None


async def state_of(post: Post) -> tuple[str, int | None]:
    fresh = await Post.get(id=post.id)
    return PostState(fresh.state).value, fresh.state_seq


async def fresh(post: Post) -> Post:
    return await Post.get(id=post.id)


# ---------------------------------------------------------------- posts


async def _hide(cast: Cast, post: Post) -> LogEntry:
    return await actions.hide_post(
        post, rule_code="R2", reason="Prepared for the test.", acting_user=cast.ivan
    )


async def _remove(cast: Cast, post: Post) -> LogEntry:
    return await actions.remove_post(
        post, rule_code="R2", reason="Prepared for the test.", acting_user=cast.ivan
    )


POST_CASES = {
    # name: (preparation, act, new state, act name, old value, appealable, reverses preparation)
    "hide": (None, actions.hide_post, PostState.HIDDEN, Act.HIDE_POST, "visible", True, False),
    "unhide": (
        _hide,
        actions.unhide_post,
        PostState.VISIBLE,
        Act.UNHIDE_POST,
        "hidden",
        False,
        True,
    ),
    "remove": (
        None,
        actions.remove_post,
        PostState.REMOVED,
        Act.REMOVE_POST,
        "visible",
        True,
        False,
    ),
    "remove_hidden": (
        _hide,
        actions.remove_post,
        PostState.REMOVED,
        Act.REMOVE_POST,
        "hidden",
        True,
        False,
    ),
    "restore": (
        _remove,
        actions.restore_post,
        PostState.VISIBLE,
        Act.RESTORE_POST,
        "removed",
        False,
        True,
    ),
}


@pytest.mark.parametrize("case", list(POST_CASES))
async def test_post_acts(cast: Cast, case: str) -> None:
    prepare, work, new_state, act, old_value, appealable, reverses = POST_CASES[case]
    prepared = await prepare(cast, cast.post) if prepare else None
    post = await fresh(cast.post)
    entry, notice = await acted(
        work(post, rule_code="R1", reason=REASON, acting_user=cast.mona), cast.ali
    )
    assert notice is not None
    assert (entry.act, entry.actor_id, entry.actor_role) == (act.value, cast.mona.id, "mentor")
    assert (entry.target_type, entry.target_id) == ("post", cast.post.id)
    assert (entry.old_value, entry.new_value) == (old_value, new_state.value)
    assert (entry.source, entry.course_id) == ("manual", cast.course.id)
    assert entry.reverses_seq == (prepared.seq if reverses and prepared else None)
    cites(entry, notice)
    assert await state_of(cast.post) == (
        new_state.value,
        entry.seq if new_state != PostState.VISIBLE else None,
    )
    assert post.state == new_state  # the caller's object follows too
    assert "fools" in notice.content_excerpt and "**" not in notice.content_excerpt
    assert "Is lying ever right?" in notice.summary and not notice.automatic
    appeal_window(notice, appealable)


async def test_an_admin_acts_as_admin(cast: Cast) -> None:
    admin = await make_user("root", is_admin=True)
    entry, _ = await acted(
        actions.hide_post(cast.post, rule_code="R1", reason=REASON, acting_user=admin), cast.ali
    )
    assert (entry.actor_id, entry.actor_role) == (admin.id, "admin")


async def test_a_post_of_a_deleted_account_is_moderated_without_a_notice(cast: Cast) -> None:
    await Post.filter(id=cast.post.id).update(author_id=None)
    post = await fresh(cast.post)
    entry, _ = await acted(
        actions.hide_post(post, rule_code="R1", reason=REASON, acting_user=cast.mona), None
    )
    assert entry.act == "hide_post"


PostVariant = Callable[
    [Cast], Awaitable[tuple[type[Exception], Awaitable[object], set[str] | None]]
]


def _post_variant(
    work: Any,
    *,
    who: str = "mona",
    post: str = "post",
    rule: str = "R1",
    reason: str = REASON,
    error: type[Exception],
    fields: set[str] | None = None,
    prepare: Callable[[Cast], Awaitable[object]] | None = None,
) -> PostVariant:
    async def variant(cast: Cast) -> tuple[type[Exception], Awaitable[object], set[str] | None]:
        if prepare is not None:
            await prepare(cast)
        target = await fresh(getattr(cast, post))
        return (
            error,
            work(target, rule_code=rule, reason=reason, acting_user=getattr(cast, who)),
            fields,
        )

    return variant


async def _retire_r2(cast: Cast) -> None:
    rules = await actions.ensure_default_rules(cast.course)
    r2 = next(r for r in rules if r.code == "R2")
    await rule_actions.set_rule_retired(r2, retired=True, acting_user=cast.ines)


async def _delete(cast: Cast) -> None:
    await forum_actions.delete_own_post(cast.post, acting_user=cast.ali)


POST_REFUSALS: dict[str, PostVariant] = {
    "no rule": _post_variant(actions.hide_post, rule="", error=InvalidInput, fields={"rule"}),
    "unknown rule": _post_variant(
        actions.remove_post, rule="R99", error=InvalidInput, fields={"rule"}
    ),
    "retired rule": _post_variant(
        actions.hide_post, rule="R2", error=InvalidInput, fields={"rule"}, prepare=_retire_r2
    ),
    "short reason": _post_variant(
        actions.hide_post, reason="too short", error=InvalidInput, fields={"reason"}
    ),
    "blank reason": _post_variant(
        actions.remove_post, reason="  a   b   c   d  ", error=InvalidInput, fields={"reason"}
    ),
    "long reason": _post_variant(
        actions.hide_post, reason="x" * 2001, error=InvalidInput, fields={"reason"}
    ),
    "nothing cited": _post_variant(
        actions.hide_post, rule="", reason="", error=InvalidInput, fields={"rule", "reason"}
    ),
    "mentor on an instructor": _post_variant(
        actions.hide_post, post="ivan_post", error=PermissionDenied
    ),
    "mentor on a mentor": _post_variant(
        actions.remove_post, post="max_post", error=PermissionDenied
    ),
    "instructor on an instructor": _post_variant(
        actions.hide_post, who="ines", post="ivan_post", error=PermissionDenied
    ),
    "own post": _post_variant(actions.hide_post, post="mona_post", error=PermissionDenied),
    "learner": _post_variant(actions.hide_post, who="lea", error=PermissionDenied),
    "outsider": _post_variant(actions.remove_post, who="otto", error=PermissionDenied),
    "unhide a visible post": _post_variant(actions.unhide_post, error=Conflict),
    "restore a visible post": _post_variant(actions.restore_post, error=Conflict),
    "restore a hidden post": _post_variant(
        actions.restore_post, error=Conflict, prepare=lambda c: _hide(c, c.post)
    ),
    "unhide a removed post": _post_variant(
        actions.unhide_post, error=Conflict, prepare=lambda c: _remove(c, c.post)
    ),
    "hide a hidden post": _post_variant(
        actions.hide_post, error=Conflict, prepare=lambda c: _hide(c, c.post)
    ),
    "hide a removed post": _post_variant(
        actions.hide_post, error=Conflict, prepare=lambda c: _remove(c, c.post)
    ),
    "remove a removed post": _post_variant(
        actions.remove_post, error=Conflict, prepare=lambda c: _remove(c, c.post)
    ),
    "deleted post": _post_variant(actions.hide_post, error=Conflict, prepare=_delete),
}


@pytest.mark.parametrize("variant", list(POST_REFUSALS))
async def test_refused_post_acts_change_nothing(cast: Cast, variant: str) -> None:
    error, work, fields = await POST_REFUSALS[variant](cast)
    await refused(error, work, fields=fields, state=lambda: state_of(cast.post))


async def test_wrong_state_messages_read_well(cast: Cast) -> None:
    await _hide(cast, cast.post)
    error = await refused(
        Conflict,
        actions.hide_post(
            await fresh(cast.post), rule_code="R1", reason=REASON, acting_user=cast.mona
        ),
    )
    assert str(error) == "This post is hidden; it cannot be hidden now."


# ---------------------------------------------------------------- staff edits and roles


async def test_a_staff_edit_is_logged_with_the_edit(cast: Cast) -> None:
    post = await fresh(cast.post)
    entries, notices = await LogEntry.all().count(), await Notice.all().count()
    await forum_actions.edit_post(
        post, body="Only some think so.", rule_code="R1", reason=REASON, acting_user=cast.mona
    )
    assert await LogEntry.all().count() == entries + 1
    assert await Notice.all().count() == notices + 1
    entry = await LogEntry.all().order_by("-seq").first()
    assert entry is not None
    assert (entry.act, entry.actor_role, entry.target_id) == ("edit_post", "mentor", post.id)
    assert (entry.old_value, entry.new_value) == ("revision 0", "revision 1")
    notice = await Notice.get(entry_seq=entry.seq)
    cites(entry, notice)
    assert notice.user_id == cast.ali.id  # type: ignore[attr-defined]
    assert "fools" in notice.content_excerpt  # the text before the edit
    assert (await fresh(post)).body_markdown == "Only some think so."


@pytest.mark.parametrize("variant", ["no reason", "mentor on an instructor"])
async def test_a_refused_staff_edit_changes_nothing(cast: Cast, variant: str) -> None:
    post = await fresh(cast.ivan_post if variant != "no reason" else cast.post)
    body_before = post.body_markdown
    reason = "" if variant == "no reason" else REASON
    await refused(
        InvalidInput if variant == "no reason" else PermissionDenied,
        forum_actions.edit_post(
            post,
            body="Rewritten by a mentor.",
            rule_code="R1",
            reason=reason,
            acting_user=cast.mona,
        ),
    )
    assert (await fresh(post)).body_markdown == body_before


async def test_a_role_change_is_logged(cast: Cast) -> None:
    entries = await LogEntry.all().count()
    await core_actions.set_member_role(
        cast.course, username="lea", role=Role.MENTOR, acting_user=cast.ines
    )
    assert await LogEntry.all().count() == entries + 1
    entry = await LogEntry.get(seq=entries)
    assert (entry.act, entry.actor_id, entry.actor_role) == (
        "change_role",
        cast.ines.id,
        "instructor",
    )
    assert (entry.target_type, entry.target_id) == ("user", cast.lea.id)
    assert (entry.old_value, entry.new_value) == ("learner", "mentor")


# ---------------------------------------------------------------- threads


async def _thread(cast: Cast) -> Thread:
    return await Thread.get(id=cast.thread.id)


async def thread_state(cast: Cast) -> tuple[bool, bool, int]:
    t = await _thread(cast)
    return t.is_locked, t.is_pinned, t.forum_id  # type: ignore[attr-defined]


THREAD_CASES: dict[str, tuple[str | None, str, dict[str, Any], tuple[str, str], bool]] = {
    # name: (preparation, act, expected changes, (old, new), appealable)
    "lock": (None, "lock_thread", {"is_locked": True}, ("open", "locked"), True),
    "unlock": ("lock", "unlock_thread", {"is_locked": False}, ("locked", "open"), False),
    "pin": (None, "pin_thread", {"is_pinned": True}, ("unpinned", "pinned"), False),
    "unpin": ("pin", "unpin_thread", {"is_pinned": False}, ("pinned", "unpinned"), False),
    "move": (None, "move_thread", {}, ("forum", "forum"), True),
}


async def _thread_work(
    cast: Cast,
    act: str,
    who: User,
    rule: str = "R1",
    reason: str = REASON,
    forum: Forum | None = None,
) -> LogEntry:
    thread = await _thread(cast)
    cite: dict[str, Any] = {"rule_code": rule, "reason": reason, "acting_user": who}
    if act in {"lock_thread", "unlock_thread"}:
        return await actions.lock_thread(thread, locked=act == "lock_thread", **cite)
    if act in {"pin_thread", "unpin_thread"}:
        return await actions.pin_thread(thread, pinned=act == "pin_thread", **cite)
    return await actions.move_thread(thread, forum or cast.other_forum, **cite)


@pytest.mark.parametrize("case", list(THREAD_CASES))
async def test_thread_acts(cast: Cast, case: str) -> None:
    prepare, act, changes, (old, new), appealable = THREAD_CASES[case]
    if prepare:
        await _thread_work(
            cast, f"{prepare}_thread", cast.ivan, rule="R2", reason="Prepared for the test."
        )
    entry, notice = await acted(_thread_work(cast, act, cast.mona), cast.ali)
    assert notice is not None
    assert (entry.act, entry.actor_role, entry.target_type) == (act, "mentor", "thread")
    assert entry.target_id == cast.thread.id and entry.source == "manual"
    if act == "move_thread":
        assert (entry.old_value, entry.new_value) == (
            f"forum {cast.forum.id}",
            f"forum {cast.other_forum.id}",
        )
        changes = {"forum_id": cast.other_forum.id}
    else:
        assert (entry.old_value, entry.new_value) == (old, new)
    cites(entry, notice)
    appeal_window(notice, appealable)
    stored = await _thread(cast)
    for name, value in changes.items():
        assert getattr(stored, name) == value


async def test_a_thread_act_on_ones_own_thread_tells_nobody(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.ines, title="Announcements")
    entry, _ = await acted(
        actions.pin_thread(
            thread, pinned=True, rule_code="R2", reason=REASON, acting_user=cast.ines
        ),
        None,
    )
    assert (await Thread.get(id=thread.id)).is_pinned and entry.act == "pin_thread"


async def _other_course_forum(cast: Cast) -> Forum:
    other = await make_course(cast.ines, title="Other course")
    return await make_forum(other, title="Elsewhere")


@pytest.mark.parametrize(
    "variant",
    [
        "no rule",
        "short reason",
        "learner",
        "outsider",
        "lock locked",
        "unlock open",
        "pin pinned",
        "unpin unpinned",
        "same forum",
        "other course",
    ],
)
async def test_refused_thread_acts_change_nothing(cast: Cast, variant: str) -> None:
    who, act, rule, reason, forum = cast.mona, "lock_thread", "R1", REASON, None
    error: type[Exception] = PermissionDenied
    fields: set[str] | None = None
    if variant == "no rule":
        rule, error, fields = "", InvalidInput, {"rule"}
    elif variant == "short reason":
        act, reason, error, fields = "pin_thread", "short", InvalidInput, {"reason"}
    elif variant == "learner":
        who = cast.ali
    elif variant == "outsider":
        who, act = cast.otto, "move_thread"
    elif variant == "lock locked":
        await _thread_work(cast, "lock_thread", cast.ivan)
        error = Conflict
    elif variant == "unlock open":
        act, error = "unlock_thread", Conflict
    elif variant == "pin pinned":
        await _thread_work(cast, "pin_thread", cast.ivan)
        act, error = "pin_thread", Conflict
    elif variant == "unpin unpinned":
        act, error = "unpin_thread", Conflict
    elif variant == "same forum":
        act, forum, error = "move_thread", cast.forum, Conflict
    else:
        act, forum, error = "move_thread", await _other_course_forum(cast), InvalidInput
    await refused(
        error,
        _thread_work(cast, act, who, rule, reason, forum),
        fields=fields,
        state=lambda: thread_state(cast),
    )


# ---------------------------------------------------------------- sanctions


SANCTION_ACTS = {"warning": "warn_user", "silence": "silence_user", "suspension": "suspend_user"}


@pytest.mark.parametrize("kind", list(SANCTION_ACTS))
async def test_sanctions(cast: Cast, kind: str) -> None:
    before = utcnow()
    entry, notice = await acted(
        actions.sanction_user(
            cast.course,
            cast.ali,
            kind,
            rule_code="R1",
            reason=REASON,
            days=2,
            acting_user=cast.mona,
        ),
        cast.ali,
    )
    assert notice is not None
    assert (entry.act, entry.actor_id, entry.actor_role) == (
        SANCTION_ACTS[kind],
        cast.mona.id,
        "mentor",
    )
    assert (entry.target_type, entry.target_id, entry.source) == ("user", cast.ali.id, "manual")
    cites(entry, notice)
    appeal_window(notice, True)
    row = await Sanction.get(entry_seq=entry.seq)
    assert (row.kind, row.user_id, row.course_id) == (kind, cast.ali.id, cast.course.id)  # type: ignore[attr-defined]
    assert row.starts_at == entry.created_at and row.lifted_at is None
    if kind == "warning":
        assert entry.duration_seconds is None and row.ends_at is None and notice.ends_at is None
        assert await active_sanction(cast.course.id, cast.ali.id, utcnow()) is None
    else:
        assert entry.duration_seconds == 2 * 86400
        assert row.ends_at is not None and notice.ends_at == row.ends_at
        assert before + timedelta(days=2) <= row.ends_at <= utcnow() + timedelta(days=2)
        active = await active_sanction(cast.course.id, cast.ali.id, utcnow())
        assert active is not None and active.id == row.id
        assert "until" in notice.summary


async def test_a_system_sanction_is_logged_with_the_system_as_actor(cast: Cast) -> None:
    entry, notice = await acted(
        actions.sanction_user(
            cast.course,
            cast.ali,
            SanctionKind.SILENCE,
            rule_code="R3",
            reason="Automatic: too many posts in a minute.",
            days=0.01,
            acting_user=None,
            source=Source.AUTOMATIC,
        ),
        cast.ali,
    )
    assert notice is not None and notice.automatic
    assert (entry.actor_id, entry.actor_role, entry.source) == (None, "system", "automatic")
    assert entry.duration_seconds == 864


@pytest.mark.parametrize(
    "variant",
    [
        "no rule",
        "short reason",
        "mentor on an instructor",
        "mentor on a mentor",
        "learner",
        "self",
        "not a member",
        "bad kind",
        "zero days",
        "too many days",
        "no days",
    ],
)
async def test_refused_sanctions_change_nothing(cast: Cast, variant: str) -> None:
    target, who, kind, rule, reason = cast.ali, cast.mona, "silence", "R1", REASON
    days: float | None = 1
    error: type[Exception] = PermissionDenied
    fields: set[str] | None = None
    if variant == "no rule":
        rule, error, fields = "", InvalidInput, {"rule"}
    elif variant == "short reason":
        reason, error, fields = "rude", InvalidInput, {"reason"}
    elif variant == "mentor on an instructor":
        target = cast.ivan
    elif variant == "mentor on a mentor":
        target = cast.max
    elif variant == "learner":
        who = cast.lea
    elif variant == "self":
        target = cast.mona
    elif variant == "not a member":
        target, error = cast.otto, NotFound
    elif variant == "bad kind":
        kind, error, fields = "banishment", InvalidInput, {"kind"}
    else:
        days = {"zero days": 0.0, "too many days": 366.0, "no days": None}[variant]
        error, fields = InvalidInput, {"days"}
    await refused(
        error,
        actions.sanction_user(
            cast.course, target, kind, rule_code=rule, reason=reason, days=days, acting_user=who
        ),
        fields=fields,
    )


async def _silence(cast: Cast, user: User, by: User) -> Sanction:
    entry = await actions.sanction_user(
        cast.course, user, "silence", rule_code="R1", reason=REASON, days=1, acting_user=by
    )
    return await Sanction.get(entry_seq=entry.seq)


async def test_lift_sanction(cast: Cast) -> None:
    row = await _silence(cast, cast.ali, cast.mona)
    entry, notice = await acted(
        actions.lift_sanction(
            row, rule_code="R1", reason="Apologised in the thread.", acting_user=cast.max
        ),
        cast.ali,
    )
    assert notice is not None
    assert (entry.act, entry.actor_role, entry.target_id) == (
        "lift_sanction",
        "mentor",
        cast.ali.id,
    )
    assert (entry.old_value, entry.new_value, entry.reverses_seq) == (
        "silence",
        "lifted",
        row.entry_seq,
    )
    cites(entry, notice, reason="Apologised in the thread.")
    appeal_window(notice, False)
    assert (await Sanction.get(id=row.id)).lifted_at == entry.created_at
    assert await active_sanction(cast.course.id, cast.ali.id, utcnow()) is None


@pytest.mark.parametrize(
    "variant",
    [
        "already lifted",
        "learner",
        "no rule",
        "short reason",
        "own sanction",
        "mentor on a mentor's sanction",
    ],
)
async def test_refused_lifts_change_nothing(cast: Cast, variant: str) -> None:
    row = await _silence(cast, cast.ali, cast.mona)
    who, rule, reason = cast.max, "R1", REASON
    error: type[Exception] = PermissionDenied
    fields: set[str] | None = None
    if variant == "already lifted":
        await actions.lift_sanction(row, rule_code="R1", reason=REASON, acting_user=cast.ines)
        row, error = await Sanction.get(id=row.id), Conflict
    elif variant == "learner":
        who = cast.lea
    elif variant == "no rule":
        rule, error, fields = "", InvalidInput, {"rule"}
    elif variant == "short reason":
        reason, error, fields = "ok", InvalidInput, {"reason"}
    elif variant == "own sanction":
        row, who = await _silence(cast, cast.mona, cast.ines), cast.mona
    else:
        row = await _silence(cast, cast.mona, cast.ines)

    async def lifted_at() -> object:
        return (await Sanction.get(id=row.id)).lifted_at

    await refused(
        error,
        actions.lift_sanction(row, rule_code=rule, reason=reason, acting_user=who),
        fields=fields,
        state=lifted_at,
    )


# ---------------------------------------------------------------- flags


async def test_flagging_twice_keeps_one_open_flag_and_logs_nothing(cast: Cast) -> None:
    before = await row_counts()
    first = await actions.flag_post(
        cast.post, category="harassment", text="Rude.", acting_user=cast.lea
    )
    second = await actions.flag_post(cast.post, category="spam", acting_user=cast.lea)
    assert first.id == second.id
    assert await Flag.filter(post_id=cast.post.id, resolved_at=None).count() == 1
    after = await row_counts()
    assert after["LogEntry"] == before["LogEntry"] and after["Notice"] == before["Notice"]
    stored = await Flag.get(id=first.id)
    assert (stored.category, stored.text, stored.flagger_id) == (
        "harassment",
        "Rude.",  # type: ignore[attr-defined]
        cast.lea.id,
    )


@pytest.mark.parametrize(
    "variant", ["own post", "outsider", "bad category", "other, no text", "too long"]
)
async def test_refused_flags_write_nothing(cast: Cast, variant: str) -> None:
    who, category, text = cast.lea, "other", "It is wrong."
    error: type[Exception] = InvalidInput
    fields: set[str] | None = None
    if variant == "own post":
        who = cast.ali
    elif variant == "outsider":
        who, error = cast.otto, PermissionDenied
    elif variant == "bad category":
        category, fields = "boring", {"category"}
    elif variant == "other, no text":
        text, fields = "", {"text"}
    else:
        text, fields = "x" * 1001, {"text"}
    await refused(
        error,
        actions.flag_post(cast.post, category=category, text=text, acting_user=who),
        fields=fields,
    )


async def test_acting_on_a_flagged_post_answers_every_flag(cast: Cast) -> None:
    flags = [
        await actions.flag_post(cast.post, category="harassment", acting_user=who)
        for who in (cast.lea, cast.bo)
    ]
    entry = await actions.hide_post(
        cast.post, rule_code="R1", reason=REASON, acting_user=cast.mona, source=Source.FLAG
    )
    assert entry.source == "flag"
    await drain_jobs()
    for flag, flagger in zip(flags, (cast.lea, cast.bo), strict=True):
        stored = await Flag.get(id=flag.id)
        assert stored.resolved_at == entry.created_at and stored.resolution_seq == entry.seq
        assert "hidden" in stored.outcome
        assert await Notification.filter(
            user_id=flagger.id, kind="flag", message__contains="hidden"
        ).exists()
    # A new flag after the outcome is a new flag.
    again = await actions.flag_post(cast.post, category="spam", acting_user=cast.lea)
    assert again.id not in {f.id for f in flags}


async def test_dismiss_flag(cast: Cast) -> None:
    flag = await actions.flag_post(cast.post, category="spam", acting_user=cast.lea)
    entry, _ = await acted(
        actions.dismiss_flag(
            flag, rule_code="R3", reason="Not spam: it answers the question.", acting_user=cast.mona
        ),
        None,
    )
    assert (entry.act, entry.target_type, entry.target_id) == ("resolve_flag", "flag", flag.id)
    assert (entry.old_value, entry.new_value, entry.source) == ("open", "dismissed", "flag")
    assert (entry.actor_role, entry.rule_code) == ("mentor", "R3")
    stored = await Flag.get(id=flag.id)
    assert stored.resolution_seq == entry.seq and "no action" in stored.outcome
    assert await state_of(cast.post) == ("visible", None)
    await drain_jobs()
    assert await Notification.filter(
        user_id=cast.lea.id, kind="flag", message__contains="no action"
    ).exists()


@pytest.mark.parametrize("variant", ["twice", "learner", "no rule", "short reason"])
async def test_refused_dismissals_change_nothing(cast: Cast, variant: str) -> None:
    flag = await actions.flag_post(cast.post, category="spam", acting_user=cast.lea)
    who, rule, reason = cast.mona, "R3", REASON
    error: type[Exception] = PermissionDenied
    fields: set[str] | None = None
    if variant == "twice":
        await actions.dismiss_flag(flag, rule_code="R3", reason=REASON, acting_user=cast.max)
        flag, error = await Flag.get(id=flag.id), Conflict
    elif variant == "learner":
        who = cast.bo
    elif variant == "no rule":
        rule, error, fields = "", InvalidInput, {"rule"}
    else:
        reason, error, fields = "no", InvalidInput, {"reason"}

    async def resolved() -> object:
        return (await Flag.get(id=flag.id)).resolution_seq

    await refused(
        error,
        actions.dismiss_flag(flag, rule_code=rule, reason=reason, acting_user=who),
        fields=fields,
        state=resolved,
    )


# ---------------------------------------------------------------- appeals

APPEAL_TEXT = "I was quoting the reading, not calling anyone a fool."


async def _hidden_by(cast: Cast, who: User) -> Notice:
    entry = await actions.hide_post(
        await fresh(cast.post), rule_code="R1", reason=REASON, acting_user=who
    )
    return await Notice.get(entry_seq=entry.seq)


async def test_appeal(cast: Cast) -> None:
    notice = await _hidden_by(cast, cast.mona)
    before = await row_counts()
    row = await actions.appeal(notice, text=APPEAL_TEXT, acting_user=cast.ali)
    stored = await Appeal.get(id=row.id)
    assert (stored.status, stored.entry_seq, stored.course_id) == (
        AppealStatus.PENDING,
        notice.entry_seq,
        cast.course.id,
    )
    assert stored.text == APPEAL_TEXT
    after = await row_counts()
    assert after["LogEntry"] == before["LogEntry"] and after["Appeal"] == before["Appeal"] + 1


@pytest.mark.parametrize(
    "variant", ["someone else", "window closed", "not appealable", "short text", "twice"]
)
async def test_refused_appeals_write_nothing(
    cast: Cast, variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    notice = await _hidden_by(cast, cast.mona)
    who, text = cast.ali, APPEAL_TEXT
    error: type[Exception] = Conflict
    fields: set[str] | None = None
    if variant == "someone else":
        who, error = cast.lea, PermissionDenied
    elif variant == "window closed":
        later = utcnow() + timedelta(days=14, seconds=1)
        monkeypatch.setattr(actions, "utcnow", lambda: later)
    elif variant == "not appealable":
        entry = await actions.unhide_post(
            await fresh(cast.post),
            rule_code="R1",
            reason="It was a quotation.",
            acting_user=cast.ivan,
        )
        notice = await Notice.get(entry_seq=entry.seq)
    elif variant == "short text":
        text, error, fields = "Unfair.", InvalidInput, {"text"}
    else:
        await actions.appeal(notice, text=APPEAL_TEXT, acting_user=cast.ali)
    caught = await refused(error, actions.appeal(notice, text=text, acting_user=who), fields=fields)
    if variant == "window closed":
        assert "closed" in str(caught)


async def _appealed(cast: Cast, original: LogEntry) -> Appeal:
    notice = await Notice.get(entry_seq=original.seq)
    return await actions.appeal(notice, text=APPEAL_TEXT, acting_user=cast.ali)


async def test_upholding_an_appeal(cast: Cast) -> None:
    notice = await _hidden_by(cast, cast.mona)
    row = await actions.appeal(notice, text=APPEAL_TEXT, acting_user=cast.ali)
    entry, decided = await acted(
        actions.decide_appeal(
            row, overturn=False, decision="The wording insults classmates.", acting_user=cast.ivan
        ),
        cast.ali,
    )
    assert decided is not None and decided.appeal_until is None
    assert (entry.act, entry.actor_role, entry.target_type, entry.target_id) == (
        "decide_appeal",
        "instructor",
        "appeal",
        row.id,
    )
    assert (entry.old_value, entry.new_value, entry.reverses_seq, entry.source) == (
        "pending",
        "upheld",
        None,
        "appeal",
    )
    assert entry.rule_code == "R1" and entry.reason == "The wording insults classmates."
    assert "upheld" in decided.summary and decided.rule_code == "R1"
    stored = await Appeal.get(id=row.id)
    assert (stored.status, stored.decided_by_id, stored.decision_seq) == (
        AppealStatus.UPHELD,
        cast.ivan.id,
        entry.seq,
    )
    assert await state_of(cast.post) == ("hidden", notice.entry_seq)


async def _original(cast: Cast, act: str) -> LogEntry:
    cite: dict[str, Any] = {"rule_code": "R1", "reason": REASON, "acting_user": cast.mona}
    post = await fresh(cast.post)
    if act == "hide_post":
        return await actions.hide_post(post, **cite)
    if act == "remove_post":
        return await actions.remove_post(post, **cite)
    if act in {"warn_user", "silence_user", "suspend_user"}:
        kind = {"warn_user": "warning", "silence_user": "silence", "suspend_user": "suspension"}[
            act
        ]
        return await actions.sanction_user(cast.course, cast.ali, kind, days=3, **cite)
    return await _thread_work(cast, act, cast.mona)


async def _restored(cast: Cast, act: str, original: LogEntry) -> bool:
    if act in {"hide_post", "remove_post"}:
        return await state_of(cast.post) == ("visible", None)
    if act in {"warn_user", "silence_user", "suspend_user"}:
        return (await Sanction.get(entry_seq=original.seq)).lifted_at is not None
    locked, _, forum_id = await thread_state(cast)
    return not locked and forum_id == cast.forum.id


OVERTURNS = {
    "hide_post": "unhide_post",
    "remove_post": "restore_post",
    "warn_user": "lift_sanction",
    "silence_user": "lift_sanction",
    "suspend_user": "lift_sanction",
    "lock_thread": "unlock_thread",
    "move_thread": "move_thread",
}


@pytest.mark.parametrize("act", list(OVERTURNS))
async def test_overturning_an_appeal_reverses_the_act_on_the_record(cast: Cast, act: str) -> None:
    original = await _original(cast, act)
    row = await _appealed(cast, original)
    assert not await _restored(cast, act, original)
    entries, notices = await LogEntry.all().count(), await Notice.all().count()
    decision = await actions.decide_appeal(
        row, overturn=True, decision="A quotation, not an insult.", acting_user=cast.ivan
    )
    assert await LogEntry.all().count() == entries + 2
    assert (decision.act, decision.new_value, decision.reverses_seq) == (
        "decide_appeal",
        "overturned",
        original.seq,
    )
    reversal = await LogEntry.get(seq=decision.seq + 1)
    assert (reversal.act, reversal.reverses_seq, reversal.source) == (
        OVERTURNS[act],
        original.seq,
        "appeal",
    )
    assert (reversal.actor_id, reversal.rule_code) == (cast.ivan.id, "R1")
    assert reversal.reason == "Appeal upheld: A quotation, not an insult."
    assert await _restored(cast, act, original)
    assert (await Appeal.get(id=row.id)).status == AppealStatus.OVERTURNED
    # The appellant gets the decision and the reversal.
    assert await Notice.all().count() == notices + 2
    assert (
        await Notice.filter(user_id=cast.ali.id, entry_seq__in=[decision.seq, reversal.seq]).count()
        == 2
    )


@pytest.mark.parametrize(
    "variant",
    [
        "same moderator",
        "mentor decides a mentor's act",
        "mentor decides an instructor's act",
        "instructor who acted",
        "learner",
        "short decision",
        "cited rule retired since",
        "already decided",
    ],
)
async def test_refused_decisions_change_nothing(cast: Cast, variant: str) -> None:
    actor = (
        cast.ines
        if variant in {"mentor decides an instructor's act", "instructor who acted"}
        else cast.mona
    )
    notice = await _hidden_by(cast, actor)
    row = await actions.appeal(notice, text=APPEAL_TEXT, acting_user=cast.ali)
    who, decision = cast.ivan, "Reconsidered with care."
    error: type[Exception] = PermissionDenied
    fields: set[str] | None = None
    if variant == "same moderator":
        who = cast.mona
    elif variant == "mentor decides a mentor's act":
        who = cast.max
    elif variant == "mentor decides an instructor's act":
        who = cast.mona
    elif variant == "instructor who acted":
        who = cast.ines
    elif variant == "learner":
        who = cast.lea
    elif variant == "short decision":
        decision, error, fields = "No.", InvalidInput, {"decision"}
    elif variant == "cited rule retired since":
        # Overturning would record the decision but could not cite R1 for the reversal.
        r1 = next(r for r in await actions.ensure_default_rules(cast.course) if r.code == "R1")
        await rule_actions.set_rule_retired(r1, retired=True, acting_user=cast.ines)
        error = Conflict
    else:
        await actions.decide_appeal(row, overturn=False, decision=decision, acting_user=cast.ivan)
        row, error = await Appeal.get(id=row.id), Conflict

    async def state() -> object:
        return (await Appeal.get(id=row.id)).status, await state_of(cast.post)

    caught = await refused(
        error,
        actions.decide_appeal(row, overturn=True, decision=decision, acting_user=who),
        fields=fields,
        state=state,
    )
    if variant == "same moderator":
        assert "other than the moderator who acted" in str(caught)
