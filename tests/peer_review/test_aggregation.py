from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer_review.aggregation import (
    CalibrationResult,
    Review,
    aggregate,
    fit_arrays,
    group_means,
    group_medians,
    mean_grades,
    median_grades,
)
from peer_review.simulate import SimulatedCourse, simulate


def _structured(
    seed: int = 0,
    n_submissions: int = 300,
    biases: tuple[float, ...] = (2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    noise: tuple[float, ...] = (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 3.0),
    offset: float = 0.0,
) -> tuple[list[Review], dict[str, float]]:
    """Continuous scores on a wide scale, four reviewers per submission, no clipping."""
    rng = np.random.default_rng(seed)
    truth = {f"s{i}": float(rng.uniform(30, 70)) for i in range(n_submissions)}
    reviews = []
    for sub_id, value in truth.items():
        for j in rng.choice(len(biases), size=4, replace=False).tolist():
            score = value + offset + biases[j] + noise[j] * float(rng.standard_normal())
            reviews.append(Review(sub_id, f"r{j}", score))
    return reviews, truth


def _anchors(truth: dict[str, float], share: float, seed: int = 1) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    ids = sorted(truth)
    picked = rng.choice(len(ids), size=round(share * len(ids)), replace=False)
    return {ids[i]: truth[ids[i]] for i in picked.tolist()}


def _rmse(estimates: dict[str, float], truth: dict[str, float], skip: set[str]) -> float:
    keys = [k for k in truth if k not in skip]
    err = np.array([estimates[k] - truth[k] for k in keys])
    return math.sqrt(float(np.mean(err * err)))


@pytest.fixture(scope="module")
def course() -> SimulatedCourse:
    return simulate(1500, 3, seed=11)


def test_recovers_reviewer_bias_and_noise_with_anchors() -> None:
    reviews, truth = _structured()
    result = aggregate(reviews, anchors=_anchors(truth, 0.2), min_score=0, max_score=100)
    assert result.reviewers["r0"].bias == pytest.approx(2.0, abs=0.3)
    for j in range(1, 7):
        assert abs(result.reviewers[f"r{j}"].bias) < 0.3
    noisy = result.reviewers["r7"]
    calm = result.reviewers["r1"]
    assert noisy.precision < calm.precision / 4
    assert 0.0 < noisy.reliability < calm.reliability < 1.0
    assert result.converged


def test_estimates_shared_peer_offset() -> None:
    reviews, truth = _structured(biases=(0.0,) * 8, noise=(1.0,) * 8, offset=-3.0)
    result = aggregate(reviews, anchors=_anchors(truth, 0.1), min_score=0, max_score=100)
    assert result.peer_offset == pytest.approx(-3.0, abs=0.3)
    assert result.peer_offset_sd < 0.3
    anchored = _anchors(truth, 0.1)
    estimates = {k: g.estimate for k, g in result.submissions.items()}
    assert _rmse(estimates, truth, set(anchored)) < 0.8


def test_anchors_are_pinned_exactly() -> None:
    reviews, truth = _structured(n_submissions=60)
    anchors = _anchors(truth, 0.25)
    result = aggregate(reviews, anchors=anchors, min_score=0, max_score=100)
    for sub_id, value in anchors.items():
        grade = result.submissions[sub_id]
        assert grade.anchored
        assert grade.estimate == value
        assert grade.low == grade.high == value
    assert not any(g.anchored for k, g in result.submissions.items() if k not in anchors)


def test_anchor_without_reviews_is_reported() -> None:
    reviews = [Review("a", "r1", 5.0), Review("a", "r2", 7.0)]
    result = aggregate(reviews, anchors={"b": 9.0}, min_score=0, max_score=10)
    assert result.submissions["b"] == pytest.approx(result.submissions["b"])
    assert result.submissions["b"].estimate == 9.0
    assert result.submissions["b"].n_reviews == 0
    assert result.submissions["a"].n_reviews == 2


def test_calibration_informs_reviewer_bias() -> None:
    reviews, truth = _structured(biases=(0.0,) * 8, n_submissions=120)
    # A newcomer with two peer reviews who scored calibration samples 4 points too high.
    reviews += [Review(k, "new", truth[k] + 4.0) for k in ("s1", "s2")]
    calibration = [
        CalibrationResult("new", f"cal{k}", ref + 4.0 + 0.3 * (-1) ** k, ref)
        for k, ref in enumerate([40.0, 50.0, 60.0, 45.0, 55.0, 65.0])
    ]
    anchors = _anchors(truth, 0.1)
    plain = aggregate(reviews, anchors=anchors, min_score=0, max_score=100)
    calibrated = aggregate(
        reviews, anchors=anchors, calibration=calibration, min_score=0, max_score=100
    )
    assert 3.0 < calibrated.reviewers["new"].bias < 4.5
    assert calibrated.reviewers["new"].bias > plain.reviewers["new"].bias + 0.5
    assert calibrated.reviewers["new"].n_calibration == 6
    assert calibrated.reviewers["new"].n_reviews == 2
    assert not any(k.startswith("cal") for k in calibrated.submissions)
    # Without calibration two off-by-4 scores look like noise; with it, like a steady bias.
    assert calibrated.reviewers["new"].precision > 3 * plain.reviewers["new"].precision


def test_calibration_alone_identifies_offset() -> None:
    reviews, _ = _structured(biases=(0.0,) * 8, noise=(1.0,) * 8, offset=-2.0, n_submissions=150)
    rng = np.random.default_rng(9)
    calibration = [
        CalibrationResult(f"r{j}", f"cal{k}", ref - 2.0 + float(rng.standard_normal()), ref)
        for j in range(8)
        for k, ref in enumerate([35.0, 50.0, 65.0])
    ]
    result = aggregate(reviews, calibration=calibration, min_score=0, max_score=100)
    assert result.peer_offset == pytest.approx(-2.0, abs=0.5)


def test_conflicting_calibration_references_rejected() -> None:
    calibration = [
        CalibrationResult("r1", "c", 5.0, 6.0),
        CalibrationResult("r2", "c", 5.0, 7.0),
    ]
    with pytest.raises(ValueError, match="conflicting"):
        aggregate([Review("a", "r1", 5.0)], calibration=calibration, min_score=0, max_score=10)


def test_beats_median_and_covers_on_simulated_course(course: SimulatedCourse) -> None:
    anchors = _anchors(course.truth, 0.1)
    result = aggregate(course.reviews, anchors=anchors, min_score=0, max_score=14)
    estimates = {k: g.estimate for k, g in result.submissions.items()}
    model = _rmse(estimates, course.truth, set(anchors))
    median = _rmse(median_grades(course.reviews), course.truth, set(anchors))
    assert model < 0.85 * median
    free = [k for k in course.truth if k not in anchors]
    covered = [
        result.submissions[k].low <= course.truth[k] <= result.submissions[k].high for k in free
    ]
    assert 0.82 <= float(np.mean(covered)) <= 0.97
    assert result.peer_offset == pytest.approx(course.peer_offset, abs=0.35)


@pytest.mark.parametrize("n_anchors", [0, 2])
def test_few_anchors_not_worse_than_mean(course: SimulatedCourse, n_anchors: int) -> None:
    # Averaged over anchor draws, as the evaluation harness reports it: a single draw of two
    # anchors can mislead the offset as easily as it can inform it.
    ids = sorted(course.truth)
    rng = np.random.default_rng(3)
    model, mean = [], []
    for _ in range(5):
        picked = rng.choice(len(ids), size=n_anchors, replace=False).tolist()
        anchors = {ids[i]: course.truth[ids[i]] for i in picked}
        result = aggregate(course.reviews, anchors=anchors, min_score=0, max_score=14)
        estimates = {k: g.estimate for k, g in result.submissions.items()}
        model.append(_rmse(estimates, course.truth, set(anchors)))
        mean.append(_rmse(mean_grades(course.reviews), course.truth, set(anchors)))
    assert np.mean(model) <= np.mean(mean)


def test_intervals_at_the_ceiling_stay_in_bounds() -> None:
    reviews = [Review(f"s{i}", f"r{(i + k) % 30}", 10.0) for i in range(30) for k in range(3)]
    result = aggregate(reviews, anchors={"s0": 10.0, "s1": 10.0}, min_score=0, max_score=10)
    for grade in result.submissions.values():
        assert 0.0 <= grade.low <= grade.estimate <= grade.high <= 10.0
        assert grade.high == 10.0


reviews_strategy = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 5), st.integers(0, 10).map(float)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=reviews_strategy, anchor=st.one_of(st.none(), st.integers(0, 10).map(float)))
def test_intervals_within_bounds_and_contain_estimate(
    rows: list[tuple[int, int, float]], anchor: float | None
) -> None:
    reviews = [Review(f"s{s}", f"r{r}", y) for s, r, y in rows]
    anchors = {} if anchor is None else {reviews[0].submission_id: anchor}
    result = aggregate(reviews, anchors=anchors, min_score=0, max_score=10)
    assert set(result.submissions) == {r.submission_id for r in reviews}
    for grade in result.submissions.values():
        assert math.isfinite(grade.estimate) and math.isfinite(grade.sd)
        assert 0.0 <= grade.low <= grade.estimate <= grade.high <= 10.0
    for reviewer in result.reviewers.values():
        assert math.isfinite(reviewer.bias)
        assert reviewer.precision > 0
        assert 0.0 < reviewer.reliability < 1.0


def test_single_review() -> None:
    result = aggregate([Review("a", "r", 7.0)], min_score=0, max_score=10)
    grade = result.submissions["a"]
    assert grade.estimate == pytest.approx(7.0)
    assert 0.0 <= grade.low < 7.0 < grade.high <= 10.0
    assert result.reviewers["r"].n_reviews == 1


def test_all_scores_identical() -> None:
    reviews = [Review(f"s{i}", f"r{(i + k) % 7}", 6.0) for i in range(20) for k in range(3)]
    result = aggregate(reviews, min_score=0, max_score=10)
    for grade in result.submissions.values():
        assert grade.estimate == pytest.approx(6.0, abs=1e-6)
        assert grade.low <= 6.0 <= grade.high


def test_reviewer_with_single_review_is_shrunk() -> None:
    reviews, truth = _structured(n_submissions=80)
    reviews.append(Review("s0", "lonely", truth["s0"] + 10.0))
    result = aggregate(reviews, anchors=_anchors(truth, 0.2), min_score=0, max_score=100)
    lonely = result.reviewers["lonely"]
    assert lonely.n_reviews == 1
    assert 0.0 < lonely.bias < 10.0
    assert lonely.bias_sd > result.reviewers["r1"].bias_sd


def test_no_anchors_uses_peer_scale() -> None:
    reviews, truth = _structured(biases=(0.0,) * 8, noise=(1.0,) * 8, offset=-3.0)
    result = aggregate(reviews, min_score=0, max_score=100)
    assert result.peer_offset == 0.0
    means = mean_grades(reviews)
    gaps = [result.submissions[k].estimate - means[k] for k in truth]
    assert abs(float(np.mean(gaps))) < 0.3


def test_empty_input_raises() -> None:
    with pytest.raises(ValueError, match="nothing to aggregate"):
        aggregate([], min_score=0, max_score=10)


@pytest.mark.parametrize(
    ("reviews", "kwargs", "message"),
    [
        ([Review("a", "r", 5.0)], {"min_score": 10, "max_score": 0}, "min_score"),
        ([Review("a", "r", 5.0)], {"min_score": 0, "max_score": 0}, "min_score"),
        ([Review("a", "r", 11.0)], {"min_score": 0, "max_score": 10}, "within"),
        ([Review("a", "r", math.nan)], {"min_score": 0, "max_score": 10}, "finite"),
        (
            [Review("a", "r", 5.0)],
            {"min_score": 0, "max_score": 10, "anchors": {"a": 12.0}},
            "anchor",
        ),
        ([Review("a", "r", 5.0)], {"min_score": 0, "max_score": 10, "interval": 1.0}, "interval"),
    ],
)
def test_invalid_input_raises(
    reviews: list[Review], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        aggregate(reviews, **kwargs)  # type: ignore[arg-type]


def test_fit_arrays_rejects_bad_indices() -> None:
    with pytest.raises(ValueError, match="out of range"):
        fit_arrays(
            np.array([0, 3]),
            np.array([0, 0]),
            np.array([1.0, 2.0]),
            n_items=2,
            n_reviewers=1,
            anchor_items=np.array([], dtype=np.intp),
            anchor_values=np.array([]),
            min_score=0,
            max_score=10,
        )


def test_baselines() -> None:
    reviews = [
        Review("a", "r1", 1.0),
        Review("a", "r2", 9.0),
        Review("a", "r3", 2.0),
        Review("b", "r1", 4.0),
        Review("b", "r2", 6.0),
    ]
    assert median_grades(reviews) == {"a": 2.0, "b": 5.0}
    assert mean_grades(reviews) == {"a": pytest.approx(4.0), "b": pytest.approx(5.0)}


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 5), st.floats(-100, 100, allow_nan=False)), min_size=1)
)
def test_group_statistics_match_numpy(rows: list[tuple[int, float]]) -> None:
    item = np.array([r[0] for r in rows], dtype=np.intp)
    score = np.array([r[1] for r in rows])
    medians = group_medians(item, score, 6)
    means = group_means(item, score, 6)
    for k in range(6):
        picked = score[item == k]
        if picked.size:
            assert medians[k] == pytest.approx(float(np.median(picked)))
            assert means[k] == pytest.approx(float(np.mean(picked)))
        else:
            assert math.isnan(medians[k]) and math.isnan(means[k])
