"""Builders for test data; each goes through the real actions, never raw inserts."""

from __future__ import annotations

import functools
import itertools

import httpx
import pytest

from core import actions
from core.models import Course, Enrolment, Membership, Role, User
from forum import actions as forum_actions
from forum.models import Forum, Post, Thread

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


async def make_user(
    username: str | None = None, *, display_name: str | None = None, **flags: bool
) -> User:
    username = username or f"user{next(_counter)}"
    return await actions.create_user(
        username=username,
        display_name=display_name or username.title(),
        password=PASSWORD,
        acting_user=None,
        **flags,
    )


async def make_course(
    instructor: User | None = None,
    *,
    title: str | None = None,
    enrolment: Enrolment = Enrolment.INVITE,
) -> Course:
    if instructor is None:
        instructor = await make_user(can_create_courses=True)
    elif not instructor.may_create_courses():
        instructor.can_create_courses = True
        await User.filter(id=instructor.id).update(can_create_courses=True)
    return await actions.create_course(
        title=title or f"Course {next(_counter)}", enrolment=enrolment, acting_user=instructor
    )


async def add_member(course: Course, user: User, role: Role = Role.LEARNER) -> Membership:
    instructor = await Membership.filter(course_id=course.id, role=Role.INSTRUCTOR).first()
    assert instructor is not None
    acting = await User.get(id=instructor.user_id)  # type: ignore[attr-defined]
    return await actions.set_member_role(
        course, username=user.username, role=role, acting_user=acting
    )


async def log_in(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    """Log in through the real form, as a browser would."""
    from tests.conftest import csrf_token

    token = await csrf_token(client, "/login")
    return await client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


# --- Forums -------------------------------------------------------------------------------


async def _instructor_of(course: Course) -> User:
    membership = await Membership.filter(course_id=course.id, role=Role.INSTRUCTOR).first()
    assert membership is not None
    return await User.get(id=membership.user_id)  # type: ignore[attr-defined]


async def make_forum(
    course: Course,
    *,
    title: str | None = None,
    description: str = "",
    allow_anonymous: bool = True,
    acting_user: User | None = None,
) -> Forum:
    """A forum at the end of the course's list, created by one of its instructors."""
    return await forum_actions.create_forum(
        course,
        title=title or f"Forum {next(_counter)}",
        description=description,
        allow_anonymous=allow_anonymous,
        acting_user=acting_user or await _instructor_of(course),
    )


async def make_thread(
    forum: Forum,
    author: User,
    *,
    title: str | None = None,
    body: str = "An opening post.",
    kind: str = "discussion",
    anonymous: bool = False,
) -> Thread:
    return await forum_actions.start_thread(
        forum,
        kind=kind,
        title=title or f"Thread {next(_counter)}",
        body=body,
        anonymous=anonymous,
        acting_user=author,
    )


async def make_reply(
    thread: Thread,
    author: User,
    *,
    body: str | None = None,
    parent: Post | None = None,
    anonymous: bool = False,
) -> Post:
    """A reply through the real action; `thread` is re-read so stale counters do no harm."""
    fresh = await Thread.get(id=thread.id)
    return await forum_actions.reply(
        fresh,
        body=body or f"Reply {next(_counter)}.",
        parent=parent,
        anonymous=anonymous,
        acting_user=author,
    )


@functools.cache
def _hash_once(password: str) -> str:
    from core.passwords import hash_password

    return hash_password(password)


def reuse_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash each password once per run: a real argon2id hash, without its cost per user."""
    monkeypatch.setattr(actions, "hash_password", _hash_once)
