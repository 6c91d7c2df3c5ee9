"""Calibrated grades: peer_review/aggregation.py's model behind the Grader protocol, and what
the pages say about it.

`CalibratedGrader` fits the PG1-style model over every counted review of an assignment, on
weighted rubric totals bounded by the rubric's lowest and highest total. Staff grades are
anchors (their submissions are pinned to the staff grade, and the reviews of those submissions
teach the model how each reviewer and the peers as a whole lean); graded calibration samples
are calibration observations. Each submission gets a grade with a 90 % interval, each reviewer
an estimated bias and reliability. With very few reviews the model has nothing to learn from:
the grader then falls back to the median grade with an interval built from the spread peers
show (never narrower than a typical reviewer's noise would allow).

The grader itself is pure; `grader_for(assignment)` loads its anchors and calibration
observations. The read side (`grade_explanation`, `reviewer_feedback`, `instructor_overview`,
`needs_staff_review`) is what the pages show; templates/peer_review/_grade.html renders it.
Escalation to staff is computed on read from the stored interval and the reviews' spread, so no
stored flag can go stale.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import cast

from core.models import User
from peer_review.aggregation import (
    AggregationResult,
    CalibrationResult,
    ReviewerEstimate,
    aggregate,
)
from peer_review.aggregation import (
    Review as ModelReview,
)
from peer_review.grading import GradeEstimate, PeerScore, median
from peer_review.models import (
    Assignment,
    CalibrationAnswer,
    CalibrationSample,
    Grade,
    GradeSource,
    Review,
    ReviewStatus,
    StaffGrade,
)
from peer_review.queries import load_rubric
from peer_review.rubric import Rubric

__all__ = [
    "CalibratedFit",
    "CalibratedGrader",
    "CalibrationScore",
    "DistributionBin",
    "InstructorOverview",
    "ReviewerRow",
    "StaffReviewItem",
    "describe_grade",
    "describe_reviewer",
    "grade_explanation",
    "grader_for",
    "instructor_overview",
    "needs_staff_review",
    "rubric_bounds",
]

INTERVAL = 0.9
# The model is fitted once an assignment has this many reviews from this many reviewers;
# below that, the median with an honest interval.
MIN_MODEL_REVIEWS = 10
MIN_MODEL_REVIEWERS = 4
# What one review's error is assumed to be at least (fraction of the scale) when the data
# cannot say, and the prior uncertainty of the peers' shared lean against staff.
REVIEW_NOISE_FLOOR = 0.12
OFFSET_SD = 0.1
# Escalation to staff, as fractions of the scale.
WIDE_INTERVAL = 0.2
WIDE_DISAGREEMENT = 0.4


def rubric_bounds(rubric: Rubric) -> tuple[float, float]:
    """The lowest and highest weighted total the rubric allows."""
    low = sum(c.weight * min((lv.points for lv in c.levels), default=0) for c in rubric.criteria)
    return float(low), float(rubric.max_score)


@dataclass(frozen=True, slots=True)
class CalibrationScore:
    """A reviewer's total on a calibration sample, with the instructor's reference total."""

    reviewer_id: int
    sample_id: int
    score: float
    reference: float


@dataclass(frozen=True, slots=True)
class CalibratedFit:
    """Every submission's grade (points) and every reviewer's estimate from one fit."""

    grades: dict[int, GradeEstimate]
    reviewers: dict[int, ReviewerEstimate]
    min_score: float
    max_score: float
    fitted: bool  # False: too few reviews, median fallback
    anchored: frozenset[int]
    peer_offset: float


class CalibratedGrader:
    """The Grader of peer_review/grading.py backed by peer_review/aggregation.py."""

    name = "calibrated"

    def __init__(
        self,
        *,
        anchors: Mapping[int, float] | None = None,
        calibration: Sequence[CalibrationScore] = (),
        interval: float = INTERVAL,
        min_model_reviews: int = MIN_MODEL_REVIEWS,
        min_model_reviewers: int = MIN_MODEL_REVIEWERS,
    ) -> None:
        self.anchors = dict(anchors or {})
        self.calibration = tuple(calibration)
        self.interval = interval
        self.min_model_reviews = min_model_reviews
        self.min_model_reviewers = min_model_reviewers
        self._cache: tuple[object, CalibratedFit] | None = None

    def grade(
        self, rubric: Rubric, reviews: Sequence[PeerScore], *, min_reviews: int
    ) -> dict[int, GradeEstimate]:
        """Grades of the submissions that have at least `min_reviews` reviews."""
        fit = self.fit(rubric, reviews)
        return {
            sid: estimate
            for sid, estimate in fit.grades.items()
            if estimate.review_count >= max(1, min_reviews)
        }

    def fit(self, rubric: Rubric, reviews: Sequence[PeerScore]) -> CalibratedFit:
        """One fit over the whole assignment; the last one is kept, so grading every
        submission of an assignment one by one fits the model once."""
        totals = tuple(
            sorted((r.submission_id, r.reviewer_id, rubric.score(r.points)) for r in reviews)
        )
        key = (rubric, totals)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        fit = self._fit(rubric, reviews)
        self._cache = (key, fit)
        return fit

    def _fit(self, rubric: Rubric, reviews: Sequence[PeerScore]) -> CalibratedFit:
        low, high = rubric_bounds(rubric)
        by_submission: dict[int, list[PeerScore]] = defaultdict(list)
        for review in reviews:
            by_submission[review.submission_id].append(review)
        per_criterion = {sid: _median_points(rubric, group) for sid, group in by_submission.items()}
        reviewers = {r.reviewer_id for r in reviews}
        anchors = {
            sid: min(max(float(v), low), high)
            for sid, v in self.anchors.items()
            if sid in by_submission
        }
        enough = (
            len(reviews) >= self.min_model_reviews and len(reviewers) >= self.min_model_reviewers
        )
        if high <= low or not reviews or not enough:
            return self._fallback(rubric, by_submission, per_criterion, low, high)
        result = aggregate(
            [
                ModelReview(
                    str(r.submission_id),
                    str(r.reviewer_id),
                    _clip(rubric.score(r.points), low, high),
                )
                for r in reviews
            ],
            anchors={str(k): v for k, v in anchors.items()},
            calibration=[
                CalibrationResult(
                    str(c.reviewer_id),
                    str(c.sample_id),
                    _clip(c.score, low, high),
                    _clip(c.reference, low, high),
                )
                for c in self.calibration
            ],
            min_score=low,
            max_score=high,
            interval=self.interval,
        )
        grades = {
            sid: GradeEstimate(
                submission_id=sid,
                per_criterion=per_criterion[sid],
                score=g.estimate,
                max_score=rubric.max_score,
                review_count=len(by_submission[sid]),
                low=g.low,
                high=g.high,
            )
            for sid, g in ((int(k), v) for k, v in result.submissions.items())
            if sid in by_submission
        }
        return CalibratedFit(
            grades=grades,
            reviewers=_reviewers(result),
            min_score=low,
            max_score=high,
            fitted=True,
            anchored=frozenset(anchors),
            peer_offset=result.peer_offset,
        )

    def _fallback(
        self,
        rubric: Rubric,
        by_submission: Mapping[int, list[PeerScore]],
        per_criterion: Mapping[int, dict[int, float]],
        low: float,
        high: float,
    ) -> CalibratedFit:
        """The median grade; the interval from the peers' spread, pooled over the assignment,
        never below a typical reviewer's noise, plus the unknown lean of peers against staff."""
        span = max(high - low, 1e-9)
        z = NormalDist().inv_cdf(0.5 + 0.5 * self.interval)
        totals = {sid: [rubric.score(r.points) for r in g] for sid, g in by_submission.items()}
        squares, dof = 0.0, 0
        for values in totals.values():
            if len(values) > 1:
                mean = sum(values) / len(values)
                squares += sum((v - mean) ** 2 for v in values)
                dof += len(values) - 1
        noise = max(math.sqrt(squares / dof) if dof else 0.0, REVIEW_NOISE_FLOOR * span)
        grades = {}
        for sid, group in by_submission.items():
            score = _clip(rubric.score(per_criterion[sid]), low, high)
            sd = math.sqrt(noise * noise / len(group) + (OFFSET_SD * span) ** 2)
            grades[sid] = GradeEstimate(
                submission_id=sid,
                per_criterion=per_criterion[sid],
                score=score,
                max_score=rubric.max_score,
                review_count=len(group),
                low=_clip(score - z * sd, low, high),
                high=_clip(score + z * sd, low, high),
            )
        return CalibratedFit(grades, {}, low, high, False, frozenset(), 0.0)


def _clip(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high))


def _median_points(rubric: Rubric, group: Sequence[PeerScore]) -> dict[int, float]:
    return {
        c.id: median([r.points[c.id] for r in group if c.id in r.points])
        for c in rubric.criteria
        if any(c.id in r.points for r in group)
    }


def _reviewers(result: AggregationResult) -> dict[int, ReviewerEstimate]:
    return {int(k): v for k, v in result.reviewers.items()}


# --- loading the inputs ---------------------------------------------------------------------


async def peer_scores(assignment: Assignment) -> list[PeerScore]:
    """The counted reviews of the assignment's current submissions (as recomputation sees)."""
    rows = await Review.filter(
        assignment_id=assignment.id, status=ReviewStatus.SUBMITTED, submission__is_current=True
    ).values("submission_id", "reviewer_id", "answers")
    return [
        PeerScore(
            r["submission_id"],
            r["reviewer_id"],
            {int(cid): float(a["points"]) for cid, a in r["answers"].items()},
        )
        for r in rows
    ]


async def grader_for(assignment: Assignment, rubric: Rubric | None = None) -> CalibratedGrader:
    """A CalibratedGrader with the assignment's staff grades as anchors (the latest per current
    submission) and its graded calibration samples as calibration observations."""
    rubric = rubric or await load_rubric(assignment.id)
    anchors: dict[int, float] = {}
    staff = await StaffGrade.filter(
        submission__assignment_id=assignment.id, submission__is_current=True
    ).order_by("id")
    for grade in staff:  # later grades replace earlier ones
        points = {int(cid): float(a["points"]) for cid, a in grade.answers.items()}
        anchors[grade.submission_id] = rubric.score(points)  # type: ignore[attr-defined]
    calibration: list[CalibrationScore] = []
    samples = {s.id: s for s in await CalibrationSample.filter(assignment_id=assignment.id)}
    answers = await CalibrationAnswer.filter(assignment_id=assignment.id).order_by("id")
    for answer in answers:
        sample = samples.get(answer.sample_id)  # type: ignore[attr-defined]
        if sample is None:
            continue
        given = _level_points(rubric, {int(k): int(v) for k, v in answer.levels.items()})
        reference = _level_points(rubric, sample.reference_levels())
        if given is None or reference is None:
            continue  # the rubric changed since: the answer no longer maps onto it
        calibration.append(
            CalibrationScore(
                answer.learner_id,  # type: ignore[attr-defined]
                sample.id,
                rubric.score(given),
                rubric.score(reference),
            )
        )
    return CalibratedGrader(anchors=anchors, calibration=calibration)


def _level_points(rubric: Rubric, levels: Mapping[int, int]) -> dict[int, float] | None:
    points: dict[int, float] = {}
    for criterion in rubric.criteria:
        level = criterion.level(levels.get(criterion.id, -1))
        if level is None:
            return None
        points[criterion.id] = float(level.points)
    return points


async def _fit(assignment: Assignment) -> tuple[Rubric, CalibratedGrader, CalibratedFit]:
    rubric = await load_rubric(assignment.id)
    grader = await grader_for(assignment, rubric)
    return rubric, grader, grader.fit(rubric, await peer_scores(assignment))


# --- in plain words -------------------------------------------------------------------------

_NUMBERS = ("no", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten")


def _points(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _count(n: int, word: str) -> str:
    name = _NUMBERS[n] if 0 < n < len(_NUMBERS) else str(n)
    return f"{name} {word}{'' if n == 1 else 'es' if word.endswith('s') else 's'}"


def describe_grade(
    *,
    percent: float | None,
    low_percent: float | None,
    high_percent: float | None,
    max_points: float,
    review_count: int,
    source: GradeSource | str | None,
    late_penalty_percent: int = 0,
) -> str:
    """A grade in plain words: points, the 90 % interval, and where the grade comes from."""
    if percent is None:
        if review_count:
            return (
                f"{_count(review_count, 'classmate')} reviewed your work so far; your grade "
                "appears once enough reviews are in."
            )
        return "Your work has no grade yet: it has not been reviewed."

    def pts(p: float) -> str:
        return _points(p * max_points / 100.0)

    total = _points(max_points)
    source = GradeSource(source) if source else None
    if source == GradeSource.OVERRIDE:
        return f"Your grade is {pts(percent)} of {total}, set by an instructor."
    if source == GradeSource.STAFF:
        text = f"Your grade is {pts(percent)} of {total}, given by a member of the course staff."
    else:
        text = f"Your grade is {pts(percent)} of {total}."
        if low_percent is not None and high_percent is not None:
            text += (
                f" We are 90% sure the grade staff would give is between {pts(low_percent)} "
                f"and {pts(high_percent)}."
            )
        reviewed = "reviewed" if review_count else "have reviewed"
        text += f" {_count(review_count, 'classmate')} {reviewed} your work"
        if review_count:
            text += (
                "; their scores were weighed by how closely each of them agrees with staff on "
                "the work staff graded."
            )
        else:
            text += "."
    if late_penalty_percent:
        text += f" It includes a late penalty of {late_penalty_percent}%."
    return text


async def grade_explanation(grade: Grade) -> str:
    """A stored grade in plain words ("Your grade is 11.2 of 14. We are 90% sure ...")."""
    rubric = await load_rubric(grade.assignment_id)
    shown = grade.final_percent
    low, high = grade.peer_low_percent, grade.peer_high_percent
    penalty = grade.late_penalty_percent or 0
    if shown is not None and low is not None and high is not None and penalty:
        low, high = low * (100 - penalty) / 100, high * (100 - penalty) / 100
    return describe_grade(
        percent=shown,
        low_percent=low,
        high_percent=high,
        max_points=rubric.max_score,
        review_count=grade.review_count,
        source=grade.source,
        late_penalty_percent=penalty,
    )


def describe_reviewer(
    estimate: ReviewerEstimate | None,
    *,
    anchored: bool,
    span: float,
    agreement: float | None,
    samples: int,
) -> str:
    """How a reviewer leans, in points, and how they agreed with the calibration samples."""
    parts: list[str] = []
    against = "staff" if anchored else "your classmates on average"
    if estimate is None or estimate.n_reviews + estimate.n_calibration == 0:
        parts.append("We cannot yet tell how your grading compares with " + against + ".")
    else:
        bias = estimate.bias
        close = abs(bias) < max(0.05 * span, 1.645 * estimate.bias_sd)
        if close:
            parts.append(f"You grade close to {against}.")
        else:
            way = "more generously" if bias > 0 else "more harshly"
            parts.append(f"You grade about {_points(abs(bias))} points {way} than {against}.")
    if samples:
        which = "calibration sample" if samples == 1 else f"{samples} calibration samples"
        parts.append(
            f"On the {which} you agreed with the instructor on "
            f"{round(100 * (agreement or 0.0))}% of the criteria."
        )
    return " ".join(parts)


async def reviewer_feedback(user: User, assignment: Assignment) -> str:
    """How `user` grades, from the model fitted over the assignment and their calibration."""
    _, grader, fit = await _fit(assignment)
    rates = cast(
        list[float],
        await CalibrationAnswer.filter(assignment_id=assignment.id, learner_id=user.id).values_list(
            "agreement_rate", flat=True
        ),
    )
    return describe_reviewer(
        fit.reviewers.get(user.id),
        anchored=fit.fitted and (bool(fit.anchored) or bool(grader.calibration)),
        span=fit.max_score - fit.min_score,
        agreement=sum(rates) / len(rates) if rates else None,
        samples=len(rates),
    )


# --- for staff ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaffReviewItem:
    """A peer-graded submission staff should look at, and why."""

    submission_id: int
    author_id: int
    percent: float | None
    low_percent: float | None
    high_percent: float | None
    review_range: float  # percentage points between the lowest and highest review
    reasons: tuple[str, ...]


async def needs_staff_review(assignment: Assignment) -> list[StaffReviewItem]:
    """Peer-graded submissions whose 90 % interval is wider than 20 % of the scale or whose
    reviews are more than 40 % of the scale apart, widest first. Computed on read from the
    stored grades and reviews; staff-graded and overridden ones are settled already."""
    grades = await Grade.filter(assignment_id=assignment.id, submission__is_current=True)
    spread: dict[int, list[float]] = defaultdict(list)
    rows = await Review.filter(
        assignment_id=assignment.id, status=ReviewStatus.SUBMITTED, submission__is_current=True
    ).values_list("submission_id", "percent")
    for sid, percent in cast(list[tuple[int, float | None]], rows):
        if percent is not None:
            spread[sid].append(percent)
    out: list[StaffReviewItem] = []
    for grade in grades:
        if grade.source in (GradeSource.STAFF, GradeSource.OVERRIDE):
            continue
        sid: int = grade.submission_id  # type: ignore[attr-defined]
        values = spread.get(sid, [])
        review_range = max(values) - min(values) if values else 0.0
        reasons: list[str] = []
        low, high = grade.peer_low_percent, grade.peer_high_percent
        if low is not None and high is not None and high - low > 100 * WIDE_INTERVAL:
            reasons.append(f"uncertain grade (90% interval {low:.0f} to {high:.0f}%)")
        if review_range > 100 * WIDE_DISAGREEMENT:
            reasons.append(f"reviews disagree ({min(values):.0f} to {max(values):.0f}%)")
        if reasons:
            out.append(
                StaffReviewItem(
                    sid,
                    grade.author_id,
                    grade.peer_percent,
                    low,
                    high,
                    review_range,
                    tuple(reasons),
                )
            )
    out.sort(key=lambda i: (-((i.high_percent or 0) - (i.low_percent or 0)), -i.review_range))
    return out


@dataclass(frozen=True, slots=True)
class DistributionBin:
    low: float  # percent, inclusive
    high: float  # percent, exclusive (the last bin includes 100)
    count: int

    @property
    def label(self) -> str:
        return f"{self.low:.0f}-{self.high:.0f}%"


@dataclass(frozen=True, slots=True)
class ReviewerRow:
    user_id: int
    name: str
    reliability: float  # 0-1: how much one of their reviews tells about the true grade
    bias: float  # points; positive is more generous than staff
    reviews: int
    calibration: int


@dataclass(frozen=True, slots=True)
class InstructorOverview:
    bins: list[DistributionBin]
    reviewers: list[ReviewerRow]  # least reliable first
    graded: int
    fitted: bool  # False: too few reviews for the model, grades are medians
    anchored: int  # staff-graded submissions the model is anchored on
    peer_offset: float  # points peers give above staff on average (0 without anchors)
    max_points: float
    flagged: list[StaffReviewItem]

    @property
    def largest_bin(self) -> int:
        return max((b.count for b in self.bins), default=0)


async def instructor_overview(assignment: Assignment, *, bins: int = 10) -> InstructorOverview:
    """What the charts of templates/peer_review/_grade.html draw: the distribution of final
    grades and every reviewer's estimated reliability and lean."""
    rubric, _, fit = await _fit(assignment)
    finals = cast(
        list[float | None],
        await Grade.filter(assignment_id=assignment.id, submission__is_current=True).values_list(
            "final_percent", flat=True
        ),
    )
    values = [v for v in finals if v is not None]
    width = 100.0 / bins
    counts = [0] * bins
    for v in values:
        counts[min(int(v // width), bins - 1)] += 1
    histogram = [DistributionBin(i * width, (i + 1) * width, n) for i, n in enumerate(counts)]
    users = (
        {u.id: u.display_name for u in await User.filter(id__in=list(fit.reviewers))}
        if fit.reviewers
        else {}
    )
    reviewers = sorted(
        (
            ReviewerRow(
                uid,
                users.get(uid, f"User {uid}"),
                e.reliability,
                e.bias,
                e.n_reviews,
                e.n_calibration,
            )
            for uid, e in fit.reviewers.items()
        ),
        key=lambda r: (r.reliability, r.name),
    )
    return InstructorOverview(
        bins=histogram,
        reviewers=reviewers,
        graded=len(values),
        fitted=fit.fitted,
        anchored=len(fit.anchored),
        peer_offset=fit.peer_offset,
        max_points=rubric.max_score,
        flagged=await needs_staff_review(assignment),
    )
