"""JSON API of peer review for learners. Reviewers stay anonymous here too."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from core.api import api_user, json_response, parse_body
from core.errors import NotFound, PermissionDenied
from core.models import Course, Role, User
from peer_review import actions
from peer_review.models import Assignment, Review, Submission
from peer_review.queries import load_rubric, progress, reviews_of
from peer_review.rubric import RawAnswer, Rubric


class LevelOut(BaseModel):
    id: int
    points: int
    label: str
    description: str


class CriterionOut(BaseModel):
    id: int
    title: str
    description: str
    weight: float
    comment_rule: str
    levels: list[LevelOut]


class AssignmentOut(BaseModel):
    id: int
    title: str
    instructions_html: str
    submission_opens_at: datetime
    submission_due_at: datetime
    review_opens_at: datetime
    review_due_at: datetime
    reviews_required: int
    min_words: int
    published: bool


class AssignmentDetailOut(AssignmentOut):
    instructions_markdown: str
    rubric: list[CriterionOut]


class SubmissionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=200_000)


class SubmissionOut(BaseModel):
    id: int
    assignment_id: int
    attempt: int
    body_markdown: str
    body_html: str
    word_count: int
    submitted_at: datetime
    late: bool


class ReviewTaskOut(BaseModel):
    review_id: int
    lease_expires_at: datetime
    submission_html: str
    submission_markdown: str
    rubric: list[CriterionOut]


class NextReviewOut(BaseModel):
    task: ReviewTaskOut | None
    message: str


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    criterion_id: int
    level_id: int
    comment: str = Field(default="", max_length=5000)


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answers: list[AnswerIn] = Field(max_length=50)
    overall: str = Field(default="", max_length=5000)


class ReviewOut(BaseModel):
    review_id: int
    submitted_at: datetime | None
    percent: float | None


class ReceivedReviewOut(BaseModel):
    reviewer: str = Field(description='"Reviewer n": reviewers are anonymous to authors')
    percent: float | None
    voided: bool
    overall_comment: str
    answers: dict[str, dict[str, object]]
    helpfulness: int | None
    flag_state: str


class ResultsOut(BaseModel):
    submission_id: int | None
    final_percent: float | None
    grade_source: str | None
    reviews_given: int
    reviews_required: int
    reviews: list[ReceivedReviewOut]


async def _member(request: Request) -> tuple[Course, User, Role | None]:
    user = api_user(request)
    course = await Course.get_or_none(slug=request.path_params["slug"])
    if course is None:
        raise NotFound("There is no such course.")
    role = await course.role_of(user)
    if not course.can_be_read_by(user, role):
        raise PermissionDenied("Join this course first.")
    return course, user, role


async def _assignment(request: Request) -> tuple[Course, User, Assignment]:
    course, user, role = await _member(request)
    assignment = await Assignment.get_or_none(
        id=request.path_params["assignment_id"], course_id=course.id
    )
    if assignment is None or not assignment.can_be_seen_by(user, role):
        raise NotFound("There is no such assignment in this course.")
    return course, user, assignment


def _rubric_out(rubric: Rubric) -> list[CriterionOut]:
    return [
        CriterionOut(
            id=c.id,
            title=c.title,
            description=c.description,
            weight=c.weight,
            comment_rule=c.comment.value,
            levels=[
                LevelOut(id=v.id, points=v.points, label=v.label, description=v.description)
                for v in c.levels
            ],
        )
        for c in rubric.criteria
    ]


def _assignment_out(a: Assignment) -> AssignmentOut:
    return AssignmentOut(
        id=a.id,
        title=a.title,
        instructions_html=a.instructions_html,
        submission_opens_at=a.submission_opens_at,
        submission_due_at=a.submission_due_at,
        review_opens_at=a.review_opens_at,
        review_due_at=a.review_due_at,
        reviews_required=a.reviews_required,
        min_words=a.min_words,
        published=a.is_published,
    )


async def list_assignments(request: Request) -> Response:
    course, user, role = await _member(request)
    rows = await Assignment.filter(course_id=course.id).order_by("submission_due_at", "id")
    return json_response([_assignment_out(a) for a in rows if a.can_be_seen_by(user, role)])


async def get_assignment(request: Request) -> Response:
    _, _, assignment = await _assignment(request)
    base = _assignment_out(assignment)
    return json_response(
        AssignmentDetailOut(
            **base.model_dump(),
            instructions_markdown=assignment.instructions_markdown,
            rubric=_rubric_out(await load_rubric(assignment.id)),
        )
    )


def _submission_out(s: Submission) -> SubmissionOut:
    return SubmissionOut(
        id=s.id,
        assignment_id=s.assignment_id,  # type: ignore[attr-defined]
        attempt=s.attempt,
        body_markdown=s.body_markdown,
        body_html=s.body_html,
        word_count=s.word_count,
        submitted_at=s.submitted_at,
        late=s.is_late,
    )


async def submit(request: Request) -> Response:
    _, user, assignment = await _assignment(request)
    body = await parse_body(request, SubmissionIn)
    submission = await actions.submit(assignment, body=body.body, acting_user=user)
    return json_response(_submission_out(submission), status_code=201)


async def next_review(request: Request) -> Response:
    _, user, assignment = await _assignment(request)
    review = await actions.review_next(assignment, acting_user=user)
    if review is None:
        return json_response(
            NextReviewOut(task=None, message="Nothing to review right now; try again later.")
        )
    submission = await Submission.get(id=review.submission_id)  # type: ignore[attr-defined]
    task = ReviewTaskOut(
        review_id=review.id,
        lease_expires_at=review.lease_expires_at,
        submission_html=submission.body_html,
        submission_markdown=submission.body_markdown,
        rubric=_rubric_out(await load_rubric(assignment.id)),
    )
    return json_response(NextReviewOut(task=task, message="Review this submission."))


async def submit_review(request: Request) -> Response:
    course, user, _ = await _member(request)
    review = await Review.get_or_none(
        id=request.path_params["review_id"], assignment__course_id=course.id
    )
    if review is None or not review.is_by(user):
        raise NotFound("There is no such review of yours.")
    body = await parse_body(request, ReviewIn)
    levels: dict[int, list[int]] = {}
    comments: dict[int, str] = {}
    for answer in body.answers:
        levels.setdefault(answer.criterion_id, []).append(answer.level_id)
        if answer.comment:
            comments[answer.criterion_id] = answer.comment
    answers = {cid: RawAnswer(tuple(ids), comments.get(cid, "")) for cid, ids in levels.items()}
    done = await actions.submit_review(
        review, answers=answers, overall=body.overall, acting_user=user
    )
    return json_response(
        ReviewOut(review_id=done.id, submitted_at=done.submitted_at, percent=done.percent)
    )


async def my_results(request: Request) -> Response:
    _, user, assignment = await _assignment(request)
    state = await progress(assignment, user)
    received = await reviews_of(state.submission, viewer=user) if state.submission else []
    grade = state.grade
    return json_response(
        ResultsOut(
            submission_id=state.submission.id if state.submission else None,
            final_percent=grade.final_percent if grade else None,
            grade_source=grade.source.value if grade and grade.source else None,
            reviews_given=state.reviews_given,
            reviews_required=state.reviews_required,
            reviews=[
                ReceivedReviewOut(
                    reviewer=r.label,
                    percent=r.review.percent,
                    voided=r.review.status.value == "voided",
                    overall_comment=r.review.overall_comment,
                    answers=r.review.answers,
                    helpfulness=r.review.helpfulness,
                    flag_state=r.review.flag_state.value,
                )
                for r in received
            ],
        )
    )
