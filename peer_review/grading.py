"""Turning completed peer reviews into a grade, behind one interface.

Pure, no database. `Grader` is the extension point: the outbox handler that recomputes grades
(peer_review/tasks.py) only knows this protocol. `MedianGrader` is what Open Response
Assessment (ORA2) does: per criterion, the median of the points peers gave, the mean of the
two middle values rounded up when their number is even; the grade is the weighted sum.
peer_review/calibrated.py's `CalibratedGrader` fits peer_review/aggregation.py's model over
the same inputs (which is why a grader sees every review of the assignment rather than one
submission's) and adds a 90 % interval (`low`, `high`); it is what recomputation uses.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from peer_review.rubric import Rubric

__all__ = ["GradeEstimate", "Grader", "MedianGrader", "PeerScore", "default_grader", "median"]


@dataclass(frozen=True, slots=True)
class PeerScore:
    """One completed, counted review: points per criterion id."""

    submission_id: int
    reviewer_id: int
    points: Mapping[int, float]


@dataclass(frozen=True, slots=True)
class GradeEstimate:
    submission_id: int
    per_criterion: Mapping[int, float]
    score: float
    max_score: float
    review_count: int
    # A credible interval for the grade staff would give, in points, when the grader has one.
    low: float | None = None
    high: float | None = None

    @property
    def percent(self) -> float:
        return self._percent(self.score)

    @property
    def low_percent(self) -> float | None:
        return None if self.low is None else self._percent(self.low)

    @property
    def high_percent(self) -> float | None:
        return None if self.high is None else self._percent(self.high)

    def _percent(self, points: float) -> float:
        return 100.0 * points / self.max_score if self.max_score > 0 else 0.0


class Grader(Protocol):
    name: str

    def grade(
        self, rubric: Rubric, reviews: Sequence[PeerScore], *, min_reviews: int
    ) -> dict[int, GradeEstimate]:
        """Grades of the submissions that have at least `min_reviews` reviews."""
        ...


def median(values: Sequence[float]) -> float:
    """ORA2's median: the middle value, or the mean of the two middle ones rounded up."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return float(math.ceil((ordered[middle - 1] + ordered[middle]) / 2))


class MedianGrader:
    name = "median"

    def grade(
        self, rubric: Rubric, reviews: Sequence[PeerScore], *, min_reviews: int
    ) -> dict[int, GradeEstimate]:
        by_submission: dict[int, list[PeerScore]] = defaultdict(list)
        for review in reviews:
            by_submission[review.submission_id].append(review)
        out: dict[int, GradeEstimate] = {}
        for submission_id, group in by_submission.items():
            if len(group) < max(1, min_reviews):
                continue
            per_criterion = {
                c.id: median([r.points[c.id] for r in group if c.id in r.points])
                for c in rubric.criteria
                if any(c.id in r.points for r in group)
            }
            out[submission_id] = GradeEstimate(
                submission_id=submission_id,
                per_criterion=per_criterion,
                score=rubric.score(per_criterion),
                max_score=rubric.max_score,
                review_count=len(group),
            )
        return out


def default_grader() -> Grader:
    return MedianGrader()
