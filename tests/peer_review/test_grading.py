"""peer_review.grading, and grades recomputed through the outbox: peers' median, then a staff
grade, then an instructor's override; a late penalty; idempotent recomputation."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from core.models import Notification, OutboxEvent
from peer_review import actions
from peer_review.grading import GradeEstimate, Grader, MedianGrader, PeerScore, median
from peer_review.models import Grade, GradeSource, Submission
from peer_review.queries import load_rubric
from peer_review.rubric import CriterionView, LevelView, Rubric
from tests.conftest import drain_jobs
from tests.peer_review.factories import (
    COMMENT,
    Cast,
    Clock,
    answers_at,
    essay,
    make_assignment,
    review_once,
)

RUBRIC = Rubric(
    (
        CriterionView(1, "Argument", 2.0, (LevelView(10, 0, 0, "a"), LevelView(11, 1, 4, "b"))),
        CriterionView(2, "Clarity", 1.0, (LevelView(20, 0, 0, "a"), LevelView(21, 1, 2, "b"))),
    )
)


def test_median_is_oras_median() -> None:
    assert median([3]) == 3
    assert median([1, 4, 2]) == 2
    assert median([1, 2]) == 2  # 1.5 rounded up
    assert median([0, 4, 4, 1]) == 3  # (1 + 4) / 2 = 2.5 rounded up
    with pytest.raises(ValueError):
        median([])


def test_median_grader_takes_the_median_per_criterion_then_weights() -> None:
    reviews = [
        PeerScore(7, 1, {1: 4, 2: 0}),
        PeerScore(7, 2, {1: 0, 2: 2}),
        PeerScore(7, 3, {1: 4, 2: 2}),
        PeerScore(8, 1, {1: 4, 2: 2}),
    ]
    grades = MedianGrader().grade(RUBRIC, reviews, min_reviews=2)
    assert set(grades) == {7}  # submission 8 has one review of the two wanted
    grade = grades[7]
    assert grade.per_criterion == {1: 4.0, 2: 2.0}
    assert (grade.score, grade.max_score, grade.review_count) == (10.0, 10.0, 3)
    assert grade.percent == 100.0
    assert MedianGrader().grade(RUBRIC, reviews, min_reviews=1)[8].percent == 100.0
    assert MedianGrader().grade(RUBRIC, [], min_reviews=1) == {}


class LowestGrader:
    """Any object with `name` and `grade` plugs in: here, the harshest review wins."""

    name = "lowest"

    def grade(
        self, rubric: Rubric, reviews: Sequence[PeerScore], *, min_reviews: int
    ) -> dict[int, GradeEstimate]:
        out: dict[int, GradeEstimate] = {}
        for review in sorted(reviews, key=lambda r: rubric.score(r.points), reverse=True):
            out[review.submission_id] = GradeEstimate(
                review.submission_id, dict(review.points), rubric.score(review.points),
                rubric.max_score, 1,
            )  # fmt: skip
        return out


def test_a_grader_is_anything_with_the_protocol() -> None:
    grader: Grader = LowestGrader()
    grades = grader.grade(RUBRIC, [PeerScore(7, 1, {1: 4, 2: 2}), PeerScore(7, 2, {1: 0, 2: 0})],
                          min_reviews=1)  # fmt: skip
    assert grades[7].percent == 0.0


# ---------------------------------------------------------------- through the outbox


async def test_final_grade_is_override_else_staff_else_peers_with_late_penalty(
    cast: Cast, clock: Clock
) -> None:
    assignment = await make_assignment(
        cast, clock.now, reviews_wanted=1, reviews_required=1, late_policy="penalty",
        late_grace_hours=24, late_penalty_percent=10,
    )  # fmt: skip
    on_time, late = cast.learners[:2]
    mine = await actions.submit(assignment, body=essay(1), acting_user=on_time)
    clock.advance(days=1, hours=1)
    theirs = await actions.submit(assignment, body=essay(2), acting_user=late)
    assert theirs.is_late and not mine.is_late
    await review_once(assignment, on_time, [3, 2])  # 100 % for the late one
    await review_once(assignment, late, [1, 1])  # (2*1 + 1) / 8 for the on-time one
    await drain_jobs()
    grade = await Grade.get(submission_id=theirs.id)
    assert (grade.source, grade.peer_percent, grade.late_penalty_percent) == (
        GradeSource.PEER,
        100.0,
        10,
    )
    assert grade.final_percent == 90.0
    assert (await Grade.get(submission_id=mine.id)).final_percent == 37.5

    rubric = await load_rubric(assignment.id)
    await actions.grade_submission(
        mine, answers=answers_at(rubric, [2, 2]), overall=COMMENT,
        reason="Second opinion on a low peer grade.", acting_user=cast.mentor,
    )  # fmt: skip
    await actions.override_grade(
        theirs, percent=95, reason="Late because of a documented illness.",
        acting_user=cast.instructor,
    )  # fmt: skip
    await drain_jobs()
    staff = await Grade.get(submission_id=mine.id)
    assert (staff.source, staff.final_percent, staff.peer_percent) == (
        GradeSource.STAFF,
        75.0,
        37.5,
    )
    overridden = await Grade.get(submission_id=theirs.id)
    assert (overridden.source, overridden.final_percent) == (GradeSource.OVERRIDE, 95.0)
    assert overridden.late_penalty_percent == 0


async def test_recomputing_is_idempotent_and_tells_the_author_once_per_change(
    cast: Cast, clock: Clock
) -> None:
    assignment = await make_assignment(cast, clock.now, reviews_wanted=1, reviews_required=1)
    author, reviewer = cast.learners[:2]
    mine = await actions.submit(assignment, body=essay(3), acting_user=author)
    await actions.submit(assignment, body=essay(4), acting_user=reviewer)
    await review_once(assignment, reviewer)
    await drain_jobs()
    told = await Notification.filter(user_id=author.id, message__contains="Your grade").count()
    assert told == 1
    events = await OutboxEvent.all().count()
    stored = await Grade.get(submission_id=mine.id)
    again = await actions.recompute_grade(await Submission.get(id=mine.id), acting_user=None)
    await drain_jobs()
    assert again is not None and again.computed_at == stored.computed_at
    assert await OutboxEvent.all().count() == events
    # Another grader reaching the same grade is recorded; nobody is told again.
    await actions.recompute_grade(
        await Submission.get(id=mine.id), acting_user=None, grader=LowestGrader()
    )
    await drain_jobs()
    assert (await Grade.get(submission_id=mine.id)).grader == "lowest"
    assert await Notification.filter(user_id=author.id, message__contains="Your grade").count() == 1
