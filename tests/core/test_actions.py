"""Accounts, courses and roles, through core.actions: the new state and its side effects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core import actions, auth
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.models import (
    AuthSession,
    Course,
    Enrolment,
    Membership,
    Notification,
    OutboxEvent,
    Role,
    User,
)
from core.settings import Settings
from tests.conftest import drain_jobs
from tests.factories import PASSWORD, add_member, make_course


async def new_user(username: str, *, acting_user: User | None = None, **extra: Any) -> User:
    return await actions.create_user(
        username=username,
        display_name=username.title(),
        password=PASSWORD,
        acting_user=acting_user,
        **extra,
    )


# ---------------------------------------------------------------- create_user


async def test_create_user_normalises_username_to_lowercase(db: Settings) -> None:
    user = await new_user("  Ada.Lovelace ")
    assert user.username == "ada.lovelace"
    stored = await User.get(id=user.id)
    assert stored.username == "ada.lovelace"
    assert stored.display_name == "Ada.Lovelace"
    assert stored.is_active and not stored.is_admin and not stored.can_create_courses


@pytest.mark.parametrize(
    "username",
    ["a", "two words", ".leadingdot", "-dash", "admin", "Admin", "x" * 33, "ümlaut", ""],
)
async def test_create_user_rejects_bad_usernames(db: Settings, username: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await new_user(username)
    assert "username" in caught.value.fields
    assert caught.value.fields["username"]
    assert await User.all().count() == 0


@pytest.mark.parametrize(
    "password",
    ["short", "aaaaaaaaaaaaaa", "ababababab", "carol12345", "CAROL12345", "x" * 2000 + "abcd"],
)
async def test_create_user_rejects_weak_passwords(db: Settings, password: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await actions.create_user(
            username="carol12345", display_name="Carol", password=password, acting_user=None
        )
    assert set(caught.value.fields) == {"password"}
    assert await User.all().count() == 0


async def test_create_user_reports_every_bad_field_at_once(db: Settings) -> None:
    with pytest.raises(InvalidInput) as caught:
        await actions.create_user(
            username="n", display_name="  ", password="tiny", email="nope", acting_user=None
        )
    assert set(caught.value.fields) == {"username", "display_name", "password", "email"}


async def test_create_user_duplicate_username_is_a_conflict(db: Settings) -> None:
    await new_user("ann")
    with pytest.raises(Conflict) as caught:
        await new_user("ANN")
    assert "username" in caught.value.fields
    assert await User.filter(username="ann").count() == 1


@pytest.mark.parametrize("email", ["not-an-email", "two@@example.org", "a b@example.org", "x@y"])
async def test_create_user_rejects_bad_email(db: Settings, email: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await actions.create_user(
            username="bea", display_name="Bea", password=PASSWORD, email=email, acting_user=None
        )
    assert set(caught.value.fields) == {"email"}
    assert not await User.exists()


async def test_create_user_keeps_a_good_email_and_blank_means_none(db: Settings) -> None:
    with_email = await new_user("bea", email=" bea@example.org ")
    without = await new_user("bob", email="   ")
    assert (await User.get(id=with_email.id)).email == "bea@example.org"
    assert (await User.get(id=without.id)).email is None


async def test_only_admins_create_privileged_accounts(db: Settings) -> None:
    plain = await new_user("plain")
    with pytest.raises(PermissionDenied):
        await new_user("wannabe", is_admin=True, acting_user=plain)
    with pytest.raises(PermissionDenied):
        await new_user("teacher", can_create_courses=True, acting_user=plain)
    assert not await User.filter(username__in=["wannabe", "teacher"]).exists()

    admin = await new_user("root", is_admin=True)
    made = await new_user("boss", is_admin=True, acting_user=admin)
    stored = await User.get(id=made.id)
    assert stored.is_admin and stored.can_create_courses


async def test_password_is_stored_as_an_argon2id_hash(db: Settings) -> None:
    user = await new_user("hashy")
    stored = await User.get(id=user.id)
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash


# ---------------------------------------------------------------- check_credentials


async def test_check_credentials(db: Settings) -> None:
    user = await new_user("ann")
    assert (await actions.check_credentials(username="ann", password=PASSWORD)).id == user.id
    assert (await actions.check_credentials(username=" ANN ", password=PASSWORD)).id == user.id

    with pytest.raises(InvalidInput) as wrong:
        await actions.check_credentials(username="ann", password=PASSWORD + "!")
    with pytest.raises(InvalidInput) as unknown:
        await actions.check_credentials(username="nobody", password=PASSWORD)
    with pytest.raises(InvalidInput) as empty:
        await actions.check_credentials(username="ann", password="")
    assert wrong.value.message == unknown.value.message == empty.value.message
    assert wrong.value.fields == unknown.value.fields == empty.value.fields


async def test_check_credentials_refuses_suspended_accounts(db: Settings) -> None:
    user = await new_user("sam")
    await actions.set_user_active(user, False, acting_user=None)
    with pytest.raises(PermissionDenied):
        await actions.check_credentials(username="sam", password=PASSWORD)
    # A wrong password does not reveal that the account exists and is suspended.
    with pytest.raises(InvalidInput):
        await actions.check_credentials(username="sam", password="wrong password 123")
    await actions.set_user_active(user, True, acting_user=None)
    assert (await actions.check_credentials(username="sam", password=PASSWORD)).id == user.id


# ---------------------------------------------------------------- create_course


async def test_create_course_needs_permission(db: Settings) -> None:
    plain = await new_user("plain")
    with pytest.raises(PermissionDenied):
        await actions.create_course(title="Nope", acting_user=plain)
    assert not await Course.exists()
    assert not await Membership.exists()

    admin = await new_user("root", is_admin=True)
    teacher = await new_user("teach", can_create_courses=True)
    by_admin = await actions.create_course(title="By admin", acting_user=admin)
    by_teacher = await actions.create_course(title="By teacher", acting_user=teacher)
    assert await Course.filter(id__in=[by_admin.id, by_teacher.id]).count() == 2

    await actions.set_user_active(teacher, False, acting_user=None)
    with pytest.raises(PermissionDenied):
        await actions.create_course(title="Suspended", acting_user=teacher)
    assert await Course.all().count() == 2


async def test_creator_becomes_the_instructor(db: Settings) -> None:
    teacher = await new_user("teach", can_create_courses=True)
    course = await actions.create_course(
        title="  Intro to Stars! ", description="Look up.", acting_user=teacher
    )
    stored = await Course.get(id=course.id)
    assert stored.title == "Intro to Stars!"
    assert stored.description == "Look up."
    assert stored.enrolment == Enrolment.INVITE
    assert stored.created_by_id == teacher.id  # type: ignore[attr-defined]
    members = await Membership.filter(course_id=course.id).values_list("user_id", "role")
    assert members == [(teacher.id, Role.INSTRUCTOR)]
    assert stored.invite_code and set(stored.invite_code) <= set(actions.INVITE_ALPHABET)


async def test_slug_comes_from_the_title_and_is_made_unique(db: Settings) -> None:
    teacher = await new_user("teach", can_create_courses=True)
    first = await actions.create_course(title="Intro to Stars!", acting_user=teacher)
    second = await actions.create_course(title="Intro to Stars?", acting_user=teacher)
    third = await actions.create_course(title="Intro  to  stars", acting_user=teacher)
    assert first.slug == "intro-to-stars"
    assert second.slug.startswith("intro-to-stars-")
    assert third.slug.startswith("intro-to-stars-")
    assert len({first.slug, second.slug, third.slug}) == 3
    assert await Course.filter(slug__startswith="intro-to-stars").count() == 3
    accented = await actions.create_course(title="Étoiles & Planètes", acting_user=teacher)
    assert accented.slug == "etoiles-planetes"


@pytest.mark.parametrize("title", ["New", "Join"])
async def test_generated_slug_never_shadows_a_page(db: Settings, title: str) -> None:
    # /courses/new and /courses/join are pages of their own: a course there is unreachable.
    teacher = await new_user("teach", can_create_courses=True)
    course = await actions.create_course(title=title, acting_user=teacher)
    assert course.slug not in {"new", "join"}
    assert course.slug.startswith(title.lower() + "-")


def test_every_page_directly_under_courses_is_a_reserved_slug(tmp_path: Path) -> None:
    from starlette.routing import Mount

    from core.app import create_app
    from core.settings import load_settings

    app = create_app(load_settings({"AGORA_DATA_DIR": str(tmp_path), "AGORA_DEMO": "0"}))
    pages: set[str] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            path = prefix + getattr(route, "path", "")
            parts = path.split("/")
            if len(parts) >= 3 and parts[1] == "courses" and not parts[2].startswith("{"):
                pages.add(parts[2])
            if isinstance(route, Mount):
                walk(route.routes, path)

    walk(app.routes, "")
    assert "new" in pages
    assert pages <= actions.RESERVED_SLUGS


@pytest.mark.parametrize("slug", ["Bad Slug!", "-dash-first", "x", "under_score", "new", "join"])
async def test_explicit_bad_slug_is_refused(db: Settings, slug: str) -> None:
    teacher = await new_user("teach", can_create_courses=True)
    with pytest.raises(InvalidInput) as caught:
        await actions.create_course(title="Stars", slug=slug, acting_user=teacher)
    assert "slug" in caught.value.fields
    assert not await Course.exists()


async def test_explicit_slug_is_used_and_a_taken_one_is_a_conflict(db: Settings) -> None:
    teacher = await new_user("teach", can_create_courses=True)
    course = await actions.create_course(title="Stars", slug=" Astro-101 ", acting_user=teacher)
    assert course.slug == "astro-101"
    with pytest.raises(Conflict) as caught:
        await actions.create_course(title="Other", slug="astro-101", acting_user=teacher)
    assert "slug" in caught.value.fields
    assert await Course.all().count() == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"title": "   "}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"enrolment": "secret"}, "enrolment"),
        ({"description": "d" * 5001}, "description"),
    ],
)
async def test_create_course_checks_its_fields(
    db: Settings, changes: dict[str, str], field: str
) -> None:
    teacher = await new_user("teach", can_create_courses=True)
    arguments: dict[str, Any] = {"title": "Stars", **changes}
    with pytest.raises(InvalidInput) as caught:
        await actions.create_course(acting_user=teacher, **arguments)
    assert field in caught.value.fields
    assert not await Course.exists()


async def test_failed_course_creation_leaves_nothing_behind(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = await new_user("teach", can_create_courses=True)

    async def broken_create(**kwargs: Any) -> Membership:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(Membership, "create", broken_create)
    with pytest.raises(RuntimeError):
        await actions.create_course(title="Half made", acting_user=teacher)
    monkeypatch.undo()
    assert not await Course.exists()
    assert not await Membership.exists()
    # The slug was not kept either: the same title makes the same address next time.
    course = await actions.create_course(title="Half made", acting_user=teacher)
    assert course.slug == "half-made"


# ---------------------------------------------------------------- join_course


async def test_join_by_invite_code_ignores_case_dashes_and_spaces(db: Settings) -> None:
    course = await make_course()
    learner = await new_user("lea")
    code = course.invite_code
    for typed in (code, code.lower(), f"{code[:5]}-{code[5:]}", " ".join(code), f" {code}\n"):
        membership = await actions.join_course(invite_code=typed, acting_user=learner)
        assert membership.course_id == course.id  # type: ignore[attr-defined]
        assert membership.role == Role.LEARNER
        stored = await Membership.get(course_id=course.id, user_id=learner.id)
        assert stored.role == Role.LEARNER
        await stored.delete()


async def test_join_with_a_wrong_or_missing_code(db: Settings) -> None:
    course = await make_course()
    learner = await new_user("lea")
    wrong = "".join(reversed(course.invite_code))
    with pytest.raises(NotFound) as not_found:
        await actions.join_course(invite_code=wrong, acting_user=learner)
    assert "invite_code" in not_found.value.fields
    with pytest.raises(InvalidInput) as missing:
        await actions.join_course(invite_code=" - ", acting_user=learner)
    assert "invite_code" in missing.value.fields
    assert not await Membership.filter(user_id=learner.id).exists()


async def test_joining_twice_keeps_one_membership(db: Settings) -> None:
    course = await make_course()
    learner = await new_user("lea")
    first = await actions.join_course(invite_code=course.invite_code, acting_user=learner)
    again = await actions.join_course(invite_code=course.invite_code, acting_user=learner)
    assert first.id == again.id
    assert await Membership.filter(course_id=course.id, user_id=learner.id).count() == 1


async def test_joining_does_not_demote_staff(db: Settings) -> None:
    course = await make_course()
    instructor = await Membership.get(course_id=course.id, role=Role.INSTRUCTOR)
    user = await User.get(id=instructor.user_id)  # type: ignore[attr-defined]
    membership = await actions.join_course(invite_code=course.invite_code, acting_user=user)
    assert membership.role == Role.INSTRUCTOR
    assert (await Membership.get(id=instructor.id)).role == Role.INSTRUCTOR


async def test_open_course_is_joined_without_a_code(db: Settings) -> None:
    course = await make_course(enrolment=Enrolment.OPEN)
    learner = await new_user("lea")
    membership = await actions.join_course(course=course, acting_user=learner)
    assert membership.role == Role.LEARNER
    assert await Membership.filter(course_id=course.id, user_id=learner.id).count() == 1


async def test_invite_course_by_slug_needs_its_code(db: Settings) -> None:
    course = await make_course(enrolment=Enrolment.INVITE)
    learner = await new_user("lea")
    with pytest.raises(PermissionDenied):
        await actions.join_course(course=course, acting_user=learner)
    with pytest.raises(PermissionDenied):
        await actions.join_course(course=course, invite_code="WRONGCODE2", acting_user=learner)
    assert not await Membership.filter(user_id=learner.id).exists()
    await actions.join_course(
        course=course, invite_code=course.invite_code.lower(), acting_user=learner
    )
    assert await Membership.filter(course_id=course.id, user_id=learner.id).exists()


async def test_suspended_user_cannot_join(db: Settings) -> None:
    course = await make_course(enrolment=Enrolment.OPEN)
    learner = await new_user("lea")
    await actions.set_user_active(learner, False, acting_user=None)
    with pytest.raises(PermissionDenied):
        await actions.join_course(course=course, acting_user=learner)
    with pytest.raises(PermissionDenied):
        await actions.join_course(invite_code=course.invite_code, acting_user=learner)
    assert not await Membership.filter(user_id=learner.id).exists()


# ---------------------------------------------------------------- set_member_role


async def course_with_instructor() -> tuple[Course, User]:
    teacher = await new_user("teach", can_create_courses=True)
    course = await actions.create_course(title="Stars", acting_user=teacher)
    return course, teacher


async def test_instructor_adds_a_member_who_is_told_once(db: Settings) -> None:
    course, teacher = await course_with_instructor()
    member = await new_user("mia")
    membership = await actions.set_member_role(
        course, username="MIA", role="mentor", acting_user=teacher
    )
    await drain_jobs()
    stored = await Membership.get(course_id=course.id, user_id=member.id)
    assert stored.id == membership.id
    assert stored.role == Role.MENTOR
    assert stored.role_changed_at is None

    notes = await Notification.filter(user_id=member.id)
    assert len(notes) == 1
    assert notes[0].kind == "role"
    assert "Stars" in notes[0].message and "mentor" in notes[0].message
    assert notes[0].link == f"/courses/{course.slug}"
    assert notes[0].read_at is None
    events = await OutboxEvent.all()
    assert len(events) == 1
    assert events[0].kind == "core.notify"
    assert events[0].delivered_at is not None
    assert not await Notification.filter(user_id=teacher.id).exists()


async def test_instructor_changes_a_role(db: Settings) -> None:
    course, teacher = await course_with_instructor()
    member = await new_user("mia")
    await actions.set_member_role(course, username="mia", role=Role.LEARNER, acting_user=teacher)
    await drain_jobs()
    before = await Membership.get(course_id=course.id, user_id=member.id)
    assert before.role_changed_at is None

    changed = await actions.set_member_role(
        course, username="mia", role=Role.INSTRUCTOR, acting_user=teacher
    )
    await drain_jobs()
    assert changed.role == Role.INSTRUCTOR
    after = await Membership.get(course_id=course.id, user_id=member.id)
    assert after.id == before.id
    assert after.role == Role.INSTRUCTOR
    assert after.role_changed_at is not None
    assert await Membership.filter(course_id=course.id).count() == 2

    notes = await Notification.filter(user_id=member.id).order_by("id")
    assert len(notes) == 2
    assert "instructor" in notes[1].message
    events = await OutboxEvent.all()
    assert len(events) == 2
    assert all(event.delivered_at is not None for event in events)


@pytest.mark.parametrize("role", [Role.LEARNER, Role.MENTOR])
async def test_learners_and_mentors_cannot_change_roles(db: Settings, role: Role) -> None:
    course, _ = await course_with_instructor()
    actor = await new_user("actor")
    target = await new_user("target")
    await add_member(course, actor, role)
    await add_member(course, target, Role.LEARNER)
    await drain_jobs()
    events_before = await OutboxEvent.all().count()
    notes_before = await Notification.all().count()

    with pytest.raises(PermissionDenied):
        await actions.set_member_role(course, username="target", role="mentor", acting_user=actor)
    with pytest.raises(PermissionDenied):
        await actions.set_member_role(
            course, username="actor", role="instructor", acting_user=actor
        )
    outsider = await new_user("outsider")
    with pytest.raises(PermissionDenied):
        await actions.set_member_role(
            course, username="outsider", role="learner", acting_user=actor
        )
    await drain_jobs()

    assert (await Membership.get(course_id=course.id, user_id=target.id)).role == Role.LEARNER
    assert (await Membership.get(course_id=course.id, user_id=actor.id)).role == role
    assert not await Membership.filter(user_id=outsider.id).exists()
    assert await OutboxEvent.all().count() == events_before
    assert await Notification.all().count() == notes_before


async def test_admin_manages_roles_without_being_a_member(db: Settings) -> None:
    course, _ = await course_with_instructor()
    admin = await new_user("root", is_admin=True)
    member = await new_user("mia")
    await actions.set_member_role(course, username="mia", role="mentor", acting_user=admin)
    assert (await Membership.get(course_id=course.id, user_id=member.id)).role == Role.MENTOR
    assert not await Membership.filter(user_id=admin.id).exists()


async def test_suspended_instructor_cannot_change_roles(db: Settings) -> None:
    course, teacher = await course_with_instructor()
    await new_user("mia")
    await actions.set_user_active(teacher, False, acting_user=None)
    with pytest.raises(PermissionDenied):
        await actions.set_member_role(course, username="mia", role="learner", acting_user=teacher)
    assert await Membership.filter(course_id=course.id).count() == 1
    assert not await OutboxEvent.exists()


async def test_last_instructor_cannot_be_demoted(db: Settings) -> None:
    course, teacher = await course_with_instructor()
    with pytest.raises(Conflict) as caught:
        await actions.set_member_role(course, username="teach", role="learner", acting_user=teacher)
    assert "role" in caught.value.fields
    await drain_jobs()
    stored = await Membership.get(course_id=course.id, user_id=teacher.id)
    assert stored.role == Role.INSTRUCTOR
    assert stored.role_changed_at is None
    assert not await OutboxEvent.exists()
    assert not await Notification.exists()

    # With a second instructor the first may step down.
    await new_user("co")
    await actions.set_member_role(course, username="co", role="instructor", acting_user=teacher)
    await actions.set_member_role(course, username="teach", role="mentor", acting_user=teacher)
    assert (await Membership.get(course_id=course.id, user_id=teacher.id)).role == Role.MENTOR


async def test_unknown_user_or_role(db: Settings) -> None:
    course, teacher = await course_with_instructor()
    with pytest.raises(NotFound) as unknown:
        await actions.set_member_role(course, username="ghost", role="learner", acting_user=teacher)
    assert "username" in unknown.value.fields
    await new_user("mia")
    with pytest.raises(InvalidInput) as bad_role:
        await actions.set_member_role(course, username="mia", role="owner", acting_user=teacher)
    assert "role" in bad_role.value.fields
    assert await Membership.filter(course_id=course.id).count() == 1
    assert not await OutboxEvent.exists()


async def test_setting_the_same_role_again_changes_nothing(db: Settings) -> None:
    course, teacher = await course_with_instructor()
    member = await new_user("mia")
    await actions.set_member_role(course, username="mia", role="mentor", acting_user=teacher)
    await drain_jobs()
    again = await actions.set_member_role(
        course, username="mia", role="mentor", acting_user=teacher
    )
    await drain_jobs()
    assert again.role == Role.MENTOR
    assert await OutboxEvent.all().count() == 1
    assert await Notification.filter(user_id=member.id).count() == 1
    assert (await Membership.get(course_id=course.id, user_id=member.id)).role_changed_at is None


# ---------------------------------------------------------------- set_user_active


async def test_suspension_ends_all_sessions_of_that_user_only(db: Settings) -> None:
    ann = await new_user("ann")
    bob = await new_user("bob")
    ann_keys = [await auth.start_session(ann, db) for _ in range(2)]
    bob_key = await auth.start_session(bob, db)

    returned = await actions.set_user_active(ann, False, acting_user=None)
    assert returned.is_active is False
    assert (await User.get(id=ann.id)).is_active is False
    assert (await User.get(id=bob.id)).is_active is True
    ann_sessions = await AuthSession.filter(user_id=ann.id)
    assert len(ann_sessions) == 2
    assert all(session.revoked_at is not None for session in ann_sessions)
    assert (await AuthSession.get(user_id=bob.id)).revoked_at is None
    for key in ann_keys:
        assert await auth.resume_session(key, db) is None
    assert await auth.resume_session(bob_key, db) is not None

    # Reinstating opens the account again, not the old sessions.
    await actions.set_user_active(ann, True, acting_user=None)
    assert (await User.get(id=ann.id)).is_active is True
    for key in ann_keys:
        assert await auth.resume_session(key, db) is None


async def test_only_admins_suspend(db: Settings) -> None:
    ann = await new_user("ann")
    bob = await new_user("bob")
    await auth.start_session(ann, db)
    with pytest.raises(PermissionDenied):
        await actions.set_user_active(ann, False, acting_user=bob)
    assert (await User.get(id=ann.id)).is_active is True
    assert (await AuthSession.get(user_id=ann.id)).revoked_at is None

    admin = await new_user("root", is_admin=True)
    await actions.set_user_active(ann, False, acting_user=admin)
    assert (await User.get(id=ann.id)).is_active is False
