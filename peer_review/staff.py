"""Instructors' pages of peer review (mounted under the guarded /courses/{slug}/staff).

Setting up an assignment (text and policies, rubric, calibration samples, publishing), the
queue of what needs staff, and the interventions, each a moderation act with a reason.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.errors import ActionError, NotFound
from core.models import Course, User
from core.templating import render
from core.views import form_fields
from moderation.actions import ensure_default_rules
from peer_review import actions, calibrated
from peer_review.forms import (
    apply_editor_op,
    assignment_input,
    assignment_values,
    rubric_errors,
    rubric_rows,
    rubric_rows_from_form,
    rubric_specs,
)
from peer_review.models import (
    Assignment,
    Attachment,
    CalibrationSample,
    Grade,
    LatePolicy,
    Review,
    SimilarityFlag,
    StaffGrade,
    Submission,
)
from peer_review.queries import load_rubric, reviews_of, staff_queue
from peer_review.rubric import CommentRule, answers_from_form
from peer_review.views import _form_items, rubric_form_values


def _staff(request: Request) -> tuple[Course, User]:
    return request.state.course, request.scope["user"]


def _root(course: Course) -> str:
    return f"/courses/{course.slug}/staff/assignments"


async def _assignment(course: Course, request: Request) -> Assignment:
    assignment = await Assignment.get_or_none(
        id=request.path_params["assignment_id"], course_id=course.id
    )
    if assignment is None:
        raise NotFound("There is no such assignment in this course.")
    return assignment


DEFAULTS = {
    "reviews_required": "3",
    "reviews_wanted": "3",
    "calibration_required": "1",
    "attempt_limit": "2",
    "late_policy": "refuse",
    "late_grace_hours": "0",
    "late_penalty_percent": "0",
    "min_words": "100",
    "comment_min_chars": "20",
    "lease_hours": "8",
    "spot_check_rate": "0.1",
}


async def assignment_form(request: Request) -> Response:
    """New assignment (no id in the path) or edit an existing one."""
    course, user = _staff(request)
    assignment = (
        await _assignment(course, request) if "assignment_id" in request.path_params else None
    )
    values = assignment_values(assignment) if assignment else dict(DEFAULTS)
    errors: dict[str, str] = {}
    message, status = "", 200
    if request.method == "POST":
        values = await form_fields(request)
        try:
            data = assignment_input(values)
            if assignment is None:
                assignment = await actions.create_assignment(course, data, acting_user=user)
                return RedirectResponse(f"{_root(course)}/{assignment.id}/rubric", status_code=303)
            await actions.update_assignment(assignment, data, acting_user=user)
            message = "Saved."
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
    samples = (
        await CalibrationSample.filter(assignment_id=assignment.id).count() if assignment else 0
    )
    rubric = await load_rubric(assignment.id) if assignment else None
    return render(
        request,
        "peer_review/staff_assignment.html",
        {
            "course": course,
            "assignment": assignment,
            "values": values,
            "errors": errors,
            "message": message,
            "policies": list(LatePolicy),
            "sample_count": samples,
            "criterion_count": len(rubric.criteria) if rubric else 0,
        },
        status_code=status,
    )


async def publish(request: Request) -> Response:
    course, user = _staff(request)
    assignment = await _assignment(course, request)
    await form_fields(request)
    try:
        await actions.publish_assignment(assignment, acting_user=user)
    except ActionError as error:
        return render(
            request,
            "peer_review/staff_assignment.html",
            {
                "course": course,
                "assignment": assignment,
                "values": assignment_values(assignment),
                "errors": error.fields,
                "message": error.message,
                "policies": list(LatePolicy),
                "sample_count": await CalibrationSample.filter(assignment_id=assignment.id).count(),
                "criterion_count": len((await load_rubric(assignment.id)).criteria),
            },
            status_code=error.status_code,
        )
    return RedirectResponse(f"{_root(course)}/{assignment.id}", status_code=303)


async def rubric_editor(request: Request) -> Response:
    course, user = _staff(request)
    assignment = await _assignment(course, request)
    rows = rubric_rows(await load_rubric(assignment.id))
    errors: dict[str, str] = {}
    message, status = "", 200
    if request.method == "POST":
        values = await form_fields(request)
        rows = rubric_rows_from_form(values)
        op = values.get("op", "save")
        if not apply_editor_op(rows, op):
            try:
                await actions.set_rubric(assignment, rubric_specs(rows), acting_user=user)
                message = "Rubric saved."
                rows = rubric_rows(await load_rubric(assignment.id))
            except ActionError as error:
                errors, message = rubric_errors(error.fields), error.message
                status = error.status_code
    return render(
        request,
        "peer_review/staff_rubric.html",
        {
            "course": course,
            "assignment": assignment,
            "rows": rows,
            "errors": errors,
            "message": message,
            "rules": list(CommentRule),
        },
        block="editor",
        status_code=status,
    )


async def samples(request: Request) -> Response:
    course, user = _staff(request)
    assignment = await _assignment(course, request)
    rubric = await load_rubric(assignment.id)
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    message, status = "", 200
    if request.method == "POST":
        items = await _form_items(request)
        fields = dict(items)
        try:
            if fields.get("delete", "").isdigit():
                sample = await CalibrationSample.get_or_none(
                    id=int(fields["delete"]), assignment_id=assignment.id
                )
                if sample is None:
                    raise NotFound("There is no such sample.")
                await actions.delete_calibration_sample(sample, acting_user=user)
                message = "Sample deleted."
            else:
                answers, _ = answers_from_form(items)
                values = rubric_form_values(answers) | {
                    "title": fields.get("title", ""),
                    "body": fields.get("body", ""),
                }
                await actions.add_calibration_sample(
                    assignment,
                    title=fields.get("title", ""),
                    body=fields.get("body", ""),
                    reference=answers,
                    acting_user=user,
                )
                values, message = {}, "Sample added."
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
    existing = await CalibrationSample.filter(assignment_id=assignment.id).order_by(
        "position", "id"
    )
    return render(
        request,
        "peer_review/staff_samples.html",
        {
            "course": course,
            "assignment": assignment,
            "rubric": rubric,
            "samples": existing,
            "errors": errors,
            "values": values,
            "message": message,
        },
        status_code=status,
    )


async def queue(request: Request) -> Response:
    course, _ = _staff(request)
    assignment = await _assignment(course, request)
    found = await staff_queue(assignment)
    all_submissions = await Submission.filter(
        assignment_id=assignment.id, is_current=True
    ).order_by("submitted_at", "id")
    grades = {g.submission_id: g for g in await Grade.filter(assignment_id=assignment.id)}  # type: ignore[attr-defined]
    return render(
        request,
        "peer_review/staff_queue.html",
        {
            "course": course,
            "assignment": assignment,
            "queue": found,
            "submissions": all_submissions,
            "grades": grades,
            "uncertain": await calibrated.needs_staff_review(assignment),
            "overview": await calibrated.instructor_overview(assignment),
        },
    )


async def similar(request: Request) -> Response:
    course, user = _staff(request)
    assignment = await _assignment(course, request)
    flag = await SimilarityFlag.get_or_none(
        id=request.path_params["flag_id"], assignment_id=assignment.id
    )
    if flag is None:
        raise NotFound("There is no such pair.")
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    message, status = "", 200
    if request.method == "POST":
        items = await _form_items(request)
        fields = dict(items)
        values = fields
        try:
            responsible = [int(v) for k, v in items if k == "responsible" and v.isdigit()]
            await actions.decide_similarity(
                flag,
                confirmed=fields.get("decision") == "confirm",
                responsible=responsible,
                rule_code=fields.get("rule", ""),
                reason=fields.get("reason", ""),
                acting_user=user,
            )
            message = "Decision recorded in the moderation log."
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
    pair = [
        await Submission.get(id=flag.submission_a_id),  # type: ignore[attr-defined]
        await Submission.get(id=flag.submission_b_id),  # type: ignore[attr-defined]
    ]
    for submission in pair:
        await submission.fetch_related("author")
    return render(
        request,
        "peer_review/staff_similar.html",
        {
            "course": course,
            "assignment": assignment,
            "flag": flag,
            "pair": pair,
            "rules": await ensure_default_rules(course),
            "errors": errors,
            "values": values,
            "message": message,
        },
        status_code=status,
    )


async def _submission(course: Course, submission_id: int) -> Submission:
    submission = await Submission.get_or_none(id=submission_id, assignment__course_id=course.id)
    if submission is None:
        raise NotFound("There is no such submission in this course.")
    return submission


async def _submission_page(
    request: Request,
    course: Course,
    user: User,
    submission: Submission,
    *,
    form: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    message: str = "",
    status: int = 200,
) -> Response:
    assignment = await Assignment.get(id=submission.assignment_id)  # type: ignore[attr-defined]
    await submission.fetch_related("author")
    received = await reviews_of(submission, viewer=user)
    reviewers = {
        u.id: u
        for u in await User.filter(id__in=[r.reviewer_id for r in received if r.reviewer_id])
    }
    return render(
        request,
        "peer_review/staff_submission.html",
        {
            "course": course,
            "assignment": assignment,
            "submission": submission,
            "files": await Attachment.filter(submission_id=submission.id),
            "received": received,
            "reviewers": reviewers,
            "rubric": await load_rubric(assignment.id),
            "grade": await Grade.get_or_none(submission_id=submission.id),
            "staff_grades": await StaffGrade.filter(submission_id=submission.id),
            "form": form,
            "errors": errors or {},
            "values": values or {},
            "message": message,
        },
        status_code=status,
    )


async def submission_page(request: Request) -> Response:
    course, user = _staff(request)
    submission = await _submission(course, request.path_params["submission_id"])
    return await _submission_page(request, course, user, submission)


async def _act(request: Request, submission: Submission, form: str, work: Any) -> Response:
    course, user = _staff(request)
    items = await _form_items(request)
    values: dict[str, Any] = dict(items)
    try:
        message = await work(items, values, user)
    except ActionError as error:
        if form == "grade":
            answers, overall = answers_from_form(items)
            values |= rubric_form_values(answers, overall)
        return await _submission_page(
            request,
            course,
            user,
            submission,
            form=form,
            errors=error.fields,
            values=values,
            message=error.message,
            status=error.status_code,
        )
    return await _submission_page(request, course, user, submission, message=message)


async def grade(request: Request) -> Response:
    course, _ = _staff(request)
    submission = await _submission(course, request.path_params["submission_id"])

    async def work(items: list[tuple[str, str]], values: dict[str, Any], user: User) -> str:
        answers, overall = answers_from_form(items)
        await actions.grade_submission(
            submission,
            answers=answers,
            overall=overall,
            reason=values.get("reason", ""),
            acting_user=user,
        )
        return "Staff grade recorded in the moderation log."

    return await _act(request, submission, "grade", work)


async def override(request: Request) -> Response:
    course, _ = _staff(request)
    submission = await _submission(course, request.path_params["submission_id"])

    async def work(items: list[tuple[str, str]], values: dict[str, Any], user: User) -> str:
        raw = str(values.get("percent", "")).strip()
        try:
            percent: Any = float(raw)
        except ValueError:
            percent = raw
        await actions.override_grade(
            submission, percent=percent, reason=values.get("reason", ""), acting_user=user
        )
        return "Grade override recorded in the moderation log."

    return await _act(request, submission, "override", work)


async def review_decision(request: Request) -> Response:
    course, _ = _staff(request)
    review = await Review.get_or_none(
        id=request.path_params["review_id"], assignment__course_id=course.id
    )
    if review is None:
        raise NotFound("There is no such review in this course.")
    submission = await Submission.get(id=review.submission_id)  # type: ignore[attr-defined]
    uphold = request.url.path.endswith("/uphold")

    async def work(items: list[tuple[str, str]], values: dict[str, Any], user: User) -> str:
        reason = values.get("reason", "")
        if uphold:
            await actions.uphold_review(review, reason=reason, acting_user=user)
            return "The review stands; the decision is in the moderation log."
        await actions.void_review(review, reason=reason, acting_user=user)
        return "The review is void; the decision is in the moderation log."

    return await _act(request, submission, f"review-{review.id}", work)
