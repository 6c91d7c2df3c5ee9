"""Learners' pages of peer review: assignments, submitting, calibrating, reviewing, results.

Instructors' pages are in peer_review/staff.py. Each handler parses the form, calls one
action from peer_review/actions.py and renders the page (htmx gets a block of it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core import timeutil
from core.access import course_member
from core.errors import ActionError, InvalidInput, NotFound
from core.models import Course, Role, User
from core.templating import render
from core.views import form_fields
from peer_review import actions, attachments, calibrated
from peer_review.models import (
    Assignment,
    Attachment,
    CalibrationAnswer,
    CalibrationSample,
    LearnerRecord,
    Review,
    ReviewStatus,
    Submission,
    is_staff,
)
from peer_review.queries import (
    course_record,
    load_rubric,
    next_calibration_sample,
    open_attachment,
    progress,
    reviews_of,
)
from peer_review.rubric import RawAnswer, Rubric, answers_from_form, answers_from_json


def base(course: Course) -> str:
    return f"/courses/{course.slug}"


async def assignment_for(
    course: Course, assignment_id: int, user: User, role: Role | None
) -> Assignment:
    assignment = await Assignment.get_or_none(id=assignment_id, course_id=course.id)
    if assignment is None or not assignment.can_be_seen_by(user, role):
        raise NotFound("There is no such assignment in this course.")
    return assignment


async def _form_items(request: Request) -> list[tuple[str, str]]:
    form = await request.form()
    try:
        items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    finally:
        await form.close()
    if any("\x00" in k or "\x00" in v for k, v in items):
        raise InvalidInput("Text cannot contain NUL characters.")
    return items


def rubric_form_values(answers: dict[int, RawAnswer], overall: str = "") -> dict[str, Any]:
    """Chosen levels and comments, keyed as the rubric form fields are."""
    values: dict[str, Any] = {"overall": overall}
    for cid, answer in answers.items():
        values[f"level-{cid}"] = list(answer.level_ids)
        values[f"comment-{cid}"] = answer.comment
    return values


# --- the assignment list and page -----------------------------------------------------------


async def assignment_list(request: Request) -> Response:
    course, user, role = await course_member(request)
    rows = await Assignment.filter(course_id=course.id).order_by("submission_due_at", "id")
    visible = [a for a in rows if a.can_be_seen_by(user, role)]
    return render(
        request,
        "peer_review/assignments.html",
        {
            "course": course,
            "assignments": visible,
            "can_manage": Assignment(course=course).can_be_managed_by(user, role),
            "now": timeutil.utcnow(),
        },
    )


def next_step(assignment: Assignment, state: Any, now: Any) -> tuple[str, str]:
    """What the learner should do next: (label, path under the assignment), or ("", text)."""
    if state.submission is None:
        if assignment.takes_submissions_at(now):
            return "Submit your work", "submit"
        if now < assignment.submission_opens_at:
            return "", "Submissions are not open yet."
        return "", "The submission deadline has passed."
    if not state.calibrated and assignment.takes_reviews_at(now):
        return "Grade the calibration samples", "calibrate"
    if state.active_review is not None:
        return "Continue your review", f"../../reviews/{state.active_review.id}"
    if state.reviews_given < state.reviews_required and assignment.takes_reviews_at(now):
        return "Review a classmate's work", "review-next"
    if state.grade is not None and state.grade.final_percent is not None:
        return "See your results", "results"
    if state.reviews_given >= state.reviews_required:
        return "", "You have given all your reviews. Your grade appears once yours are in."
    return "", "Reviewing is not open right now."


async def assignment_page(request: Request) -> Response:
    course, user, role = await course_member(request)
    assignment = await assignment_for(course, request.path_params["assignment_id"], user, role)
    now = timeutil.utcnow()
    state = await progress(assignment, user, now) if role == Role.LEARNER else None
    step = next_step(assignment, state, now) if state is not None else ("", "")
    files = (
        await Attachment.filter(submission_id=state.submission.id)
        if state and state.submission
        else []
    )
    return render(
        request,
        "peer_review/assignment.html",
        {
            "course": course,
            "assignment": assignment,
            "state": state,
            "step": step,
            "files": files,
            "rubric": await load_rubric(assignment.id),
            "can_manage": assignment.can_be_managed_by(user, role),
            "message": request.query_params.get("message", "")[:200],
        },
    )


# --- submitting -----------------------------------------------------------------------------


async def _read_upload(upload: UploadFile) -> attachments.Upload:
    # Read one byte past the limit: enough for check_uploads to refuse the file, never more.
    data = await upload.read(attachments.MAX_FILE_BYTES + 1)
    return attachments.Upload(upload.filename or "", data)


async def submit_page(request: Request) -> Response:
    course, user, role = await course_member(request)
    assignment = await assignment_for(course, request.path_params["assignment_id"], user, role)
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    message, status = "", 200
    if request.method == "POST":
        form = await request.form(max_files=attachments.MAX_ATTACHMENTS + 1, max_fields=50)
        try:
            values = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            uploads = [
                await _read_upload(v)
                for k, v in form.multi_items()
                if k == "attachments" and isinstance(v, UploadFile) and (v.filename or v.size)
            ]
        finally:
            await form.close()
        try:
            if "\x00" in values.get("body", ""):
                raise InvalidInput("Text cannot contain NUL characters.")
            await actions.submit(
                assignment, body=values.get("body", ""), uploads=uploads, acting_user=user
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
            if "attachments" not in errors and any(k.startswith("attachments.") for k in errors):
                errors["attachments"] = " ".join(
                    v for k, v in sorted(errors.items()) if k.startswith("attachments.")
                )
        else:
            return RedirectResponse(
                f"{base(course)}/assignments/{assignment.id}?message=Your+work+is+handed+in.",
                status_code=303,
            )
    state = await progress(assignment, user) if role == Role.LEARNER else None
    if state and state.submission and not values:
        values = {"body": state.submission.body_markdown}
    return render(
        request,
        "peer_review/submit.html",
        {
            "course": course,
            "assignment": assignment,
            "state": state,
            "values": values,
            "errors": errors,
            "message": message,
            "max_files": attachments.MAX_ATTACHMENTS,
            "max_mb": attachments.MAX_FILE_BYTES // (1024 * 1024),
        },
        status_code=status,
    )


# --- calibration ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    title: str
    given: str
    reference: str
    explanation: str
    agrees: bool


def calibration_rows(
    rubric: Rubric, sample: CalibrationSample, answer: CalibrationAnswer
) -> list[CalibrationRow]:
    rows = []
    for criterion in rubric.criteria:
        ref = sample.reference.get(str(criterion.id), {})
        given = criterion.level(int(answer.levels.get(str(criterion.id), 0)))
        reference = criterion.level(int(ref.get("level", 0)))
        rows.append(
            CalibrationRow(
                title=criterion.title,
                given=given.label if given else "—",
                reference=reference.label if reference else "—",
                explanation=str(ref.get("explanation", "")),
                agrees=int(answer.distances.get(str(criterion.id), 1)) == 0,
            )
        )
    return rows


async def calibrate(request: Request) -> Response:
    course, user, role = await course_member(request)
    assignment = await assignment_for(course, request.path_params["assignment_id"], user, role)
    rubric = await load_rubric(assignment.id)
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    message, status = "", 200
    result: tuple[CalibrationSample, list[CalibrationRow], float] | None = None
    if request.method == "POST":
        items = await _form_items(request)
        raw_id = dict(items).get("sample_id", "")
        sample = await CalibrationSample.get_or_none(
            id=int(raw_id) if raw_id.isdigit() else 0, assignment_id=assignment.id
        )
        if sample is None:
            raise NotFound("There is no such calibration sample.")
        answers, _ = answers_from_form(items)
        try:
            answer = await actions.grade_calibration_sample(
                sample, answers=answers, acting_user=user
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
            values = rubric_form_values(answers)
        else:
            result = (sample, calibration_rows(rubric, sample, answer), answer.agreement_rate)
    current = None if result else await next_calibration_sample(assignment, user)
    if request.method == "POST" and errors and status != 409:
        current = sample
    return render(
        request,
        "peer_review/calibrate.html",
        {
            "course": course,
            "assignment": assignment,
            "rubric": rubric,
            "sample": current,
            "result": result,
            "errors": errors,
            "values": values,
            "message": message,
            "more": result is not None
            and await next_calibration_sample(assignment, user) is not None,
        },
        status_code=status,
    )


# --- reviewing ------------------------------------------------------------------------------


async def review_next(request: Request) -> Response:
    course, user, role = await course_member(request)
    assignment = await assignment_for(course, request.path_params["assignment_id"], user, role)
    if request.method == "POST":
        await form_fields(request)
    try:
        review = await actions.review_next(assignment, acting_user=user)
    except ActionError as error:
        if error.status_code != 409:
            raise
        return render(
            request,
            "peer_review/review_none.html",
            {"course": course, "assignment": assignment, "message": error.message},
            status_code=409,
        )
    if review is None:
        return render(
            request,
            "peer_review/review_none.html",
            {
                "course": course,
                "assignment": assignment,
                "message": "There is no submission for you to review right now. "
                "Come back later: classmates are still handing in work.",
            },
        )
    return RedirectResponse(f"{base(course)}/reviews/{review.id}", status_code=303)


async def _own_review(course: Course, review_id: int, user: User) -> tuple[Review, Assignment]:
    review = await Review.get_or_none(id=review_id, assignment__course_id=course.id)
    if review is None or not review.is_by(user):
        raise NotFound("There is no such review of yours.")
    assignment = await Assignment.get(id=review.assignment_id)  # type: ignore[attr-defined]
    return review, assignment


async def review_page(request: Request) -> Response:
    course, user, _ = await course_member(request)
    review, assignment = await _own_review(course, request.path_params["review_id"], user)
    rubric = await load_rubric(assignment.id)
    errors: dict[str, str] = {}
    message, status = "", 200
    answers, overall = answers_from_json(review.draft)
    if review.status != ReviewStatus.LEASED:
        answers = {
            int(cid): RawAnswer((int(a["level"]),), a.get("comment", ""))
            for cid, a in review.answers.items()
        }
        overall = review.overall_comment
    if request.method == "POST":
        items = await _form_items(request)
        answers, overall = answers_from_form(items)
        op = dict(items).get("op", "save")
        try:
            await actions.save_review_draft(
                review, answers=answers, overall=overall, acting_user=user
            )
            if op == "submit":
                await actions.submit_review(
                    review, answers=answers, overall=overall, acting_user=user
                )
                return RedirectResponse(
                    f"{base(course)}/assignments/{assignment.id}?message=Your+review+is+in.",
                    status_code=303,
                )
            message = "Draft saved. Nothing is sent until you submit the review."
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        review = await Review.get(id=review.id)
    submission = await Submission.get(id=review.submission_id)  # type: ignore[attr-defined]
    return render(
        request,
        "peer_review/review.html",
        {
            "course": course,
            "assignment": assignment,
            "review": review,
            "submission": submission,
            "files": await Attachment.filter(submission_id=submission.id),
            "rubric": rubric,
            "values": rubric_form_values(answers, overall),
            "errors": errors,
            "message": message,
            "editable": review.status == ReviewStatus.LEASED,
        },
        block="review_form",
        status_code=status,
    )


# --- results --------------------------------------------------------------------------------


async def _results(
    request: Request,
    course: Course,
    assignment: Assignment,
    user: User,
    *,
    errors: dict[str, str] | None = None,
    message: str = "",
    failed: int | None = None,
    status: int = 200,
) -> Response:
    state = await progress(assignment, user)
    received = await reviews_of(state.submission, viewer=user) if state.submission else []
    record = await LearnerRecord.get_or_none(course_id=course.id, learner_id=user.id)
    rubric = await load_rubric(assignment.id)
    graded = state.grade is not None and state.grade.final_percent is not None
    return render(
        request,
        "peer_review/results.html",
        {
            "course": course,
            "assignment": assignment,
            "state": state,
            "received": received,
            "rubric": rubric,
            "max_points": rubric.max_score,
            "explanation": await calibrated.grade_explanation(state.grade) if graded else "",
            "feedback": (
                await calibrated.reviewer_feedback(user, assignment) if state.reviews_given else ""
            ),
            "errors": errors or {},
            "message": message,
            "failed": failed,
            "record_public": record is not None and record.is_public,
        },
        block="reviews",
        status_code=status,
    )


async def results(request: Request) -> Response:
    course, user, role = await course_member(request)
    assignment = await assignment_for(course, request.path_params["assignment_id"], user, role)
    return await _results(request, course, assignment, user)


async def _received_review(course: Course, review_id: int, user: User) -> Review:
    review = await Review.get_or_none(id=review_id, assignment__course_id=course.id)
    if review is None:
        raise NotFound("There is no such review.")
    submission = await Submission.get(id=review.submission_id)  # type: ignore[attr-defined]
    if not submission.is_by(user):
        raise NotFound("There is no such review of your work.")
    return review


async def _answer_review(request: Request, flag: bool) -> Response:
    course, user, _ = await course_member(request)
    review = await _received_review(course, request.path_params["review_id"], user)
    assignment = await Assignment.get(id=review.assignment_id)  # type: ignore[attr-defined]
    values = await form_fields(request)
    try:
        if flag:
            await actions.flag_review(review, reason=values.get("reason", ""), acting_user=user)
            message = "Thank you. The course staff will look at this review."
        else:
            raw = values.get("helpfulness", "")
            await actions.rate_review(
                review, helpfulness=int(raw) if raw.isdigit() else 0, acting_user=user
            )
            message = "Thank you for rating the review."
    except ActionError as error:
        return await _results(
            request,
            course,
            assignment,
            user,
            errors=error.fields,
            message=error.message,
            failed=review.id,
            status=error.status_code,
        )
    if request.headers.get("hx-request") == "true":
        return await _results(request, course, assignment, user, message=message)
    return RedirectResponse(
        f"{base(course)}/assignments/{assignment.id}/results#review-{review.id}", status_code=303
    )


async def rate(request: Request) -> Response:
    return await _answer_review(request, flag=False)


async def flag(request: Request) -> Response:
    return await _answer_review(request, flag=True)


# --- the course record ----------------------------------------------------------------------


async def record_page(request: Request) -> Response:
    course, user, role = await course_member(request)
    learner = await User.get_or_none(username=request.path_params["username"])
    if learner is None:
        raise NotFound("There is no such learner.")
    rows = await course_record(course, learner, viewer=user)
    record = await LearnerRecord.get_or_none(course_id=course.id, learner_id=learner.id)
    return render(
        request,
        "peer_review/record.html",
        {
            "course": course,
            "learner": learner,
            "rows": rows,
            "own": learner.id == user.id,
            "is_public": record is not None and record.is_public,
            "viewer_is_staff": is_staff(user, role),
        },
    )


async def record_visibility(request: Request) -> Response:
    course, user, _ = await course_member(request)
    values = await form_fields(request)
    await actions.set_record_public(course, public=values.get("public") == "1", acting_user=user)
    return RedirectResponse(f"{base(course)}/record/{user.username}", status_code=303)


# --- attachments ----------------------------------------------------------------------------


async def download(request: Request) -> Response:
    course, user, _ = await course_member(request)
    attachment_id = request.path_params["attachment_id"]
    if not await Attachment.filter(
        id=attachment_id, submission__assignment__course_id=course.id
    ).exists():
        raise NotFound("No such attachment.")
    path, headers = await open_attachment(attachment_id, viewer=user)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound("This file is no longer stored.") from None
    return Response(content=data, headers=dict(headers))
