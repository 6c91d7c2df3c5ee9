"""Builders for test data; each goes through the real actions, never raw inserts."""

from __future__ import annotations

import itertools

import httpx

from core import actions
from core.models import Course, Enrolment, Membership, Role, User

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
    instructor: User | None = None, *, title: str | None = None,
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


async def log_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    """Log in through the real form, as a browser would."""
    from tests.conftest import csrf_token

    token = await csrf_token(client, "/login")
    return await client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )
