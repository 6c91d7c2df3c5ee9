"""Read-only queries of peer review: what pages show, and who may see it.

Reviewers stay anonymous to authors (staff see who reviewed whom); a learner's course record
is theirs and the staff's unless they make it public.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

from core import runtime, timeutil
from core.errors import NotFound, PermissionDenied
from core.models import Course, User
from peer_review import attachments
from peer_review.models import (
    Assignment,
    Attachment,
    CalibrationAnswer,
    CalibrationSample,
    Criterion,
    FlagState,
    Grade,
    GradeSource,
    LearnerRecord,
    Level,
    Participation,
    Review,
    ReviewStatus,
    SimilarityFlag,
    SimilarityState,
    StaffGrade,
    Submission,
    is_staff,
)
from peer_review.rubric import CommentRule, CriterionView, LevelView, Rubric


async def load_rubric(assignment_id: int) -> Rubric:
    criteria = await Criterion.filter(assignment_id=assignment_id).order_by("position", "id")
    levels = await Level.filter(criterion__assignment_id=assignment_id).order_by("position", "id")
    by_criterion: dict[int, list[LevelView]] = {}
    for level in levels:
        by_criterion.setdefault(level.criterion_id, []).append(  # type: ignore[attr-defined]
            LevelView(level.id, level.position, level.points, level.label, level.description)
        )
    return Rubric(
        tuple(
            CriterionView(
                id=c.id,
                title=c.title,
                weight=c.weight,
                levels=tuple(by_criterion.get(c.id, [])),
                comment=CommentRule(c.comment_rule),
                comment_below=c.comment_below,
                description=c.description,
            )
            for c in criteria
        )
    )


async def current_submission(assignment_id: int, user_id: int) -> Submission | None:
    return await Submission.get_or_none(
        assignment_id=assignment_id, author_id=user_id, is_current=True
    )


async def calibration_needed(assignment: Assignment) -> int:
    """How many samples a learner grades before reviewing peers (at most as many as exist)."""
    if assignment.calibration_required <= 0:
        return 0
    available = await CalibrationSample.filter(assignment_id=assignment.id).count()
    return min(assignment.calibration_required, available)


async def next_calibration_sample(assignment: Assignment, user: User) -> CalibrationSample | None:
    """The sample the learner grades next, or None when calibration is done."""
    done = set(
        cast(
            list[int],
            await CalibrationAnswer.filter(
                assignment_id=assignment.id, learner_id=user.id
            ).values_list("sample_id", flat=True),
        )
    )
    if len(done) >= await calibration_needed(assignment):
        return None
    samples = await CalibrationSample.filter(assignment_id=assignment.id).order_by("position", "id")
    return next((s for s in samples if s.id not in done), None)


async def reviews_given(assignment_id: int, user_id: int) -> int:
    return await Review.filter(
        assignment_id=assignment_id, reviewer_id=user_id, status=ReviewStatus.SUBMITTED
    ).count()


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a learner stands in an assignment: what a page shows and which buttons it offers."""

    submission: Submission | None
    attempts_used: int
    attempts_left: int
    locked: bool  # the learner has opened a peer's submission
    under_review: bool  # peers have been handed the learner's current submission
    calibration_done: int
    calibration_needed: int
    reviews_given: int
    reviews_required: int
    active_review: Review | None
    grade: Grade | None

    @property
    def may_resubmit(self) -> bool:
        return self.attempts_left > 0 and not self.locked and not self.under_review

    @property
    def calibrated(self) -> bool:
        return self.calibration_done >= self.calibration_needed


async def progress(assignment: Assignment, user: User, now: datetime | None = None) -> Progress:
    now = now or timeutil.utcnow()
    attempts = await Submission.filter(assignment_id=assignment.id, author_id=user.id).count()
    submission = await current_submission(assignment.id, user.id)
    participation = await Participation.get_or_none(assignment_id=assignment.id, learner_id=user.id)
    under_review = (
        submission is not None and await Review.filter(submission_id=submission.id).exists()
    )
    active = await Review.filter(
        assignment_id=assignment.id,
        reviewer_id=user.id,
        status=ReviewStatus.LEASED,
        lease_expires_at__gt=now,
    ).first()
    grade = await Grade.get_or_none(submission_id=submission.id) if submission else None
    return Progress(
        submission=submission,
        attempts_used=attempts,
        attempts_left=max(0, assignment.attempt_limit - attempts),
        locked=participation is not None and participation.locked_at is not None,
        under_review=under_review,
        calibration_done=await CalibrationAnswer.filter(
            assignment_id=assignment.id, learner_id=user.id
        ).count(),
        calibration_needed=await calibration_needed(assignment),
        reviews_given=await reviews_given(assignment.id, user.id),
        reviews_required=assignment.reviews_required,
        active_review=active,
        grade=grade,
    )


@dataclass(frozen=True, slots=True)
class ReviewForAuthor:
    """A review as its author sees it: the reviewer is "Reviewer n" unless staff look."""

    review: Review
    label: str
    reviewer_id: int | None


async def reviews_of(submission: Submission, *, viewer: User) -> list[ReviewForAuthor]:
    """The completed (and voided) reviews of a submission, for its author or the staff."""
    assignment = await Assignment.get(id=submission.assignment_id)  # type: ignore[attr-defined]
    course = await Course.get(id=assignment.course_id)  # type: ignore[attr-defined]
    role = await course.role_of(viewer)
    staff = is_staff(viewer, role)
    if not (submission.is_by(viewer) or staff):
        raise PermissionDenied("Only the author and the course's staff see these reviews.")
    reviews = await Review.filter(
        submission_id=submission.id, status__in=[ReviewStatus.SUBMITTED, ReviewStatus.VOIDED]
    ).order_by("submitted_at", "id")
    return [
        ReviewForAuthor(
            review=r,
            label=f"Reviewer {i}",
            reviewer_id=r.reviewer_id if staff else None,  # type: ignore[attr-defined]
        )
        for i, r in enumerate(reviews, start=1)
    ]


@dataclass(frozen=True, slots=True)
class StaffQueue:
    short_of_reviews: list[Submission]
    flagged_reviews: list[Review]
    similarity_flags: list[SimilarityFlag]


async def staff_queue(assignment: Assignment, now: datetime | None = None) -> StaffQueue:
    """What needs staff: after the review deadline, submissions short of reviews (and not
    staff-graded); at any time, reviews flagged as unjustified and near-duplicate pairs."""
    now = now or timeutil.utcnow()
    short: list[Submission] = []
    if now > assignment.review_due_at:
        graded = set(
            cast(
                list[int],
                await StaffGrade.filter(submission__assignment_id=assignment.id).values_list(
                    "submission_id", flat=True
                ),
            )
        )
        counts: dict[int, int] = {}
        reviewed = await Review.filter(
            assignment_id=assignment.id, status=ReviewStatus.SUBMITTED
        ).values_list("submission_id", flat=True)
        for sid in cast(list[int], reviewed):
            counts[sid] = counts.get(sid, 0) + 1
        for submission in await Submission.filter(
            assignment_id=assignment.id, is_current=True
        ).order_by("submitted_at", "id"):
            if submission.id not in graded and counts.get(submission.id, 0) < (
                assignment.reviews_wanted
            ):
                short.append(submission)
    flagged = await Review.filter(
        assignment_id=assignment.id, flag_state=FlagState.OPEN, status=ReviewStatus.SUBMITTED
    ).order_by("flagged_at", "id")
    similar = await SimilarityFlag.filter(
        assignment_id=assignment.id, state=SimilarityState.OPEN
    ).order_by("-similarity", "id")
    return StaffQueue(short, list(flagged), list(similar))


@dataclass(frozen=True, slots=True)
class RecordRow:
    assignment_id: int
    title: str
    final_percent: float
    source: GradeSource
    is_late: bool
    reviews_given: int


async def record_is_visible(course: Course, learner: User, viewer: User | None) -> bool:
    """The learner, the course's staff and site admins always; anyone when made public."""
    if viewer is not None and (viewer.id == learner.id or viewer.is_admin):
        return True
    if is_staff(viewer, await course.role_of(viewer)):
        return True
    record = await LearnerRecord.get_or_none(course_id=course.id, learner_id=learner.id)
    return record is not None and record.is_public


async def course_record(course: Course, learner: User, *, viewer: User | None) -> list[RecordRow]:
    """The learner's completed assignments (graded, required reviews given), with grades."""
    if not await record_is_visible(course, learner, viewer):
        raise NotFound("This learner's record is not public.")
    assignments = {a.id: a for a in await Assignment.filter(course_id=course.id, is_published=True)}
    if not assignments:
        return []
    grades = await Grade.filter(
        assignment_id__in=list(assignments), author_id=learner.id, final_percent__not_isnull=True
    )
    rows: list[RecordRow] = []
    for grade in grades:
        submission = await Submission.get(id=grade.submission_id)  # type: ignore[attr-defined]
        if not submission.is_current:
            continue
        assignment = assignments[grade.assignment_id]
        given = await reviews_given(assignment.id, learner.id)
        if given < assignment.reviews_required or grade.final_percent is None:
            continue
        rows.append(
            RecordRow(
                assignment_id=assignment.id,
                title=assignment.title,
                final_percent=grade.final_percent,
                source=GradeSource(grade.source),
                is_late=submission.is_late,
                reviews_given=given,
            )
        )
    order = {a.id: (a.submission_due_at, a.id) for a in assignments.values()}
    rows.sort(key=lambda row: order[row.assignment_id])
    return rows


async def open_attachment(
    attachment_id: int, *, viewer: User | None
) -> tuple[Path, Mapping[str, str]]:
    """The stored file and safe download headers, for someone who may read the submission."""
    attachment = await Attachment.get_or_none(id=attachment_id)
    if attachment is None or viewer is None:
        raise NotFound("No such attachment.")
    submission = await Submission.get(id=attachment.submission_id)  # type: ignore[attr-defined]
    assignment = await Assignment.get(id=submission.assignment_id)  # type: ignore[attr-defined]
    course = await Course.get(id=assignment.course_id)  # type: ignore[attr-defined]
    reviewing = await Review.filter(submission_id=submission.id, reviewer_id=viewer.id).exists()
    if not submission.can_be_read_by(viewer, await course.role_of(viewer), reviewing=reviewing):
        raise NotFound("No such attachment.")
    path = attachments.storage_path(runtime.settings().data_dir, attachment.storage_name)
    headers = attachments.download_headers(attachment.filename, attachment.kind, attachment.size)
    return path, headers
