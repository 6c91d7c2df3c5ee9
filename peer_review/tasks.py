"""Outbox handlers of peer review; each calls an idempotent action as the system."""

from __future__ import annotations

from core.models import OutboxEvent
from peer_review import actions, calibrated
from peer_review.models import Assignment, StaffGrade, Submission


async def recompute_grade(event: OutboxEvent) -> None:
    """A review, a staff grade, a void or an override changed: recompute the grade.

    Grades come from one model fitted over the whole assignment (peer_review/calibrated.py).
    A staff-graded submission is an anchor of that model: what staff gave it tells how each of
    its reviewers leans, so every current submission of the assignment is recomputed, with one
    fit shared by all. Recomputing is idempotent: unchanged grades are not written again.
    """
    submission = await Submission.get_or_none(id=event.payload["submission_id"])
    if submission is None:
        return
    assignment = await Assignment.get(id=submission.assignment_id)  # type: ignore[attr-defined]
    grader = await calibrated.grader_for(assignment)
    await actions.recompute_grade(submission, acting_user=None, grader=grader)
    if not await StaffGrade.filter(submission_id=submission.id).exists():
        return
    others = await Submission.filter(
        assignment_id=assignment.id, is_current=True, id__not=submission.id
    ).order_by("id")
    for other in others:
        await actions.recompute_grade(other, acting_user=None, grader=grader)


async def check_similarity(event: OutboxEvent) -> None:
    """A submission arrived: compare it with the assignment's others."""
    submission = await Submission.get_or_none(id=event.payload["submission_id"])
    if submission is not None and submission.is_current:
        await actions.check_similarity(submission, acting_user=None)


HANDLERS = {
    "peer_review.recompute_grade": recompute_grade,
    "peer_review.check_similarity": check_similarity,
}
