"""Every state change of peer review (DESIGN.md invariant 1).

Learners submit, calibrate, review and answer reviews here; the outbox recomputes grades and
looks for near-duplicates through the last two actions. Two neighbours hold the rest and are
re-exported, so this module is the one place to call: peer_review/authoring.py (instructors
set up assignments, rubrics and calibration samples) and peer_review/interventions.py (staff
acts on reviews, grades and plagiarism flags, each one a moderation act on the public log).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import cast

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core import jobs, runtime
from core.errors import Conflict, InvalidInput, PermissionDenied
from core.models import Course, User
from forum.markup import MarkupError, render_markdown, validate_body
from peer_review import allocation, attachments, calibrated, similarity
from peer_review._common import (
    assignment_of,
    check_learner,
    course_of,
    fields_error,
    link,
)
from peer_review._common import now as _now
from peer_review.authoring import (
    AssignmentInput,
    add_calibration_sample,
    create_assignment,
    delete_calibration_sample,
    publish_assignment,
    set_rubric,
    update_assignment,
)
from peer_review.content import check_text, visible_text
from peer_review.grading import Grader
from peer_review.interventions import (
    decide_similarity,
    grade_submission,
    override_grade,
    uphold_review,
    void_review,
)
from peer_review.models import (
    Assignment,
    Attachment,
    CalibrationAnswer,
    CalibrationSample,
    FlagState,
    Grade,
    GradeOverride,
    GradeSource,
    LatePolicy,
    LearnerRecord,
    Participation,
    Review,
    ReviewStatus,
    SimilarityFlag,
    StaffGrade,
    Submission,
)
from peer_review.queries import calibration_needed, current_submission, load_rubric
from peer_review.rubric import (
    COMMENT_MAX,
    RawAnswer,
    agreement,
    agreement_rate,
    answers_to_json,
    check_answers,
)

__all__ = [
    "AssignmentInput",
    "add_calibration_sample",
    "check_similarity",
    "create_assignment",
    "decide_similarity",
    "delete_calibration_sample",
    "flag_review",
    "grade_calibration_sample",
    "grade_submission",
    "override_grade",
    "publish_assignment",
    "rate_review",
    "recompute_grade",
    "review_next",
    "save_review_draft",
    "set_record_public",
    "set_rubric",
    "submit",
    "submit_review",
    "update_assignment",
    "uphold_review",
    "void_review",
]

FLAG_REASON_MIN, FLAG_REASON_MAX = 10, 2000


# --- submissions ----------------------------------------------------------------------------


async def submit(
    assignment: Assignment,
    *,
    body: str,
    uploads: Sequence[attachments.Upload] = (),
    acting_user: User,
) -> Submission:
    """Hand in work (a new attempt replaces the last one while the rules allow it)."""
    await check_learner(assignment, acting_user)
    now = _now()
    if now < assignment.submission_opens_at:
        raise Conflict(f"Submissions open on {assignment.submission_opens_at:%Y-%m-%d %H:%M} UTC.")
    if now > assignment.late_until:
        raise Conflict(
            f"The deadline was {assignment.late_until:%Y-%m-%d %H:%M} UTC; submissions are closed."
        )
    previous = await current_submission(assignment.id, acting_user.id)
    attempts = await Submission.filter(
        assignment_id=assignment.id, author_id=acting_user.id
    ).count()
    participation = await Participation.get_or_none(
        assignment_id=assignment.id, learner_id=acting_user.id
    )
    if participation is not None and participation.locked_at is not None:
        raise Conflict(
            "You have opened a classmate's submission, so yours is final and can no longer be "
            "replaced."
        )
    if previous is not None and await Review.filter(submission_id=previous.id).exists():
        raise Conflict(
            "Classmates have started reviewing your submission; it can no longer be replaced."
        )
    if attempts >= assignment.attempt_limit:
        raise Conflict(
            f"You have used all {assignment.attempt_limit} attempts for this assignment."
        )
    errors: dict[str, str] = {}
    markdown = ""
    try:
        markdown = validate_body(body or "")
    except MarkupError as exc:
        errors["body"] = str(exc).replace("A post", "A submission")
    verdict = check_text(visible_text(markdown), min_words=assignment.min_words)
    if "body" not in errors and verdict.problem is not None:
        errors["body"] = verdict.problem
    files, file_errors = attachments.check_uploads(uploads)
    errors.update(file_errors)
    if errors:
        raise fields_error(errors)
    data_dir = runtime.settings().data_dir
    stored = [attachments.store(data_dir, f.data) for f in files]
    try:
        async with in_transaction():
            if previous is not None:
                done = await Submission.filter(id=previous.id, is_current=True).update(
                    is_current=False, superseded_at=now
                )
                if not done:
                    raise IntegrityError("the previous attempt was replaced meanwhile")
            submission = await Submission.create(
                assignment=assignment,
                author=acting_user,
                attempt=attempts + 1,
                body_markdown=markdown,
                body_html=render_markdown(markdown),
                word_count=verdict.words,
                submitted_at=now,
                is_late=now > assignment.submission_due_at,
            )
            for file, saved in zip(files, stored, strict=True):
                await Attachment.create(
                    submission=submission,
                    filename=file.filename,
                    kind=file.kind,
                    size=saved.size,
                    sha256=saved.sha256,
                    storage_name=saved.storage_name,
                )
            await jobs.enqueue("peer_review.check_similarity", {"submission_id": submission.id})
    except BaseException as exc:
        for saved in stored:
            attachments.remove(data_dir, saved.storage_name)
        if isinstance(exc, IntegrityError):
            raise Conflict(
                "You submitted twice at the same moment; reload to see which one counted."
            ) from None
        raise
    await jobs.wake()
    return submission


# --- calibration ----------------------------------------------------------------------------


async def grade_calibration_sample(
    sample: CalibrationSample, *, answers: Mapping[int, RawAnswer], acting_user: User
) -> CalibrationAnswer:
    """The learner grades a sample, then sees the reference; agreement is kept as evidence."""
    assignment = await Assignment.get(id=sample.assignment_id)  # type: ignore[attr-defined]
    await check_learner(assignment, acting_user)
    if await CalibrationAnswer.filter(sample_id=sample.id, learner_id=acting_user.id).exists():
        raise Conflict("You have already graded this sample; its reference is shown below.")
    rubric = await load_rubric(assignment.id)
    checked = check_answers(
        rubric,
        answers,
        comment_min_chars=assignment.comment_min_chars,
        need_overall=False,
        need_comments=False,
    )
    if checked.errors:
        raise fields_error(checked.errors, "Choose one level for every criterion.")
    found = agreement(rubric, checked.levels(), sample.reference_levels())
    try:
        return await CalibrationAnswer.create(
            sample=sample,
            assignment_id=assignment.id,
            learner=acting_user,
            levels={str(k): v for k, v in checked.levels().items()},
            distances={str(a.criterion_id): a.distance for a in found},
            agreement_rate=agreement_rate(found),
            created_at=_now(),
        )
    except IntegrityError:
        raise Conflict(
            "You have already graded this sample; its reference is shown below."
        ) from None


# --- allocation -----------------------------------------------------------------------------


async def _allocation_state(
    assignment: Assignment, now: datetime
) -> tuple[list[allocation.Candidate], dict[int, set[int]], dict[int, int]]:
    # A deleted account's work is emptied (core/deletion.py): nobody is handed it to review.
    submissions = await Submission.filter(
        assignment_id=assignment.id, is_current=True, author__deleted_at__isnull=True
    ).values("id", "author_id", "is_late")
    graded = set(
        cast(
            list[int],
            await StaffGrade.filter(submission__assignment_id=assignment.id).values_list(
                "submission_id", flat=True
            ),
        )
    )
    rows = await Review.filter(assignment_id=assignment.id).values(
        "submission_id", "reviewer_id", "status", "lease_expires_at"
    )
    completed: dict[int, int] = {}
    leased: dict[int, int] = {}
    given: dict[int, int] = {}
    taken: dict[int, set[int]] = {}
    for row in rows:
        sid, rid, status = row["submission_id"], row["reviewer_id"], ReviewStatus(row["status"])
        if status == ReviewStatus.SUBMITTED:
            completed[sid] = completed.get(sid, 0) + 1
            given[rid] = given.get(rid, 0) + 1
        elif status == ReviewStatus.LEASED and row["lease_expires_at"] > now:
            leased[sid] = leased.get(sid, 0) + 1
            given[rid] = given.get(rid, 0) + 1
        elif status == ReviewStatus.LEASED:
            continue  # an expired lease reserves nothing; its reviewer may get it again
        taken.setdefault(rid, set()).add(sid)
    candidates = [
        allocation.Candidate(
            submission_id=s["id"],
            author_id=s["author_id"],
            completed=completed.get(s["id"], 0),
            leased=leased.get(s["id"], 0),
            is_late=s["is_late"],
            staff_graded=s["id"] in graded,
        )
        for s in submissions
    ]
    owed = {
        s["author_id"]: max(0, assignment.reviews_required - given.get(s["author_id"], 0))
        for s in submissions
    }
    return candidates, taken, owed


async def review_next(
    assignment: Assignment, *, acting_user: User, rng: random.Random | None = None
) -> Review | None:
    """Hand the learner a peer's submission to review (or the one they hold); None when
    nothing can go to them right now. From here on their own submission is final."""
    await check_learner(assignment, acting_user)
    now = _now()
    if not assignment.takes_reviews_at(now):
        if now < assignment.review_opens_at:
            raise Conflict(f"Reviewing opens on {assignment.review_opens_at:%Y-%m-%d %H:%M} UTC.")
        raise Conflict("The review period is over.")
    if await current_submission(assignment.id, acting_user.id) is None:
        raise Conflict("Submit your own work before reviewing your classmates'.")
    needed = await calibration_needed(assignment)
    done = await CalibrationAnswer.filter(
        assignment_id=assignment.id, learner_id=acting_user.id
    ).count()
    if done < needed:
        message = f"Grade the calibration samples first ({done} of {needed} done)."
        raise Conflict(message, fields={"calibration": message})
    try:
        participation, _ = await Participation.get_or_create(
            assignment_id=assignment.id, learner_id=acting_user.id
        )
    except IntegrityError:
        participation = await Participation.get(
            assignment_id=assignment.id, learner_id=acting_user.id
        )
    async with in_transaction():
        # One request per learner at a time: the row lock serializes them (PostgreSQL).
        participation = await Participation.select_for_update().get(id=participation.id)
        held = await Review.filter(
            assignment_id=assignment.id,
            reviewer_id=acting_user.id,
            status=ReviewStatus.LEASED,
            lease_expires_at__gt=now,
        ).first()
        if held is not None:
            return held
        candidates, taken, owed = await _allocation_state(assignment, now)
        choice = allocation.choose(
            candidates,
            reviewer_id=acting_user.id,
            wanted=assignment.reviews_wanted,
            taken=taken,
            owed=owed,
            spot_check_rate=assignment.spot_check_rate,
            rng=rng,
        )
        if choice is None:
            return None
        expires = now + assignment.lease
        review = await Review.get_or_none(
            submission_id=choice.submission_id, reviewer_id=acting_user.id
        )
        if review is None:
            review = await Review.create(
                assignment=assignment,
                submission_id=choice.submission_id,
                reviewer=acting_user,
                is_spot_check=choice.spot_check,
                leased_at=now,
                lease_expires_at=expires,
            )
        else:  # their own expired lease, with its draft
            await Review.filter(id=review.id).update(leased_at=now, lease_expires_at=expires)
            review.leased_at, review.lease_expires_at = now, expires
        if participation.locked_at is None:
            await Participation.filter(id=participation.id).update(locked_at=now)
    return review


# --- reviews --------------------------------------------------------------------------------


async def save_review_draft(
    review: Review, *, answers: Mapping[int, RawAnswer], overall: str, acting_user: User
) -> Review:
    """Keep what the reviewer has entered so far, complete or not."""
    if not review.can_be_edited_by(acting_user):
        raise PermissionDenied("Only the reviewer can change this review before it is submitted.")
    too_long = {
        f"comment-{cid}": f"Keep the comment under {COMMENT_MAX} characters."
        for cid, a in answers.items()
        if len(a.comment) > COMMENT_MAX
    }
    if len(overall or "") > COMMENT_MAX:
        too_long["overall"] = f"Keep the overall comment under {COMMENT_MAX} characters."
    if too_long:
        raise fields_error(too_long)
    draft = answers_to_json(answers, overall or "")
    updated = await Review.filter(id=review.id, status=ReviewStatus.LEASED).update(draft=draft)
    if not updated:
        raise Conflict("This review was already submitted.")
    review.draft = draft
    return review


async def submit_review(
    review: Review, *, answers: Mapping[int, RawAnswer], overall: str, acting_user: User
) -> Review:
    """Submit a review; the server enforces the rubric and names each missing piece."""
    if not review.is_by(acting_user):
        raise PermissionDenied("Only the reviewer can submit this review.")
    if review.status != ReviewStatus.LEASED:
        raise Conflict("This review was already submitted.")
    assignment = await Assignment.get(id=review.assignment_id)  # type: ignore[attr-defined]
    course = await check_learner(assignment, acting_user)
    now = _now()
    if now > assignment.review_due_at:
        raise Conflict("The review period is over; this review can no longer be submitted.")
    rubric = await load_rubric(assignment.id)
    checked = check_answers(
        rubric, answers, overall, comment_min_chars=assignment.comment_min_chars
    )
    if checked.errors:
        raise fields_error(checked.errors, "This review is not complete yet.")
    staff_distances = None
    if review.is_spot_check:
        submission_id: int = review.submission_id  # type: ignore[attr-defined]
        known = await StaffGrade.filter(submission_id=submission_id).order_by("-id").first()
        if known is not None:
            found = agreement(rubric, checked.levels(), known.levels())
            staff_distances = {str(a.criterion_id): a.distance for a in found}
    stored = {
        str(cid): {"level": a.level_id, "points": a.points, "comment": a.comment}
        for cid, a in checked.answers.items()
    }
    submission = await Submission.get(id=review.submission_id)  # type: ignore[attr-defined]
    async with in_transaction():
        updated = await Review.filter(id=review.id, status=ReviewStatus.LEASED).update(
            status=ReviewStatus.SUBMITTED,
            answers=stored,
            overall_comment=checked.overall,
            percent=rubric.percent(checked.points()),
            submitted_at=now,
            draft={},
            staff_distances=staff_distances,
        )
        if not updated:
            raise Conflict("This review was already submitted.")
        await jobs.enqueue("peer_review.recompute_grade", {"submission_id": submission.id})
        await jobs.enqueue(
            "core.notify",
            {
                "user_id": submission.author_id,  # type: ignore[attr-defined]
                "kind": "peer_review",
                "message": f"A classmate reviewed your submission for “{assignment.title}”.",
                "link": link(course, assignment),
            },
        )
    await jobs.wake()
    return await Review.get(id=review.id)


async def _review_for_author(review: Review, user: User) -> tuple[Submission, Assignment]:
    submission = await Submission.get(id=review.submission_id)  # type: ignore[attr-defined]
    if not submission.is_by(user):
        raise PermissionDenied("Only the author of the reviewed work can do this.")
    if review.status != ReviewStatus.SUBMITTED:
        raise Conflict("Only a submitted review can be rated or flagged.")
    return submission, await assignment_of(submission)


async def rate_review(review: Review, *, helpfulness: int, acting_user: User) -> Review:
    """The author says how helpful a review was, 1 (not at all) to 5 (very)."""
    await _review_for_author(review, acting_user)
    if (
        isinstance(helpfulness, bool)
        or not isinstance(helpfulness, int)
        or not 1 <= helpfulness <= 5
    ):
        message = "Rate helpfulness from 1 to 5."
        raise InvalidInput(message, fields={"helpfulness": message})
    await Review.filter(id=review.id).update(helpfulness=helpfulness)
    review.helpfulness = helpfulness
    return review


async def flag_review(review: Review, *, reason: str, acting_user: User) -> Review:
    """The author asks staff to look at a review they find unjustified."""
    await _review_for_author(review, acting_user)
    if review.flag_state != FlagState.NONE:
        raise Conflict("You have already flagged this review.")
    reason = " ".join((reason or "").split())
    if not FLAG_REASON_MIN <= len(reason) <= FLAG_REASON_MAX:
        message = (
            f"Say in {FLAG_REASON_MIN}-{FLAG_REASON_MAX} characters why the review is unjustified."
        )
        raise InvalidInput(message, fields={"reason": message})
    now = _now()
    updated = await Review.filter(
        id=review.id, flag_state=FlagState.NONE, status=ReviewStatus.SUBMITTED
    ).update(flag_state=FlagState.OPEN, flag_reason=reason, flagged_at=now)
    if not updated:
        raise Conflict("You have already flagged this review.")
    review.flag_state, review.flag_reason, review.flagged_at = FlagState.OPEN, reason, now
    return review


# --- the course record ----------------------------------------------------------------------


async def set_record_public(course: Course, *, public: bool, acting_user: User) -> LearnerRecord:
    """A learner opts their course record (completed assignments and grades) in or out of
    public view."""
    if await course.role_of(acting_user) is None:
        raise PermissionDenied("Join the course first.")
    record, _ = await LearnerRecord.get_or_create(course_id=course.id, learner_id=acting_user.id)
    if record.is_public != public:
        await LearnerRecord.filter(id=record.id).update(is_public=public)
        record.is_public = public
    return record


# --- outbox work ----------------------------------------------------------------------------


async def recompute_grade(
    submission: Submission, *, acting_user: None, grader: Grader | None = None
) -> Grade | None:
    """Recompute a submission's grade from its reviews, staff grades and overrides.

    Idempotent: run again on the same data it changes nothing and notifies nobody. The
    author is told (through the outbox, in the same transaction) when the final grade moves.
    """
    del acting_user  # the system
    assignment = await assignment_of(submission)
    course = await course_of(assignment)
    rubric = await load_rubric(assignment.id)
    # The calibrated model, anchored on the assignment's staff grades (peer_review/calibrated.py).
    grader = grader or await calibrated.grader_for(assignment, rubric)
    scores = await calibrated.peer_scores(assignment)
    peer = grader.grade(rubric, scores, min_reviews=assignment.reviews_wanted).get(submission.id)
    count = sum(1 for s in scores if s.submission_id == submission.id)
    staff = await StaffGrade.filter(submission_id=submission.id).order_by("-id").first()
    override = await GradeOverride.filter(submission_id=submission.id).order_by("-id").first()
    penalty = (
        assignment.late_penalty_percent
        if submission.is_late and assignment.late_policy == LatePolicy.PENALTY
        else 0
    )
    source: GradeSource | None = None
    base: float | None = None
    if staff is not None:
        source, base = GradeSource.STAFF, staff.percent
    elif peer is not None:
        source, base = GradeSource.PEER, peer.percent
    final = round(base * (100 - penalty) / 100, 2) if base is not None else None
    if override is not None:
        source, final = GradeSource.OVERRIDE, override.percent
    values = {
        "assignment_id": assignment.id,
        "author_id": submission.author_id,  # type: ignore[attr-defined]
        "peer_percent": round(peer.percent, 2) if peer else None,
        "peer_low_percent": _rounded(peer.low_percent) if peer else None,
        "peer_high_percent": _rounded(peer.high_percent) if peer else None,
        "staff_percent": staff.percent if staff else None,
        "override_percent": override.percent if override else None,
        "late_penalty_percent": penalty if source != GradeSource.OVERRIDE else 0,
        "final_percent": final,
        "source": source,
        "per_criterion": {str(k): v for k, v in (peer.per_criterion if peer else {}).items()},
        "review_count": count,
        "grader": grader.name,
    }
    async with in_transaction():
        grade = await Grade.select_for_update().get_or_none(submission_id=submission.id)
        if grade is not None and all(getattr(grade, k) == v for k, v in values.items()):
            return grade
        moved = final is not None and (grade is None or grade.final_percent != final)
        if grade is None:
            grade = await Grade.create(submission=submission, computed_at=_now(), **values)
        else:
            await Grade.filter(id=grade.id).update(computed_at=_now(), **values)
            grade = await Grade.get(id=grade.id)
        if moved:
            await jobs.enqueue(
                "core.notify",
                {
                    "user_id": submission.author_id,  # type: ignore[attr-defined]
                    "kind": "peer_review",
                    "message": f"Your grade for “{assignment.title}” is {final:g} %.",
                    "link": link(course, assignment),
                },
            )
    await jobs.wake()
    return grade


def _rounded(percent: float | None) -> float | None:
    return None if percent is None else round(percent, 2)


async def check_similarity(submission: Submission, *, acting_user: None) -> list[SimilarityFlag]:
    """Compare a submission with the assignment's other current submissions and flag
    near-duplicates for staff. Idempotent: a pair is flagged once."""
    del acting_user  # the system
    assignment = await assignment_of(submission)
    ignore = similarity.shingles(visible_text(assignment.instructions_markdown))
    own = similarity.shingles(visible_text(submission.body_markdown)) - ignore
    signature = similarity.signature(own)
    if submission.signature != signature:
        await Submission.filter(id=submission.id).update(signature=signature)
    others = await Submission.filter(
        assignment_id=assignment.id, is_current=True, id__not=submission.id
    ).exclude(author_id=submission.author_id)  # type: ignore[attr-defined]
    flags: list[SimilarityFlag] = []
    for other in others:
        if other.signature is None:
            continue  # its own check will compare it with this one
        if similarity.estimate(signature, other.signature) < similarity.THRESHOLD * 0.7:
            continue
        exact = similarity.jaccard(
            own, similarity.shingles(visible_text(other.body_markdown)) - ignore
        )
        if exact < similarity.THRESHOLD:
            continue
        first, second = sorted((submission.id, other.id))
        flag, _ = await SimilarityFlag.get_or_create(
            submission_a_id=first,
            submission_b_id=second,
            defaults={
                "assignment_id": assignment.id,
                "similarity": round(exact, 4),
                "created_at": _now(),
            },
        )
        flags.append(flag)
    return flags
