"""Helpers shared by the peer-review write paths (actions, authoring, interventions)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from core import timeutil
from core.errors import InvalidInput, NotFound, PermissionDenied
from core.models import Course, User
from peer_review.models import Assignment, Submission


def now() -> datetime:
    # Looked up on the module each time, so tests can move the clock.
    return timeutil.utcnow()


def fields_error(
    errors: Mapping[str, str], message: str = "Please correct the marked fields."
) -> InvalidInput:
    return InvalidInput(message, fields=errors)


async def course_of(assignment: Assignment) -> Course:
    return await Course.get(id=assignment.course_id)  # type: ignore[attr-defined]


async def assignment_of(submission: Submission) -> Assignment:
    return await Assignment.get(id=submission.assignment_id)  # type: ignore[attr-defined]


def link(course: Course, assignment: Assignment) -> str:
    return f"/courses/{course.slug}/assignments/{assignment.id}"


async def check_learner(assignment: Assignment, user: User) -> Course:
    """The course, if the user is one of its learners and not suspended in it."""
    course = await course_of(assignment)
    role = await course.role_of(user)
    if not assignment.can_be_worked_on_by(user, role):
        if role is None or not assignment.is_published:
            raise NotFound("No such assignment.")
        raise PermissionDenied("Only the course's learners submit and review work.")
    from moderation.models import SanctionKind, active_sanction

    sanction = await active_sanction(course.id, user.id, now())
    if sanction is not None and sanction.kind == SanctionKind.SUSPENSION:
        raise PermissionDenied(
            "You are suspended in this course. Your standing page (/me/standing) shows why "
            "and how to appeal."
        )
    return course


async def check_manager(assignment: Assignment, user: User) -> Course:
    course = await course_of(assignment)
    if not assignment.can_be_managed_by(user, await course.role_of(user)):
        raise PermissionDenied("Only the course's instructors can change assignments.")
    return course
