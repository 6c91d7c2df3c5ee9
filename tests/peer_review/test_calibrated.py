"""peer_review.calibrated: the calibrated model behind the Grader protocol, wired into the
outbox recomputation, escalation to staff, and the plain-words read side."""

from __future__ import annotations

import math
import random

import pytest

from core import jobs
from core.models import Notification, OutboxEvent, User
from core.settings import Settings
from peer_review import actions, calibrated
from peer_review.calibrated import CalibratedGrader, describe_grade
from peer_review.grading import MedianGrader, PeerScore
from peer_review.models import Assignment, Grade, GradeSource, Submission
from peer_review.queries import load_rubric
from peer_review.rubric import CriterionView, LevelView, Rubric
from peer_review.simulate import simulate
from tests.conftest import drain_jobs
from tests.factories import reuse_password_hashes
from tests.peer_review.factories import (
    COMMENT,
    Cast,
    Clock,
    answers_at,
    make_assignment,
    make_cast,
    submit_all,
)

# The default rubric: Argument (weight 2, 0-3 points) and Clarity (0-2): totals 0-8.
MAX_POINTS = 8.0


# ---------------------------------------------------------------- pure


def _one_criterion(max_score: int) -> Rubric:
    levels = tuple(LevelView(100 + p, p, p, str(p)) for p in range(max_score + 1))
    return Rubric((CriterionView(1, "Total", 1.0, levels),))


def test_calibrated_grader_beats_the_median_with_ten_percent_anchors() -> None:
    course = simulate(240, 3, seed=7)
    rubric = _one_criterion(int(course.max_score))
    scores = [
        PeerScore(int(r.submission_id[1:]), int(r.reviewer_id[1:]), {1: r.score})
        for r in course.reviews
    ]
    truth = {int(k[1:]): v for k, v in course.truth.items()}
    anchors = {sid: truth[sid] for sid in sorted(truth)[: len(truth) // 10]}
    model = CalibratedGrader(anchors=anchors).grade(rubric, scores, min_reviews=1)
    baseline = MedianGrader().grade(rubric, scores, min_reviews=1)
    hidden = [sid for sid in truth if sid not in anchors]

    def rmse(grades: dict[int, float]) -> float:
        return math.sqrt(sum((grades[s] - truth[s]) ** 2 for s in hidden) / len(hidden))

    ours = rmse({s: g.score for s, g in model.items()})
    theirs = rmse({s: g.score for s, g in baseline.items()})
    assert ours < theirs, (ours, theirs)
    covered = sum(model[s].low <= truth[s] <= model[s].high for s in hidden) / len(hidden)  # type: ignore[operator]
    assert covered >= 0.8
    for sid in anchors:
        assert model[sid].score == model[sid].low == model[sid].high == anchors[sid]


def test_with_few_reviews_the_grader_falls_back_to_the_median_with_an_interval() -> None:
    rubric = _one_criterion(14)
    scores = [PeerScore(1, 10, {1: 9}), PeerScore(1, 11, {1: 12}), PeerScore(2, 10, {1: 5})]
    grades = CalibratedGrader(anchors={2: 14}).grade(rubric, scores, min_reviews=1)
    assert grades[1].score == 11  # ORA2's median, 10.5 rounded up
    assert grades[2].score == 5  # no model, no pinning: the staff grade wins on its own
    for g in grades.values():
        assert g.low is not None and g.high is not None
        assert 0 <= g.low < g.score < g.high <= 14
    # One review says less than two.
    assert grades[2].high - grades[2].low > grades[1].high - grades[1].low  # type: ignore[operator]
    assert CalibratedGrader().grade(rubric, scores, min_reviews=2).keys() == {1}


def test_describe_grade_says_the_numbers() -> None:
    text = describe_grade(
        percent=80.0, low_percent=72.0, high_percent=88.5, max_points=14,
        review_count=3, source=GradeSource.PEER,
    )  # fmt: skip
    assert text.startswith("Your grade is 11.2 of 14. We are 90% sure")
    assert "between 10.1 and 12.4" in text and "Three classmates reviewed" in text


# ---------------------------------------------------------------- through the real actions

LEARNERS = 12


@pytest.fixture
async def big_cast(db: Settings, monkeypatch: pytest.MonkeyPatch) -> Cast:
    reuse_password_hashes(monkeypatch)
    return await make_cast(LEARNERS)


async def _simulate_assignment(cast: Cast, clock: Clock) -> dict[str, object]:
    """Twelve learners, three reviews each. Learner 0 always gives 2 points more than the
    truth (one Argument level up); learner 1 gives zero on their first review; the rest are
    right or one Clarity level off now and then. Staff then grade the the submissions
    learner 0 reviewed (not the one learner 1 zeroed)."""
    assignment = await make_assignment(cast, clock.now, reviews_wanted=3, reviews_required=3)
    rubric = await load_rubric(assignment.id)
    rng = random.Random(5)
    submissions = await submit_all(assignment, cast.learners)
    truth = {s.id: [rng.choice([1, 2]), rng.choice([0, 1, 2])] for s in submissions}
    generous, careless = cast.learners[0], cast.learners[1]
    reviewed: dict[int, list[int]] = {u.id: [] for u in cast.learners}
    zeroed: int | None = None
    for _ in range(3):
        for learner in cast.learners:
            review = await actions.review_next(assignment, acting_user=learner)
            assert review is not None
            sid: int = review.submission_id  # type: ignore[attr-defined]
            positions = list(truth[sid])
            if learner.id == generous.id:
                positions[0] += 1
            elif learner.id == careless.id and zeroed is None:
                positions, zeroed = [0, 0], sid
            elif rng.random() < 0.5:
                positions[1] = min(2, max(0, positions[1] + rng.choice([-1, 1])))
            await actions.submit_review(
                review, answers=answers_at(rubric, positions), overall=COMMENT,
                acting_user=learner,
            )  # fmt: skip
            reviewed[learner.id].append(sid)
    await drain_jobs()
    staffed = [s for s in reviewed[generous.id] if s != zeroed][:3]
    for sid in staffed:
        await actions.grade_submission(
            await Submission.get(id=sid), answers=answers_at(rubric, truth[sid]),
            overall=COMMENT, reason="Staff grade for calibration.", acting_user=cast.instructor,
        )  # fmt: skip
    await drain_jobs()
    return {
        "assignment": assignment,
        "truth": truth,
        "staffed": staffed,
        "zeroed": zeroed,
        "generous": generous,
    }


def _points(positions: list[int]) -> float:
    return 2.0 * positions[0] + positions[1]


async def test_a_simulated_assignment_gets_calibrated_grades(big_cast: Cast, clock: Clock) -> None:
    sim = await _simulate_assignment(big_cast, clock)
    assignment = sim["assignment"]
    assert isinstance(assignment, Assignment)
    truth: dict[int, list[int]] = sim["truth"]  # type: ignore[assignment]
    staffed: list[int] = sim["staffed"]  # type: ignore[assignment]
    grades = {g.submission_id: g for g in await Grade.filter(assignment_id=assignment.id)}  # type: ignore[attr-defined]
    assert len(grades) == LEARNERS
    for sid, grade in grades.items():
        assert grade.grader == "calibrated" and grade.review_count == 3
        assert grade.peer_percent is not None
        assert grade.peer_low_percent is not None and grade.peer_high_percent is not None
        assert 0 <= grade.peer_low_percent <= grade.peer_percent <= grade.peer_high_percent <= 100
        if sid in staffed:
            # The staff grade pins the model's grade of that submission exactly.
            staff = 100 * _points(truth[sid]) / MAX_POINTS
            assert grade.source == GradeSource.STAFF and grade.final_percent == staff
            assert grade.peer_percent == grade.peer_low_percent == grade.peer_high_percent == staff
    # Staff anchors taught the model the generous reviewer's lean: more generous than anyone
    # (with three reviews each, the model shrinks the +2 points towards the others' lean).
    generous: User = sim["generous"]  # type: ignore[assignment]
    rubric, grader, fit = await calibrated._fit(assignment)
    assert fit.fitted and set(fit.anchored) == set(staffed)
    assert 0.0 < fit.reviewers[generous.id].bias < 3.0
    others = [e.bias for uid, e in fit.reviewers.items() if uid != generous.id]
    assert all(b < fit.reviewers[generous.id].bias for b in others)
    feedback = await calibrated.reviewer_feedback(generous, assignment)
    assert "more generously than staff" in feedback and "points" in feedback
    # The explanation carries the stored numbers.
    peer = next(g for s, g in grades.items() if s not in staffed and g.source == GradeSource.PEER)
    text = await calibrated.grade_explanation(peer)
    assert f"Your grade is {peer.final_percent * MAX_POINTS / 100:.1f}".removesuffix(".0") in text
    assert f"{peer.peer_low_percent * MAX_POINTS / 100:.1f}".removesuffix(".0") in text  # type: ignore[operator]
    assert f"{peer.peer_high_percent * MAX_POINTS / 100:.1f}".removesuffix(".0") in text  # type: ignore[operator]
    assert "of 8" in text and "Three classmates reviewed" in text
    staff_text = await calibrated.grade_explanation(grades[staffed[0]])
    assert "member of the course staff" in staff_text
    # Escalation: the zeroed submission's reviews disagree by far more than 40 % of the scale.
    flagged = {item.submission_id: item for item in await calibrated.needs_staff_review(assignment)}
    assert sim["zeroed"] in flagged
    assert any("disagree" in r for r in flagged[sim["zeroed"]].reasons)  # type: ignore[index]
    assert not set(staffed) & set(flagged)
    # The instructor overview feeds the charts.
    overview = await calibrated.instructor_overview(assignment)
    assert overview.graded == LEARNERS and sum(b.count for b in overview.bins) == LEARNERS
    assert len(overview.reviewers) == LEARNERS and overview.anchored == len(staffed)
    assert all(0 < r.reliability < 1 for r in overview.reviewers)
    del rubric, grader


async def test_recomputation_through_the_outbox_is_idempotent(big_cast: Cast, clock: Clock) -> None:
    sim = await _simulate_assignment(big_cast, clock)
    assignment = sim["assignment"]
    assert isinstance(assignment, Assignment)
    staffed: list[int] = sim["staffed"]  # type: ignore[assignment]
    before = {g.id: g.computed_at for g in await Grade.filter(assignment_id=assignment.id)}
    told = await Notification.filter(message__contains="Your grade").count()
    await jobs.enqueue("peer_review.recompute_grade", {"submission_id": staffed[0]})
    await jobs.enqueue("peer_review.recompute_grade", {"submission_id": sim["zeroed"]})
    await jobs.wake()
    await drain_jobs()
    events = await OutboxEvent.filter(delivered_at=None).count()
    after = {g.id: g.computed_at for g in await Grade.filter(assignment_id=assignment.id)}
    assert after == before
    assert await Notification.filter(message__contains="Your grade").count() == told
    assert events == 0


async def test_thin_data_is_flagged_for_staff(cast: Cast, clock: Clock) -> None:
    assignment = await make_assignment(cast, clock.now, reviews_wanted=1, reviews_required=1)
    rubric = await load_rubric(assignment.id)
    await submit_all(assignment, cast.learners[:2])
    for learner in cast.learners[:2]:
        review = await actions.review_next(assignment, acting_user=learner)
        assert review is not None
        await actions.submit_review(
            review, answers=answers_at(rubric, [2, 1]), overall=COMMENT, acting_user=learner
        )
    await drain_jobs()
    flagged = await calibrated.needs_staff_review(assignment)
    assert len(flagged) == 2
    assert all(any("uncertain" in r for r in item.reasons) for item in flagged)
    grade = await Grade.get(submission_id=flagged[0].submission_id)
    assert grade.peer_percent == 62.5  # the median, (2*2 + 1) / 8
    assert grade.peer_low_percent < 62.5 < grade.peer_high_percent  # type: ignore[operator]
    text = await calibrated.reviewer_feedback(cast.learners[0], assignment)
    assert "cannot yet tell" in text
