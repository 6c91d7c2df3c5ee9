"""Outbox handlers of peer review; each calls an idempotent action as the system."""

from __future__ import annotations

from core.models import OutboxEvent
from peer_review import actions
from peer_review.models import Submission


async def recompute_grade(event: OutboxEvent) -> None:
    """A review, a staff grade, a void or an override changed: recompute the grade."""
    submission = await Submission.get_or_none(id=event.payload["submission_id"])
    if submission is not None:
        await actions.recompute_grade(submission, acting_user=None)


async def check_similarity(event: OutboxEvent) -> None:
    """A submission arrived: compare it with the assignment's others."""
    submission = await Submission.get_or_none(id=event.payload["submission_id"])
    if submission is not None and submission.is_current:
        await actions.check_similarity(submission, acting_user=None)


HANDLERS = {
    "peer_review.recompute_grade": recompute_grade,
    "peer_review.check_similarity": check_similarity,
}
