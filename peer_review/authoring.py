"""Instructors set up an assignment: its text and policies, the rubric, calibration samples.

Part of the peer-review write path; peer_review/actions.py re-exports these actions.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from core.errors import Conflict, PermissionDenied
from core.models import Course, User
from forum.markup import MarkupError, render_markdown, validate_body
from peer_review._common import check_manager, fields_error
from peer_review.models import (
    Assignment,
    CalibrationAnswer,
    CalibrationSample,
    Criterion,
    LatePolicy,
    Level,
    Review,
    StaffGrade,
)
from peer_review.queries import load_rubric
from peer_review.rubric import CriterionSpec, RawAnswer, Rubric, check_answers, check_rubric

TITLE_MIN, TITLE_MAX = 3, 200
EXPLANATION_MIN = 10


@dataclass(frozen=True, slots=True)
class AssignmentInput:
    """What an instructor sets for an assignment; times are UTC when given without a zone."""

    title: str
    instructions: str
    submission_opens_at: datetime
    submission_due_at: datetime
    review_due_at: datetime
    review_opens_at: datetime | None = None  # default: when submissions open
    reviews_required: int = 3
    reviews_wanted: int = 3
    calibration_required: int = 0
    attempt_limit: int = 2
    late_policy: LatePolicy | str = LatePolicy.REFUSE
    late_grace_hours: int = 0
    late_penalty_percent: int = 0
    min_words: int = 100
    comment_min_chars: int = 20
    lease_hours: int = 8
    spot_check_rate: float = 0.1


_RANGES: dict[str, tuple[int, int, str]] = {
    "reviews_required": (1, 10, "Reviews each learner gives"),
    "reviews_wanted": (1, 10, "Reviews each submission gets"),
    "calibration_required": (0, 10, "Calibration samples"),
    "attempt_limit": (1, 10, "Attempts"),
    "late_grace_hours": (0, 2160, "Late grace period (hours)"),
    "late_penalty_percent": (0, 100, "Late penalty (%)"),
    "min_words": (1, 10000, "Minimum words"),
    "comment_min_chars": (1, 500, "Minimum comment length"),
    "lease_hours": (1, 168, "Time to finish a review (hours)"),
}


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _check_assignment(data: AssignmentInput) -> dict[str, Any]:
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    title = " ".join(unicodedata.normalize("NFC", data.title or "").split())
    if not TITLE_MIN <= len(title) <= TITLE_MAX:
        errors["title"] = f"Give the assignment a title of {TITLE_MIN}-{TITLE_MAX} characters."
    values["title"] = title
    try:
        instructions = validate_body(data.instructions or "")
        values["instructions_markdown"] = instructions
        values["instructions_html"] = render_markdown(instructions)
    except MarkupError as exc:
        errors["instructions"] = str(exc).replace("A post", "The instructions")
    for name, (low, high, label) in _RANGES.items():
        value = getattr(data, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors[name] = f"{label}: a whole number from {low} to {high}."
        values[name] = value
    rate = data.spot_check_rate
    if not isinstance(rate, int | float) or not math.isfinite(rate) or not 0 <= rate <= 0.5:
        errors["spot_check_rate"] = "The spot-check rate is between 0 and 0.5."
    values["spot_check_rate"] = float(rate) if isinstance(rate, int | float) else 0.0
    try:
        policy = LatePolicy(data.late_policy)
    except ValueError:
        errors["late_policy"] = "Choose refuse, accept or penalty."
        policy = LatePolicy.REFUSE
    values["late_policy"] = policy
    if policy == LatePolicy.REFUSE:
        values["late_grace_hours"], values["late_penalty_percent"] = 0, 0
    elif "late_grace_hours" not in errors and data.late_grace_hours < 1:
        errors["late_grace_hours"] = "Say for how many hours late work is still taken."
    if policy != LatePolicy.PENALTY:
        values["late_penalty_percent"] = 0
    elif "late_penalty_percent" not in errors and data.late_penalty_percent < 1:
        errors["late_penalty_percent"] = "Give the penalty for late work (1-100 %)."
    opens, due = _aware(data.submission_opens_at), _aware(data.submission_due_at)
    review_opens = _aware(data.review_opens_at or data.submission_opens_at)
    review_due = _aware(data.review_due_at)
    if due <= opens:
        errors["submission_due_at"] = "The submission deadline must come after the opening."
    if review_opens < opens:
        errors["review_opens_at"] = "Reviewing cannot start before submissions open."
    if review_due <= max(due, review_opens):
        errors["review_due_at"] = "The review deadline must come after the submission deadline."
    elif "late_grace_hours" not in errors and isinstance(values["late_grace_hours"], int):
        grace = values["late_grace_hours"]
        if policy != LatePolicy.REFUSE and (review_due - due).total_seconds() < grace * 3600:
            errors["late_grace_hours"] = "Late work must be in before the review deadline."
    values.update(
        submission_opens_at=opens,
        submission_due_at=due,
        review_opens_at=review_opens,
        review_due_at=review_due,
    )
    if errors:
        raise fields_error(errors)
    return values


async def create_assignment(
    course: Course, data: AssignmentInput, *, acting_user: User
) -> Assignment:
    """A new, unpublished assignment (instructors)."""
    probe = Assignment(course=course)
    if not probe.can_be_managed_by(acting_user, await course.role_of(acting_user)):
        raise PermissionDenied("Only the course's instructors can create assignments.")
    values = _check_assignment(data)
    return await Assignment.create(course=course, created_by=acting_user, **values)


async def update_assignment(
    assignment: Assignment, data: AssignmentInput, *, acting_user: User
) -> Assignment:
    """Change an assignment's text, windows and policies (instructors)."""
    await check_manager(assignment, acting_user)
    values = _check_assignment(data)
    await Assignment.filter(id=assignment.id).update(**values)
    for name, value in values.items():
        setattr(assignment, name, value)
    return assignment


async def _rubric_in_use(assignment_id: int) -> bool:
    return (
        await Review.filter(assignment_id=assignment_id).exists()
        or await StaffGrade.filter(submission__assignment_id=assignment_id).exists()
        or await CalibrationSample.filter(assignment_id=assignment_id).exists()
    )


async def set_rubric(
    assignment: Assignment, criteria: Sequence[CriterionSpec], *, acting_user: User
) -> Rubric:
    """Replace the rubric, until anything (a sample, a review, a staff grade) depends on it."""
    await check_manager(assignment, acting_user)
    cleaned, errors = check_rubric(criteria)
    if errors:
        raise fields_error(errors, "The rubric is not complete yet.")
    if await _rubric_in_use(assignment.id):
        raise Conflict(
            "Calibration samples, reviews or staff grades already use this rubric. Delete the "
            "calibration samples first; once reviewing has begun the rubric stays as it is."
        )
    async with in_transaction():
        await Criterion.filter(assignment_id=assignment.id).delete()
        for position, spec in enumerate(cleaned):
            criterion = await Criterion.create(
                assignment=assignment,
                position=position,
                title=spec.title,
                description=spec.description,
                weight=spec.weight,
                comment_rule=spec.comment,
                comment_below=spec.comment_below,
            )
            for level_position, level in enumerate(spec.levels):
                await Level.create(
                    criterion=criterion,
                    position=level_position,
                    points=level.points,
                    label=level.label,
                    description=level.description,
                )
    return await load_rubric(assignment.id)


async def add_calibration_sample(
    assignment: Assignment,
    *,
    title: str,
    body: str,
    reference: Mapping[int, RawAnswer],
    acting_user: User,
) -> CalibrationSample:
    """A sample graded by the instructor: a level and an explanation (the comment) for each
    criterion."""
    await check_manager(assignment, acting_user)
    rubric = await load_rubric(assignment.id)
    if not rubric.criteria:
        raise Conflict("Write the rubric before the calibration samples.")
    checked = check_answers(
        rubric,
        reference,
        comment_min_chars=EXPLANATION_MIN,
        need_overall=False,
        need_comments=False,
    )
    errors = dict(checked.errors)
    for criterion in rubric.criteria:
        text = reference.get(criterion.id, RawAnswer()).comment.strip()
        if len(text) < EXPLANATION_MIN and f"comment-{criterion.id}" not in errors:
            errors[f"comment-{criterion.id}"] = (
                f"Explain this level in at least {EXPLANATION_MIN} characters; learners read "
                "it after grading the sample."
            )
    title = " ".join((title or "").split())
    if not TITLE_MIN <= len(title) <= TITLE_MAX:
        errors["title"] = f"Give the sample a title of {TITLE_MIN}-{TITLE_MAX} characters."
    try:
        markdown = validate_body(body or "")
    except MarkupError as exc:
        errors["body"] = str(exc).replace("A post", "A sample")
        markdown = ""
    if errors:
        raise fields_error(errors)
    last = await CalibrationSample.filter(assignment_id=assignment.id).order_by("-position").first()
    return await CalibrationSample.create(
        assignment=assignment,
        position=(last.position + 1) if last else 0,
        title=title,
        body_markdown=markdown,
        body_html=render_markdown(markdown),
        reference={
            str(cid): {"level": a.level_id, "explanation": a.comment}
            for cid, a in checked.answers.items()
        },
    )


async def delete_calibration_sample(sample: CalibrationSample, *, acting_user: User) -> None:
    """Remove a sample nobody has graded yet."""
    assignment = await Assignment.get(id=sample.assignment_id)  # type: ignore[attr-defined]
    await check_manager(assignment, acting_user)
    if await CalibrationAnswer.filter(sample_id=sample.id).exists():
        raise Conflict("Learners have graded this sample; it stays as their evidence.")
    await CalibrationSample.filter(id=sample.id).delete()


async def publish_assignment(assignment: Assignment, *, acting_user: User) -> Assignment:
    """Make the assignment visible to learners once its rubric and samples are ready."""
    await check_manager(assignment, acting_user)
    if assignment.is_published:
        return assignment
    rubric = await load_rubric(assignment.id)
    if not rubric.criteria:
        raise Conflict("Write the rubric before publishing.")
    samples = await CalibrationSample.filter(assignment_id=assignment.id).count()
    if samples < assignment.calibration_required:
        raise Conflict(
            f"The assignment asks for {assignment.calibration_required} calibration samples; "
            f"{samples} are written."
        )
    await Assignment.filter(id=assignment.id).update(is_published=True)
    assignment.is_published = True
    return assignment
