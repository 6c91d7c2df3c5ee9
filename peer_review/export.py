"""The peer-review part of a person's data export: their work, their reviews, what was computed.

Peer review is blind both ways, so the people on the other side of a review get labels that are
local to one submission ("Reviewer 2") or one assignment ("Author 1"), never the export's
"Person N" pseudonyms, which other sections use and which could otherwise tie a reviewer to a
name seen elsewhere. Staff appear as the export's pseudonyms.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from tortoise.expressions import Q

from core.export import ExportContext
from core.models import Course, User
from moderation import log
from moderation.models import Act, LogEntry
from peer_review import calibrated
from peer_review.attachments import AttachmentKind
from peer_review.interventions import TARGET_REVIEW, TARGET_SIMILARITY, TARGET_SUBMISSION
from peer_review.models import (
    Assignment,
    Attachment,
    CalibrationAnswer,
    CalibrationSample,
    FlagState,
    Grade,
    GradeOverride,
    GradeSource,
    LearnerRecord,
    Participation,
    Review,
    ReviewStatus,
    SimilarityFlag,
    SimilarityState,
    StaffGrade,
    Submission,
)
from peer_review.queries import load_rubric
from peer_review.rubric import Rubric

PEER_ACTS = (
    Act.STAFF_GRADE.value,
    Act.OVERRIDE_GRADE.value,
    Act.VOID_REVIEW.value,
    Act.UPHOLD_REVIEW.value,
    Act.PLAGIARISM_DECISION.value,
)


def _time(moment: datetime | None) -> str | None:
    return log.timestamp(moment) if moment is not None else None


class _Context:
    """Assignments, their courses and rubrics, loaded once for the whole section."""

    def __init__(self) -> None:
        self.assignments: dict[int, Assignment] = {}
        self.courses: dict[int, str] = {}
        self.rubrics: dict[int, Rubric] = {}

    async def load(self, assignment_ids: Iterable[int]) -> None:
        wanted = set(assignment_ids) - set(self.assignments)
        if not wanted:
            return
        for assignment in await Assignment.filter(id__in=wanted):
            self.assignments[assignment.id] = assignment
            self.rubrics[assignment.id] = await load_rubric(assignment.id)
        course_ids = {a.course_id for a in self.assignments.values()}  # type: ignore[attr-defined]
        self.courses.update(dict(await Course.filter(id__in=course_ids).values_list("id", "title")))

    def ref(self, assignment_id: int) -> dict[str, Any]:
        assignment = self.assignments.get(assignment_id)
        if assignment is None:
            return {"id": assignment_id, "title": "", "course": None}
        course_id: int = assignment.course_id  # type: ignore[attr-defined]
        return {
            "id": assignment.id,
            "title": assignment.title,
            "course": {"id": course_id, "title": self.courses.get(course_id, "")},
        }

    def scores(self, assignment_id: int, answers: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """Stored answers ({criterion id: {level, points, comment}}) in rubric order."""
        rubric = self.rubrics.get(assignment_id)
        criteria = {c.id: c for c in rubric.criteria} if rubric else {}
        order = {c.id: i for i, c in enumerate(rubric.criteria)} if rubric else {}
        out = []
        for key, answer in sorted(
            (answers or {}).items(), key=lambda item: (order.get(int(item[0]), 1 << 30), item[0])
        ):
            criterion = criteria.get(int(key))
            level = criterion.level(int(answer.get("level", -1))) if criterion else None
            out.append(
                {
                    "criterion": criterion.title if criterion else f"criterion {key}",
                    "level": level.label if level else None,
                    "points": answer.get("points", level.points if level else None),
                    "comment": answer.get("comment", ""),
                }
            )
        return out

    def draft(self, assignment_id: int, draft: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if not draft:
            return None
        rubric = self.rubrics.get(assignment_id)
        criteria = {c.id: c for c in rubric.criteria} if rubric else {}
        answers = []
        for key, raw in (draft.get("answers") or {}).items():
            criterion = criteria.get(int(key))
            levels = [criterion.level(int(x)) if criterion else None for x in raw.get("levels", [])]
            answers.append(
                {
                    "criterion": criterion.title if criterion else f"criterion {key}",
                    "levels": [lv.label if lv else None for lv in levels],
                    "comment": raw.get("comment", ""),
                }
            )
        return {"answers": answers, "overall_comment": str(draft.get("overall", ""))}

    def distances(self, assignment_id: int, values: Mapping[str, Any] | None) -> dict[str, int]:
        if not values:
            return {}
        rubric = self.rubrics.get(assignment_id)
        criteria = {c.id: c.title for c in rubric.criteria} if rubric else {}
        return {criteria.get(int(k), f"criterion {k}"): int(v) for k, v in values.items()}


def _flag(state: FlagState | str, flagged_at: datetime | None, seq: int | None) -> dict[str, Any]:
    return {
        "state": FlagState(state).value,
        "flagged_at": _time(flagged_at),
        "decision_log_index": seq,
    }


async def _submissions(
    user: User, submissions: list[Submission], ctx: _Context, export: ExportContext
) -> list[dict[str, Any]]:
    ids = [s.id for s in submissions]
    files: dict[int, list[Attachment]] = defaultdict(list)
    for attachment in await Attachment.filter(submission_id__in=ids).order_by("id"):
        files[attachment.submission_id].append(attachment)  # type: ignore[attr-defined]
    findings: dict[int, list[SimilarityFlag]] = defaultdict(list)
    for flag in await SimilarityFlag.filter(
        Q(submission_a_id__in=ids) | Q(submission_b_id__in=ids)
    ).order_by("created_at", "id"):
        for sid in (flag.submission_a_id, flag.submission_b_id):  # type: ignore[attr-defined]
            if sid in ids:
                findings[sid].append(flag)
    out = []
    for submission in submissions:
        assignment_id: int = submission.assignment_id  # type: ignore[attr-defined]
        out.append(
            {
                "id": submission.id,
                "assignment": ctx.ref(assignment_id),
                "attempt": submission.attempt,
                "is_current": submission.is_current,
                "submitted_at": log.timestamp(submission.submitted_at),
                "is_late": submission.is_late,
                "superseded_at": _time(submission.superseded_at),
                "word_count": submission.word_count,
                "text_markdown": submission.body_markdown,
                "attachments": [
                    {
                        "filename": a.filename,
                        "kind": AttachmentKind(a.kind).value,
                        "size_bytes": a.size,
                        "sha256": a.sha256,
                        "uploaded_at": log.timestamp(a.created_at),
                    }
                    for a in files[submission.id]
                ],
                "near_duplicate_findings": [
                    {
                        "similarity": flag.similarity,
                        "found_at": log.timestamp(flag.created_at),
                        "compared_with": "another learner's submission to the same assignment",
                        "state": SimilarityState(flag.state).value,
                        "decided_at": _time(flag.decided_at),
                        "decided_by": export.pseudonym(flag.decided_by_id)
                        if flag.decided_by_id is not None
                        else None,
                        "you_were_found_to_have_copied": submission.id in (flag.responsible or []),
                        "decision_log_index": flag.decision_seq,
                    }
                    for flag in findings[submission.id]
                ],
                "near_duplicate_signature": list(submission.signature or []),
            }
        )
    return out


async def _reviews_given(reviews: list[Review], ctx: _Context) -> list[dict[str, Any]]:
    # "Author n" is numbered per assignment, in the order the work was handed out.
    authors: dict[int, dict[int, str]] = defaultdict(dict)
    submission_ids = [r.submission_id for r in reviews]  # type: ignore[attr-defined]
    rows = cast(
        list[tuple[int, int]],
        await Submission.filter(id__in=submission_ids).values_list("id", "author_id"),
    )
    author_of = dict(rows)
    out = []
    for review in reviews:
        assignment_id: int = review.assignment_id  # type: ignore[attr-defined]
        author_id = author_of.get(review.submission_id, 0)  # type: ignore[attr-defined]
        labels = authors[assignment_id]
        if author_id not in labels:
            labels[author_id] = f"Author {len(labels) + 1}"
        status = ReviewStatus(review.status)
        out.append(
            {
                "id": review.id,
                "assignment": ctx.ref(assignment_id),
                "of": labels[author_id],
                "status": status.value,
                "handed_out_at": log.timestamp(review.leased_at),
                "lease_expires_at": log.timestamp(review.lease_expires_at),
                "submitted_at": _time(review.submitted_at),
                "scores": ctx.scores(assignment_id, review.answers),
                "overall_comment": review.overall_comment,
                "percent": review.percent,
                "draft": ctx.draft(assignment_id, review.draft)
                if status == ReviewStatus.LEASED
                else None,
                "was_spot_check": review.is_spot_check,
                "levels_apart_from_staff_grade": ctx.distances(
                    assignment_id, review.staff_distances
                ),
                "helpfulness_rated_by_author": review.helpfulness,
                "flag_by_author": _flag(review.flag_state, review.flagged_at, review.decision_seq)
                if review.flag_state != FlagState.NONE
                else None,
                "voided_at": _time(review.voided_at),
            }
        )
    return out


async def _reviews_received(
    submissions: list[Submission], ctx: _Context
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    by_submission: dict[int, list[Review]] = defaultdict(list)
    for review in await Review.filter(
        submission_id__in=[s.id for s in submissions],
        status__in=[ReviewStatus.SUBMITTED, ReviewStatus.VOIDED],
    ).order_by("submitted_at", "id"):
        by_submission[review.submission_id].append(review)  # type: ignore[attr-defined]
    received, flags = [], []
    for submission in submissions:
        assignment_id: int = submission.assignment_id  # type: ignore[attr-defined]
        # Numbered per submission, as on the results page.
        for number, review in enumerate(by_submission[submission.id], start=1):
            label = f"Reviewer {number}"
            received.append(
                {
                    "id": review.id,
                    "assignment": ctx.ref(assignment_id),
                    "submission_id": submission.id,
                    "attempt": submission.attempt,
                    "reviewer": label,
                    "status": ReviewStatus(review.status).value,
                    "submitted_at": _time(review.submitted_at),
                    "scores": ctx.scores(assignment_id, review.answers),
                    "overall_comment": review.overall_comment,
                    "percent": review.percent,
                    "your_helpfulness_rating": review.helpfulness,
                    "voided_at": _time(review.voided_at),
                }
            )
            if review.flag_state != FlagState.NONE:
                flags.append(
                    {
                        "review_id": review.id,
                        "assignment": ctx.ref(assignment_id),
                        "reviewer": label,
                        "reason": review.flag_reason,
                        **_flag(review.flag_state, review.flagged_at, review.decision_seq),
                    }
                )
    return received, flags


async def _calibration(user: User, ctx: _Context) -> list[dict[str, Any]]:
    answers = await CalibrationAnswer.filter(learner_id=user.id).order_by("created_at", "id")
    samples = {
        s.id: s
        for s in await CalibrationSample.filter(id__in=[a.sample_id for a in answers])  # type: ignore[attr-defined]
    }
    out = []
    for answer in answers:
        sample = samples.get(answer.sample_id)  # type: ignore[attr-defined]
        rubric = ctx.rubrics.get(answer.assignment_id)
        reference = sample.reference if sample else {}
        criteria = []
        for criterion in rubric.criteria if rubric else ():
            mine = criterion.level(int(answer.levels.get(str(criterion.id), -1)))
            ref = reference.get(str(criterion.id)) or {}
            theirs = criterion.level(int(ref.get("level", -1)))
            distance = answer.distances.get(str(criterion.id))
            criteria.append(
                {
                    "criterion": criterion.title,
                    "your_level": mine.label if mine else None,
                    "your_points": mine.points if mine else None,
                    "instructor_level": theirs.label if theirs else None,
                    "instructor_points": theirs.points if theirs else None,
                    "instructor_explanation": ref.get("explanation", ""),
                    "levels_apart": distance,
                }
            )
        out.append(
            {
                "assignment": ctx.ref(answer.assignment_id),
                "sample": sample.title if sample else None,
                "graded_at": log.timestamp(answer.created_at),
                "agreement_rate": answer.agreement_rate,
                "criteria": criteria,
            }
        )
    return out


async def _grades(user: User, submissions: list[Submission], ctx: _Context) -> list[dict[str, Any]]:
    attempts = {s.id: s.attempt for s in submissions}
    grades = await Grade.filter(author_id=user.id).order_by("assignment_id", "id")
    escalated: dict[int, tuple[str, ...]] = {}
    for assignment_id in {g.assignment_id for g in grades}:
        assignment = ctx.assignments.get(assignment_id)
        if assignment is None:
            continue
        for item in await calibrated.needs_staff_review(assignment):
            if item.author_id == user.id:
                escalated[item.submission_id] = item.reasons
    out = []
    for grade in grades:
        submission_id: int = grade.submission_id  # type: ignore[attr-defined]
        rubric = ctx.rubrics.get(grade.assignment_id)
        titles = {c.id: c.title for c in rubric.criteria} if rubric else {}
        out.append(
            {
                "assignment": ctx.ref(grade.assignment_id),
                "submission_id": submission_id,
                "attempt": attempts.get(submission_id),
                "final_percent": grade.final_percent,
                "source": GradeSource(grade.source).value if grade.source else None,
                "peer_percent": grade.peer_percent,
                "peer_interval_90_percent": (
                    [grade.peer_low_percent, grade.peer_high_percent]
                    if grade.peer_low_percent is not None
                    else None
                ),
                "staff_percent": grade.staff_percent,
                "override_percent": grade.override_percent,
                "late_penalty_percent": grade.late_penalty_percent,
                "median_points_per_criterion": {
                    titles.get(int(k), f"criterion {k}"): v
                    for k, v in (grade.per_criterion or {}).items()
                },
                "reviews_counted": grade.review_count,
                "grader": grade.grader,
                "computed_at": log.timestamp(grade.computed_at),
                "explanation": await calibrated.grade_explanation(grade),
                "sent_to_staff_for_a_look": list(escalated.get(submission_id, ())),
            }
        )
    return out


async def _reviewer_estimates(
    user: User, assignment_ids: Iterable[int], ctx: _Context
) -> list[dict[str, Any]]:
    out = []
    for assignment_id in sorted(set(assignment_ids)):
        assignment = ctx.assignments.get(assignment_id)
        rubric = ctx.rubrics.get(assignment_id)
        if assignment is None or rubric is None:
            continue
        grader = await calibrated.grader_for(assignment, rubric)
        fit = grader.fit(rubric, await calibrated.peer_scores(assignment))
        estimate = fit.reviewers.get(user.id)
        rates = cast(
            list[float],
            await CalibrationAnswer.filter(
                assignment_id=assignment_id, learner_id=user.id
            ).values_list("agreement_rate", flat=True),
        )
        description = calibrated.describe_reviewer(
            estimate,
            anchored=fit.fitted and (bool(fit.anchored) or bool(grader.calibration)),
            span=fit.max_score - fit.min_score,
            agreement=sum(rates) / len(rates) if rates else None,
            samples=len(rates),
        )
        out.append(
            {
                "assignment": ctx.ref(assignment_id),
                "model": "calibrated" if fit.fitted else "median (too few reviews to fit)",
                "bias_points": float(estimate.bias) if estimate else None,
                "bias_sd_points": float(estimate.bias_sd) if estimate else None,
                "precision": float(estimate.precision) if estimate else None,
                "reliability": float(estimate.reliability) if estimate else None,
                "reviews_counted": int(estimate.n_reviews) if estimate else 0,
                "calibration_samples_counted": int(estimate.n_calibration) if estimate else 0,
                "rubric_points_range": [fit.min_score, fit.max_score],
                "explanation": description,
            }
        )
    return out


async def _interventions(
    submissions: list[Submission],
    given: list[Review],
    ctx: _Context,
    export: ExportContext,
) -> list[dict[str, Any]]:
    submission_ids = [s.id for s in submissions]
    review_ids = [r.id for r in given] + cast(
        list[int],
        await Review.filter(submission_id__in=submission_ids).values_list("id", flat=True),
    )
    similar = cast(
        list[int],
        await SimilarityFlag.filter(
            Q(submission_a_id__in=submission_ids) | Q(submission_b_id__in=submission_ids)
        ).values_list("id", flat=True),
    )
    entries = await LogEntry.filter(
        Q(target_type=TARGET_SUBMISSION, target_id__in=submission_ids)
        | Q(target_type=TARGET_REVIEW, target_id__in=review_ids)
        | Q(target_type=TARGET_SIMILARITY, target_id__in=similar),
        act__in=PEER_ACTS,
    ).order_by("seq")
    staff_grades = {
        g.entry_seq: g for g in await StaffGrade.filter(submission_id__in=submission_ids)
    }
    overrides = {
        o.entry_seq: o for o in await GradeOverride.filter(submission_id__in=submission_ids)
    }
    given_ids = {r.id for r in given}
    assignment_of = {s.id: s.assignment_id for s in submissions}  # type: ignore[attr-defined]
    out = []
    for entry in entries:
        item: dict[str, Any] = {
            "act": entry.act,
            "at": log.timestamp(entry.created_at),
            "by": export.pseudonym(entry.actor_id),
            "actor_role": entry.actor_role,
            "reason": entry.reason,
            "rule_code": entry.rule_code,
            "log_index": entry.seq,
        }
        if entry.target_type == TARGET_SUBMISSION:
            item["on"] = "your submission"
            item["assignment"] = ctx.ref(assignment_of[entry.target_id])
            if entry.seq in staff_grades:
                grade = staff_grades[entry.seq]
                item["percent"] = grade.percent
                item["scores"] = ctx.scores(assignment_of[entry.target_id], grade.answers)
                item["comment"] = grade.comment
            if entry.seq in overrides:
                item["percent"] = overrides[entry.seq].percent
        elif entry.target_type == TARGET_REVIEW:
            item["on"] = (
                "your review of a classmate's submission"
                if entry.target_id in given_ids
                else "a classmate's review of your submission"
            )
            item["review_id"] = entry.target_id
        else:
            item["on"] = "a near-duplicate finding about your submission"
            item["outcome"] = entry.new_value
        out.append(item)
    return out


async def _as_staff(user: User, ctx: _Context, export: ExportContext) -> dict[str, Any]:
    grades = await StaffGrade.filter(grader_id=user.id).order_by("id")
    overrides = await GradeOverride.filter(actor_id=user.id).order_by("id")
    submissions = {
        row["id"]: row
        for row in await Submission.filter(
            id__in=[g.submission_id for g in grades] + [o.submission_id for o in overrides]  # type: ignore[attr-defined]
        ).values("id", "author_id", "assignment_id")
    }
    await ctx.load(row["assignment_id"] for row in submissions.values())

    def about(submission_id: int) -> dict[str, Any]:
        row = submissions.get(submission_id, {})
        return {
            "assignment": ctx.ref(row["assignment_id"]) if row else None,
            "author": export.pseudonym(row["author_id"]) if row else None,
        }

    return {
        "staff_grades_given": [
            {
                **about(g.submission_id),  # type: ignore[attr-defined]
                "percent": g.percent,
                "comment": g.comment,
                "at": log.timestamp(g.created_at),
                "log_index": g.entry_seq,
            }
            for g in grades
        ],
        "grade_overrides_made": [
            {
                **about(o.submission_id),  # type: ignore[attr-defined]
                "percent": o.percent,
                "reason": o.reason,
                "at": log.timestamp(o.created_at),
                "log_index": o.entry_seq,
            }
            for o in overrides
        ],
    }


async def sections(ctx: ExportContext) -> dict[str, Any]:
    """The "peer_review" key of export.json."""
    user = ctx.user
    submissions = list(
        await Submission.filter(author_id=user.id).order_by("submitted_at", "attempt", "id")
    )
    given = list(await Review.filter(reviewer_id=user.id).order_by("leased_at", "id"))
    calibration_ids = cast(
        list[int],
        await CalibrationAnswer.filter(learner_id=user.id).values_list("assignment_id", flat=True),
    )
    participations = await Participation.filter(learner_id=user.id).order_by("id")
    context = _Context()
    await context.load(
        [s.assignment_id for s in submissions]  # type: ignore[attr-defined]
        + [r.assignment_id for r in given]  # type: ignore[attr-defined]
        + calibration_ids
        + [p.assignment_id for p in participations]  # type: ignore[attr-defined]
    )
    received, review_flags = await _reviews_received(submissions, context)
    reviewed_in = {
        r.assignment_id  # type: ignore[attr-defined]
        for r in given
        if r.status != ReviewStatus.LEASED
    } | set(calibration_ids)
    records = await LearnerRecord.filter(learner_id=user.id).values("course_id", "is_public")
    record_courses = dict(
        await Course.filter(id__in=[r["course_id"] for r in records]).values_list("id", "title")
    )
    return {
        "peer_review": {
            "about": (
                "Your submissions with every attempt, the reviews you gave and received, your "
                "calibration, and what was computed from them: grades with their 90% "
                "intervals, and how your grading compares with staff. Review is blind: "
                "“Reviewer n” is numbered per submission and “Author n” per assignment, so "
                "neither can be matched with a person elsewhere in this export."
            ),
            "submissions": await _submissions(user, submissions, context, ctx),
            "submission_locked": [
                {
                    "assignment": context.ref(p.assignment_id),  # type: ignore[attr-defined]
                    "locked_at": _time(p.locked_at),
                }
                for p in participations
            ],
            "reviews_given": await _reviews_given(given, context),
            "reviews_received": received,
            "review_flags": review_flags,
            "calibration": await _calibration(user, context),
            "derived": {
                "grades": await _grades(user, submissions, context),
                "reviewer_estimates": await _reviewer_estimates(user, reviewed_in, context),
            },
            "staff_interventions": await _interventions(submissions, given, context, ctx),
            "as_staff": await _as_staff(user, context, ctx),
            "course_records": [
                {
                    "course": {
                        "id": r["course_id"],
                        "title": record_courses.get(r["course_id"], ""),
                    },
                    "public": r["is_public"],
                }
                for r in records
            ],
        }
    }
