"""Who may look at a course page: the checks every member-only view starts with."""

from __future__ import annotations

from starlette.requests import Request

from core.errors import NotAuthenticated, NotFound, PermissionDenied
from core.models import Course, Role, User


async def course_member(request: Request) -> tuple[Course, User, Role | None]:
    """The course in the path, the signed-in user and their role; admins pass with no role."""
    user: User | None = request.scope.get("user")
    if user is None:
        raise NotAuthenticated("Sign in to see this course.")
    course = await Course.get_or_none(slug=request.path_params["slug"])
    if course is None:
        raise NotFound("There is no such course.")
    role = await course.role_of(user)
    if not course.can_be_read_by(user, role):
        raise PermissionDenied("Join this course to see its forums.")
    await check_not_suspended(course, user)
    return course, user, role


async def check_not_suspended(course: Course, user: User) -> None:
    from core.timeutil import utcnow
    from moderation.models import SanctionKind, active_sanction

    sanction = await active_sanction(course.id, user.id, utcnow())
    if sanction is not None and sanction.kind == SanctionKind.SUSPENSION:
        until = f" until {sanction.ends_at:%Y-%m-%d %H:%M} UTC" if sanction.ends_at else ""
        raise PermissionDenied(
            f"You are suspended from {course.title}{until}. Your standing page (/me/standing) "
            "shows the rule, the reason and how to appeal."
        )
