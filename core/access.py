"""Who may look at a course page: the checks every member-only view starts with."""

from __future__ import annotations

from starlette.requests import Request
from tortoise.expressions import RawSQL
from tortoise.queryset import QuerySet

from core.errors import NotAuthenticated, NotFound, PermissionDenied
from core.models import Course, Role, User
from core.prepared import Prepared


def _course_for_member(slug: str, viewer: int) -> QuerySet[Course]:
    # The ids are integers (Prepared writes only integers into the SQL text).
    return (
        Course.filter(slug=slug)
        .annotate(
            viewer_role=RawSQL(
                '(SELECT "role" FROM "agora_membership" WHERE "course_id" = "agora_course"."id" '
                f'AND "user_id" = {int(viewer)})'
            ),
            viewer_suspensions=RawSQL(
                '(SELECT COUNT(*) FROM "agora_sanction" WHERE "course_id" = "agora_course"."id" '
                f'AND "user_id" = {int(viewer)} AND "lifted_at" IS NULL '
                "AND \"kind\" = 'suspension')"
            ),
        )
        .limit(1)
    )


_COURSE_FOR_MEMBER = Prepared(_course_for_member, str, int)


async def course_member(request: Request) -> tuple[Course, User, Role | None]:
    """The course in the path, the signed-in user and their role; admins pass with no role."""
    user: User | None = request.scope.get("user")
    if user is None:
        raise NotAuthenticated("Sign in to see this course.")
    # Every course page starts here: the course, the viewer's role and whether they have any
    # suspension there come in one query.
    course = await _COURSE_FOR_MEMBER.first(request.path_params["slug"], user.id)
    if course is None:
        raise NotFound("There is no such course.")
    stored_role = getattr(course, "viewer_role", None)
    role = Role(str(stored_role)) if stored_role else None
    if not course.can_be_read_by(user, role):
        raise PermissionDenied("Join this course to see its forums.")
    # Only someone suspended here at some time needs the exact check (has it ended?).
    if int(getattr(course, "viewer_suspensions", 0) or 0):
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
