from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from peer_review.evaluate import read_reviews_csv, read_truth_csv
from peer_review.simulate import SimulatedCourse, simulate, write_reviews_csv, write_truth_csv


@pytest.fixture(scope="module")
def course() -> SimulatedCourse:
    return simulate(2000, 3, seed=4)


def test_same_seed_same_data() -> None:
    assert simulate(50, seed=1) == simulate(50, seed=1)
    assert simulate(50, seed=1).reviews != simulate(50, seed=2).reviews


def test_scores_are_integers_within_bounds(course: SimulatedCourse) -> None:
    scores = np.array([r.score for r in course.reviews])
    truth = np.array(list(course.truth.values()))
    for values in (scores, truth):
        assert np.all(values == np.round(values))
        assert values.min() >= 0 and values.max() <= 14


def test_truth_is_skewed_towards_a_ceiling(course: SimulatedCourse) -> None:
    truth = np.array(list(course.truth.values()))
    assert 0.15 < np.mean(truth == 14) < 0.45
    assert np.median(truth) > 7 + 2


def test_peers_grade_lower_than_staff(course: SimulatedCourse) -> None:
    gaps = [r.score - course.truth[r.submission_id] for r in course.reviews]
    assert -1.5 < float(np.mean(gaps)) < -0.2
    assert course.peer_offset == pytest.approx(-0.06 * 14)


def test_assignment_structure(course: SimulatedCourse) -> None:
    pairs = [(r.submission_id, r.reviewer_id) for r in course.reviews]
    assert len(pairs) == len(set(pairs))
    per_submission = Counter(r.submission_id for r in course.reviews)
    assert set(per_submission) == set(course.truth)
    assert max(per_submission.values()) <= 3
    assert len(course.reviews) < 3 * 2000  # some reviews are missing
    per_reviewer = Counter(r.reviewer_id for r in course.reviews)
    assert max(per_reviewer.values()) <= 3
    assert 2.0 <= float(np.mean(list(per_reviewer.values()))) <= 3.0


def test_heavy_tailed_reviewers(course: SimulatedCourse) -> None:
    assert course.generous
    for r in course.reviews:
        if r.reviewer_id in course.generous:
            assert r.score == 14
    noise = np.array(list(course.reviewer_noise_sd.values()))
    assert noise.max() > 3 * float(np.median(noise))
    bias = np.array(list(course.reviewer_bias.values()))
    assert np.abs(bias).max() > 4 * float(np.median(np.abs(bias)))


def test_other_scales_and_reviewer_counts() -> None:
    course = simulate(40, 2, n_reviewers=5, seed=3, min_score=1, max_score=5)
    assert {r.reviewer_id for r in course.reviews} <= set(course.reviewer_bias)
    assert len(course.reviewer_bias) == 5
    assert all(1 <= r.score <= 5 for r in course.reviews)
    assert all(1 <= t <= 5 for t in course.truth.values())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_submissions": 0},
        {"n_submissions": 5, "reviews_per_submission": 0},
        {"n_submissions": 5, "n_reviewers": 0},
        {"n_submissions": 5, "min_score": 3, "max_score": 3},
    ],
)
def test_invalid_arguments(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        simulate(**kwargs)


def test_csv_round_trip(tmp_path: Path) -> None:
    course = simulate(30, seed=2)
    write_reviews_csv(tmp_path / "r.csv", course.reviews)
    write_truth_csv(tmp_path / "t.csv", course.truth)
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == "submission_id,reviewer_id,score"
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "submission_id,truth"
    assert read_reviews_csv(tmp_path / "r.csv") == course.reviews
    assert read_truth_csv(tmp_path / "t.csv") == course.truth
