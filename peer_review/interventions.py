"""Staff interventions in peer review: each one a moderation act on the public log.

Voiding or upholding a review, grading a submission, overriding a grade and deciding a
plagiarism flag each check the actor's standing, demand a reason, change state, append exactly
one entry to the tamper-evident log and tell the learner affected with a Notice (which they
may appeal), all in one transaction (DESIGN.md invariants 2 and 4). The log entry names ids,
never people, and never a grade: grades stay between the learner and the staff.
peer_review/actions.py re-exports these actions.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from tortoise.transactions import in_transaction

from core import jobs
from core.errors import Conflict, InvalidInput, PermissionDenied
from core.models import Course, User
from forum.markup import plain_text
from moderation import log
from moderation.actions import (
    REASON_MAX,
    REASON_MIN,
    Citation,
    _check_over,
    _cite,
    _notify,
    staff_role,
)
from moderation.models import Act, LogEntry, Source
from peer_review._common import assignment_of, course_of, fields_error, link
from peer_review.models import (
    Assignment,
    FlagState,
    Grade,
    GradeOverride,
    GradeSource,
    Review,
    ReviewStatus,
    SimilarityFlag,
    SimilarityState,
    StaffGrade,
    Submission,
)
from peer_review.queries import load_rubric
from peer_review.rubric import RawAnswer, check_answers

# Kinds of log target beyond moderation.models.TargetType (post, thread, user, flag, appeal).
TARGET_REVIEW = "review"
TARGET_SUBMISSION = "submission"
TARGET_SIMILARITY = "similarity"

INSTRUCTOR_ROLES = frozenset({"instructor", "admin"})


def _reason(reason: str) -> str:
    reason = " ".join((reason or "").split())
    if len(reason) < REASON_MIN:
        message = f"Give a reason of at least {REASON_MIN} characters; it is shown as written."
        raise InvalidInput(message, fields={"reason": message})
    if len(reason) > REASON_MAX:
        message = f"A reason can be at most {REASON_MAX} characters."
        raise InvalidInput(message, fields={"reason": message})
    return reason


async def _staff(
    course: Course, user: User, target_user_ids: Collection[int], *, instructors_only: bool = False
) -> str:
    """The role the actor acts in, after checking they may act on every person affected."""
    actor_role = await staff_role(course.id, user)
    if instructors_only and actor_role not in INSTRUCTOR_ROLES:
        raise PermissionDenied("Only the course's instructors can do this.")
    for target in target_user_ids:
        await _check_over(course.id, user, actor_role, target)
    return actor_role


async def _recompute(submission_id: int) -> None:
    await jobs.enqueue("peer_review.recompute_grade", {"submission_id": submission_id})


async def _review_context(review: Review) -> tuple[Submission, Assignment, Course]:
    submission = await Submission.get(id=review.submission_id)  # type: ignore[attr-defined]
    assignment = await assignment_of(submission)
    return submission, assignment, await course_of(assignment)


async def void_review(review: Review, *, reason: str, acting_user: User) -> LogEntry:
    """Take a submitted review out of the grade and out of its reviewer's required count."""
    submission, assignment, course = await _review_context(review)
    reviewer_id: int = review.reviewer_id  # type: ignore[attr-defined]
    actor_role = await _staff(course, acting_user, [reviewer_id])
    if review.status != ReviewStatus.SUBMITTED:
        raise Conflict("Only a submitted review can be voided.")
    reason = _reason(reason)
    was_flagged = review.flag_state == FlagState.OPEN
    async with in_transaction():
        entry = await log.append(
            course_id=course.id,
            actor_id=acting_user.id,
            actor_role=actor_role,
            act=Act.VOID_REVIEW.value,
            target_type=TARGET_REVIEW,
            target_id=review.id,
            reason=reason,
            old_value=ReviewStatus.SUBMITTED.value,
            new_value=ReviewStatus.VOIDED.value,
            source=(Source.FLAG if was_flagged else Source.MANUAL).value,
        )
        updated = await Review.filter(id=review.id, status=ReviewStatus.SUBMITTED).update(
            status=ReviewStatus.VOIDED,
            voided_at=entry.created_at,
            decision_seq=entry.seq,
            flag_state=FlagState.VOIDED if was_flagged else review.flag_state,
        )
        if not updated:
            raise Conflict("Someone else acted on this review just now; reload and look again.")
        await _recompute(submission.id)
        await _notify(
            user_id=reviewer_id,
            course=course,
            entry=entry,
            summary=f"Your review of a classmate's submission for “{assignment.title}” was "
            "voided by the course staff: it no longer counts toward their grade or toward your "
            "required reviews.",
            citation=None,
            excerpt=plain_text(review.overall_comment, max_chars=300),
        )
        if was_flagged:
            await jobs.enqueue(
                "core.notify",
                {
                    "user_id": submission.author_id,  # type: ignore[attr-defined]
                    "kind": "peer_review",
                    "message": f"The review you flagged on “{assignment.title}” was voided: "
                    f"{reason}",
                    "link": link(course, assignment),
                },
            )
    review.status, review.decision_seq = ReviewStatus.VOIDED, entry.seq
    if was_flagged:
        review.flag_state = FlagState.VOIDED
    await jobs.wake()
    return entry


async def uphold_review(review: Review, *, reason: str, acting_user: User) -> LogEntry:
    """Answer an author's flag on a review: the review stands, and why."""
    submission, assignment, course = await _review_context(review)
    author_id: int = submission.author_id  # type: ignore[attr-defined]
    actor_role = await _staff(course, acting_user, [author_id])
    if review.status != ReviewStatus.SUBMITTED or review.flag_state != FlagState.OPEN:
        raise Conflict("Only a review its author flagged can be upheld.")
    reason = _reason(reason)
    async with in_transaction():
        entry = await log.append(
            course_id=course.id,
            actor_id=acting_user.id,
            actor_role=actor_role,
            act=Act.UPHOLD_REVIEW.value,
            target_type=TARGET_REVIEW,
            target_id=review.id,
            reason=reason,
            old_value=FlagState.OPEN.value,
            new_value=FlagState.UPHELD.value,
            source=Source.FLAG.value,
        )
        updated = await Review.filter(
            id=review.id, status=ReviewStatus.SUBMITTED, flag_state=FlagState.OPEN
        ).update(flag_state=FlagState.UPHELD, decision_seq=entry.seq)
        if not updated:
            raise Conflict("Someone else acted on this review just now; reload and look again.")
        await _notify(
            user_id=author_id,
            course=course,
            entry=entry,
            summary=f"The course staff looked at the review you flagged on your submission for "
            f"“{assignment.title}”: it stands.",
            citation=None,
            excerpt=plain_text(review.flag_reason, max_chars=300),
        )
    review.flag_state, review.decision_seq = FlagState.UPHELD, entry.seq
    await jobs.wake()
    return entry


async def grade_submission(
    submission: Submission,
    *,
    answers: Mapping[int, RawAnswer],
    overall: str,
    reason: str,
    acting_user: User,
) -> StaffGrade:
    """A staff member grades a submission with the rubric; the staff grade replaces the peers'
    (and the submission can then serve as a blind spot check)."""
    assignment = await assignment_of(submission)
    course = await course_of(assignment)
    author_id: int = submission.author_id  # type: ignore[attr-defined]
    actor_role = await _staff(course, acting_user, [author_id])
    if not submission.is_current:
        raise Conflict("This attempt was replaced by a later one; grade the current one.")
    rubric = await load_rubric(assignment.id)
    checked = check_answers(
        rubric, answers, overall, comment_min_chars=assignment.comment_min_chars
    )
    errors = dict(checked.errors)
    try:
        reason = _reason(reason)
    except InvalidInput as exc:
        errors.update(exc.fields)
    if errors:
        raise fields_error(errors, "This grade is not complete yet.")
    percent = round(rubric.percent(checked.points()), 2)
    previous = await StaffGrade.filter(submission_id=submission.id).exists()
    async with in_transaction():
        entry = await log.append(
            course_id=course.id,
            actor_id=acting_user.id,
            actor_role=actor_role,
            act=Act.STAFF_GRADE.value,
            target_type=TARGET_SUBMISSION,
            target_id=submission.id,
            reason=reason,
            old_value="staff grade" if previous else "none",
            new_value="staff grade",
        )
        grade = await StaffGrade.create(
            submission=submission,
            grader=acting_user,
            comment=checked.overall,
            answers={
                str(cid): {"level": a.level_id, "points": a.points, "comment": a.comment}
                for cid, a in checked.answers.items()
            },
            percent=percent,
            entry_seq=entry.seq,
            created_at=entry.created_at,
        )
        await _recompute(submission.id)
        await _notify(
            user_id=author_id,
            course=course,
            entry=entry,
            summary=f"A member of the course staff graded your submission for "
            f"“{assignment.title}”: {percent:g} %.",
            citation=None,
        )
    await jobs.wake()
    return grade


async def override_grade(
    submission: Submission, *, percent: float, reason: str, acting_user: User
) -> GradeOverride:
    """An instructor sets a submission's final grade, whatever the reviews say."""
    assignment = await assignment_of(submission)
    course = await course_of(assignment)
    author_id: int = submission.author_id  # type: ignore[attr-defined]
    actor_role = await _staff(course, acting_user, [author_id], instructors_only=True)
    if not submission.is_current:
        raise Conflict("This attempt was replaced by a later one; override the current one.")
    errors: dict[str, str] = {}
    if (
        isinstance(percent, bool)
        or not isinstance(percent, int | float)
        or not math.isfinite(percent)
        or not 0 <= percent <= 100
    ):
        errors["percent"] = "Give the grade as a percentage from 0 to 100."
    try:
        reason = _reason(reason)
    except InvalidInput as exc:
        errors.update(exc.fields)
    if errors:
        raise fields_error(errors)
    percent = round(float(percent), 2)
    grade = await Grade.get_or_none(submission_id=submission.id)
    async with in_transaction():
        entry = await log.append(
            course_id=course.id,
            actor_id=acting_user.id,
            actor_role=actor_role,
            act=Act.OVERRIDE_GRADE.value,
            target_type=TARGET_SUBMISSION,
            target_id=submission.id,
            reason=reason,
            old_value=f"{GradeSource(grade.source).value} grade"
            if grade and grade.source
            else "no grade",
            new_value="override",
        )
        override = await GradeOverride.create(
            submission=submission,
            actor=acting_user,
            percent=percent,
            reason=reason,
            entry_seq=entry.seq,
            created_at=entry.created_at,
        )
        await _recompute(submission.id)
        await _notify(
            user_id=author_id,
            course=course,
            entry=entry,
            summary=f"An instructor set your grade for “{assignment.title}” to {percent:g} %.",
            citation=None,
        )
    await jobs.wake()
    return override


async def decide_similarity(
    flag: SimilarityFlag,
    *,
    confirmed: bool,
    reason: str,
    responsible: Collection[int] = (),
    rule_code: str = "",
    acting_user: User,
) -> LogEntry:
    """An instructor decides a near-duplicate pair: cleared, or plagiarism by the authors of
    the submissions in `responsible` (ids), who are told. A cleared pair tells nobody: the
    learners were never accused."""
    assignment = await Assignment.get(id=flag.assignment_id)  # type: ignore[attr-defined]
    course = await course_of(assignment)
    pair = {
        s.id: s
        for s in await Submission.filter(
            id__in=[flag.submission_a_id, flag.submission_b_id]  # type: ignore[attr-defined]
        )
    }
    authors = {sid: s.author_id for sid, s in pair.items()}  # type: ignore[attr-defined]
    actor_role = await _staff(course, acting_user, set(authors.values()), instructors_only=True)
    if flag.state != SimilarityState.OPEN:
        raise Conflict("This pair was already decided.")
    chosen = sorted(set(responsible))
    errors: dict[str, str] = {}
    if confirmed and (not chosen or not set(chosen) <= set(pair)):
        errors["responsible"] = "Say which of the two submissions copied."
    if not confirmed:
        chosen = []
    citation: Citation | None = None
    try:
        if rule_code:
            citation = await _cite(course.id, rule_code, reason)
            reason = citation.reason
        else:
            reason = _reason(reason)
    except InvalidInput as exc:
        errors.update(exc.fields)
    if errors:
        raise fields_error(errors)
    new_state = SimilarityState.CONFIRMED if confirmed else SimilarityState.CLEARED
    async with in_transaction():
        entry = await log.append(
            course_id=course.id,
            actor_id=acting_user.id,
            actor_role=actor_role,
            act=Act.PLAGIARISM_DECISION.value,
            target_type=TARGET_SIMILARITY,
            target_id=flag.id,
            rule_code=citation.rule.code if citation else "",
            reason=reason,
            old_value=SimilarityState.OPEN.value,
            new_value=new_state.value,
        )
        updated = await SimilarityFlag.filter(id=flag.id, state=SimilarityState.OPEN).update(
            state=new_state,
            responsible=chosen,
            decided_at=entry.created_at,
            decided_by_id=acting_user.id,
            decision_seq=entry.seq,
        )
        if not updated:
            raise Conflict("Someone else decided this pair just now; reload and look again.")
        for submission_id in chosen:
            await _notify(
                user_id=authors[submission_id],
                course=course,
                entry=entry,
                summary=f"The course staff found that your submission for “{assignment.title}” "
                "copies another learner's work.",
                citation=citation,
            )
    flag.state, flag.responsible, flag.decision_seq = new_state, chosen, entry.seq
    await jobs.wake()
    return entry
