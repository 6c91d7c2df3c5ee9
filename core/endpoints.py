"""JSON API endpoints of the core package (/api/v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core import actions
from core.api import api_user, json_response, openapi_document, parse_body
from core.errors import NotFound
from core.models import Course, Membership, Role, User


class UserOut(BaseModel):
    username: str
    display_name: str


class MeOut(UserOut):
    is_admin: bool
    can_create_courses: bool


class CourseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    slug: str | None = Field(default=None, max_length=64)
    enrolment: Literal["open", "invite"] = "invite"


class CourseOut(BaseModel):
    slug: str
    title: str
    description: str
    enrolment: str
    role: str | None = None
    invite_code: str | None = Field(default=None, description="Shown to instructors only.")


class JoinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    invite_code: str = Field(min_length=1, max_length=40)


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    role: Literal["learner", "mentor", "instructor"]


class MemberOut(BaseModel):
    username: str
    display_name: str
    role: str
    joined_at: datetime


def course_out(course: Course, role: Role | None, *, show_code: bool) -> CourseOut:
    return CourseOut(
        slug=course.slug,
        title=course.title,
        description=course.description,
        enrolment=course.enrolment.value,
        role=role.value if role else None,
        invite_code=course.invite_code if show_code else None,
    )


def member_out(membership: Membership) -> MemberOut:
    return MemberOut(
        username=membership.user.username,
        display_name=membership.user.display_name,
        role=Role(membership.role).value,
        joined_at=membership.joined_at,
    )


async def me(request: Request) -> Response:
    user = api_user(request)
    return json_response(
        MeOut(
            username=user.username,
            display_name=user.display_name,
            is_admin=user.is_admin,
            can_create_courses=user.may_create_courses(),
        )
    )


async def my_courses(request: Request) -> Response:
    user = api_user(request)
    memberships = (
        await Membership.filter(user_id=user.id).select_related("course").order_by("course__title")
    )
    return json_response(
        [
            course_out(m.course, Role(m.role), show_code=m.role == Role.INSTRUCTOR)
            for m in memberships
        ]
    )


async def create_course(request: Request) -> Response:
    user = api_user(request)
    body = await parse_body(request, CourseIn)
    course = await actions.create_course(
        title=body.title,
        description=body.description,
        slug=body.slug,
        enrolment=body.enrolment,
        acting_user=user,
    )
    return json_response(course_out(course, Role.INSTRUCTOR, show_code=True), status_code=201)


async def join(request: Request) -> Response:
    user = api_user(request)
    body = await parse_body(request, JoinIn)
    membership = await actions.join_course(invite_code=body.invite_code, acting_user=user)
    await membership.fetch_related("course")
    return json_response(course_out(membership.course, Role(membership.role), show_code=False))


async def _course(request: Request) -> Course:
    course = await Course.get_or_none(slug=request.path_params["slug"])
    if course is None:
        raise NotFound("There is no such course.")
    return course


async def list_members(request: Request) -> Response:
    """Guarded: course instructors only."""
    course: Course = request.state.course
    rows = (
        await Membership.filter(course_id=course.id)
        .select_related("user")
        .order_by("user__username")
    )
    return json_response([member_out(m) for m in rows])


async def add_member(request: Request) -> Response:
    """Guarded: course instructors only."""
    user = api_user(request)
    course: Course = request.state.course
    body = await parse_body(request, MemberIn)
    membership = await actions.set_member_role(
        course, username=body.username, role=body.role, acting_user=user
    )
    membership.user = await User.get(id=membership.user_id)  # type: ignore[attr-defined]
    return json_response(member_out(membership), status_code=201)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(request.app.routes))
