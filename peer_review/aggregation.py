"""Calibrated peer grading: true score + reviewer bias + reviewer-specific noise.

Each observed peer score is modelled as ``y = s[submission] + b[reviewer] + e`` with
``e ~ N(0, 1 / tau[reviewer])`` (model PG1 of Piech et al. 2013).  Priors keep thin data
sensible: ``s ~ N(mu, 1 / gamma)`` around the population mean, ``b ~ N(g, 1 / lam)`` around a
shared peer-vs-staff offset ``g`` that is itself estimated, and ``tau ~ Gamma(alpha, rate)``.
Staff grades (anchors) and calibration samples pin their true score, which is what identifies
``g``; without them ``g`` stays 0 and grades stay on the peers' scale.  The fit is mean-field
coordinate ascent (variational EM) with empirical-Bayes updates of ``mu``, ``gamma``, ``lam``
and ``rate``, vectorised over integer index arrays.  Estimates and interval ends are clipped to
the rubric bounds, which is the posterior of a true score that piles up at the maximum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

__all__ = [
    "AggregationResult",
    "CalibrationResult",
    "ModelFit",
    "ModelOptions",
    "Review",
    "ReviewerEstimate",
    "SubmissionGrade",
    "aggregate",
    "fit_arrays",
    "group_means",
    "group_medians",
    "mean_grades",
    "median_grades",
]


@dataclass(frozen=True, slots=True)
class Review:
    """One peer score given by a reviewer to a submission."""

    submission_id: str
    reviewer_id: str
    score: float


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """A reviewer's score on a calibration sample whose reference grade is known."""

    reviewer_id: str
    sample_id: str
    score: float
    reference: float


@dataclass(frozen=True, slots=True)
class SubmissionGrade:
    """Estimated grade of one submission with its credible interval."""

    estimate: float
    low: float
    high: float
    sd: float
    n_reviews: int
    anchored: bool


@dataclass(frozen=True, slots=True)
class ReviewerEstimate:
    """Estimated bias and precision of one reviewer."""

    bias: float
    bias_sd: float
    precision: float
    reliability: float
    n_reviews: int
    n_calibration: int


@dataclass(frozen=True, slots=True)
class AggregationResult:
    """Grades for every submission, estimates for every reviewer, and the fitted globals."""

    submissions: dict[str, SubmissionGrade]
    reviewers: dict[str, ReviewerEstimate]
    peer_offset: float
    peer_offset_sd: float
    population_mean: float
    population_sd: float
    iterations: int
    converged: bool


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """Tuning knobs of the model; the defaults are the ones the evaluation reports."""

    # Shape of the Gamma prior on reviewer precision: worth 2 * shape reviews at the typical
    # reviewer's precision, so a reviewer with 2-3 reviews is only partly judged on their own.
    precision_shape: float = 2.0
    # Weakly informative prior on the shared peer offset, as a fraction of the score range.
    offset_prior_sd: float = 0.1
    max_iterations: int = 200
    # Convergence tolerance on estimates, as a fraction of the score range.
    tolerance: float = 1e-3


@dataclass(frozen=True, slots=True)
class ModelFit:
    """Array-level result of :func:`fit_arrays`, indexed like its inputs."""

    estimate: FloatArray
    low: FloatArray
    high: FloatArray
    sd: FloatArray
    mean: FloatArray
    bias: FloatArray
    bias_sd: FloatArray
    precision: FloatArray
    reliability: FloatArray
    peer_offset: float
    peer_offset_sd: float
    population_mean: float
    population_sd: float
    iterations: int
    converged: bool
    reviews_per_item: IndexArray = field(repr=False)
    reviews_per_reviewer: IndexArray = field(repr=False)


def _bincount(index: IndexArray, weights: FloatArray, size: int) -> FloatArray:
    return np.bincount(index, weights=weights, minlength=size).astype(np.float64, copy=False)


def fit_arrays(
    item: IndexArray,
    reviewer: IndexArray,
    score: FloatArray,
    *,
    n_items: int,
    n_reviewers: int,
    anchor_items: IndexArray,
    anchor_values: FloatArray,
    min_score: float,
    max_score: float,
    interval: float = 0.9,
    population_items: BoolArray | None = None,
    options: ModelOptions | None = None,
) -> ModelFit:
    """Fit the model on integer-indexed observations; anchors pin their items' true scores."""
    opts = options or ModelOptions()
    item = np.asarray(item, dtype=np.intp)
    reviewer = np.asarray(reviewer, dtype=np.intp)
    y = np.asarray(score, dtype=np.float64)
    anchor_items = np.asarray(anchor_items, dtype=np.intp)
    anchor_values = np.asarray(anchor_values, dtype=np.float64)
    _check_arrays(item, reviewer, y, n_items, n_reviewers, anchor_items, anchor_values)
    _check_bounds(min_score, max_score, interval)
    if np.any(y < min_score) or np.any(y > max_score):
        raise ValueError("scores must lie within [min_score, max_score]")
    if np.any(anchor_values < min_score) or np.any(anchor_values > max_score):
        raise ValueError("anchor grades must lie within [min_score, max_score]")

    span = max_score - min_score
    var_floor = (1e-3 * span) ** 2
    anchored = np.zeros(n_items, dtype=np.bool_)
    anchored[anchor_items] = True
    pinned = np.zeros(n_items)
    pinned[anchor_items] = anchor_values
    free = ~anchored
    in_population = (
        np.ones(n_items, dtype=np.bool_)
        if population_items is None
        else np.asarray(population_items, dtype=np.bool_)
    )
    n_item_reviews = np.bincount(item, minlength=n_items)
    n_rev = np.bincount(reviewer, minlength=n_reviewers).astype(np.float64)
    on_anchor = anchored[item]
    has_anchor_reviews = bool(on_anchor.any())

    # Start from per-item means, the offset seen on anchored items, and the pooled spread.
    counts = n_item_reviews.astype(np.float64)
    centre = float(y.mean()) if y.size else 0.5 * (min_score + max_score)
    g = float(np.mean(y[on_anchor] - pinned[item[on_anchor]])) if has_anchor_reviews else 0.0
    m = _bincount(item, y, n_items) / np.maximum(counts, 1.0)
    m = np.where(anchored, pinned, np.where(counts > 0, m - g, centre - g))
    resid = y - m[item] - g
    pooled_var = max(float(np.mean(resid * resid)) if resid.size else 0.0, (0.05 * span) ** 2)
    e_tau = np.full(n_reviewers, 1.0 / pooled_var)
    alpha = opts.precision_shape
    prior_rate = alpha * pooled_var
    beta = np.full(n_reviewers, g)
    w = np.zeros(n_reviewers)
    v = np.zeros(n_items)
    ss = np.zeros(n_reviewers)
    pop = m[in_population]
    mu = float(pop.mean())
    gamma = 1.0 / max(float(pop.var()), (0.05 * span) ** 2)
    lam = 1.0 / (0.05 * span) ** 2
    g_prec = 1.0 / (opts.offset_prior_sd * span) ** 2 if opts.offset_prior_sd > 0 else 0.0

    tol = opts.tolerance * span
    converged = False
    iterations = 0
    while iterations < opts.max_iterations and not converged:
        iterations += 1
        m_prev = m
        tau_r = e_tau[reviewer]
        prec = gamma + _bincount(item, tau_r, n_items)
        m = (gamma * mu + _bincount(item, tau_r * (y - beta[reviewer]), n_items)) / prec
        m = np.where(anchored, pinned, m)
        v = np.where(anchored, 0.0, 1.0 / prec)

        b_prec = lam + _bincount(reviewer, tau_r, n_reviewers)
        beta = (lam * g + _bincount(reviewer, tau_r * (y - m[item]), n_reviewers)) / b_prec
        w = 1.0 / b_prec

        # Coordinate ascent crawls along the one direction that only anchored reviews can
        # see (every free score up, every bias and the offset down), so step along it exactly.
        if has_anchor_reviews:
            r_anchor = y[on_anchor] - pinned[item[on_anchor]] - beta[reviewer[on_anchor]]
            t_anchor = tau_r[on_anchor]
            shift = (g_prec * g - float(np.dot(t_anchor, r_anchor))) / (
                float(t_anchor.sum()) + g_prec
            )
            m = np.where(anchored, m, m + shift)
            beta = beta - shift
            g -= shift
            mu += shift

        fitted = y - m[item] - beta[reviewer]
        ss = _bincount(reviewer, fitted * fitted + v[item] + w[reviewer], n_reviewers)
        e_tau = (alpha + 0.5 * n_rev) / (prior_rate + 0.5 * ss)

        # Empirical-Bayes updates; without anchors the offset is not identified and stays 0.
        if has_anchor_reviews or g_prec == 0.0:
            g = float(lam * beta.sum() / (lam * n_reviewers + g_prec))
        dev = beta - g
        lam = n_reviewers / max(float(np.sum(dev * dev + w)), n_reviewers * var_floor)
        pop_m = m[in_population]
        mu = float(pop_m.mean())
        pop_dev = pop_m - mu
        gamma = 1.0 / max(float(np.mean(pop_dev * pop_dev + v[in_population])), var_floor)
        # Rate update for a fixed shape: prior mean precision = mean reviewer precision, which
        # the few very noisy reviewers cannot drag down the way a pooled variance would.
        prior_rate = alpha / float(np.mean(e_tau))
        converged = float(np.max(np.abs(m - m_prev), initial=0.0)) < tol

    # The mean-field variance 1/prec trusts the point estimates of precision and bias; widen it
    # with the posterior mean of each reviewer's noise variance, the bias uncertainty, and the
    # uncertainty of the shared offset.
    tau_r = e_tau[reviewer]
    prec = gamma + _bincount(item, tau_r, n_items)
    weight = tau_r / prec[item]
    shape_post = alpha + 0.5 * n_rev
    noise_var = (prior_rate + 0.5 * ss) / np.maximum(shape_post - 1.0, 0.5)
    per_review = tau_r * tau_r * (noise_var[reviewer] + w[reviewer])
    spread = (gamma + _bincount(item, per_review, n_items)) / (prec * prec)
    g_info = g_prec + float(np.sum(1.0 / (1.0 / lam + 1.0 / tau_r[on_anchor])))
    g_var = 1.0 / g_info if g_info > 0 else 0.0
    offset_share = _bincount(item, weight, n_items)
    sd = np.sqrt(np.where(free, spread + offset_share * offset_share * g_var, 0.0))
    z = NormalDist().inv_cdf(0.5 + 0.5 * interval)
    return ModelFit(
        estimate=np.clip(m, min_score, max_score),
        low=np.clip(m - z * sd, min_score, max_score),
        high=np.clip(m + z * sd, min_score, max_score),
        sd=sd,
        mean=m,
        bias=beta,
        bias_sd=np.sqrt(w),
        precision=e_tau,
        reliability=e_tau / (e_tau + gamma),
        peer_offset=g,
        peer_offset_sd=math.sqrt(g_var),
        population_mean=mu,
        population_sd=1.0 / math.sqrt(gamma),
        iterations=iterations,
        converged=converged,
        reviews_per_item=n_item_reviews,
        reviews_per_reviewer=n_rev.astype(np.intp),
    )


def _check_bounds(min_score: float, max_score: float, interval: float) -> None:
    if not (math.isfinite(min_score) and math.isfinite(max_score)) or min_score >= max_score:
        raise ValueError("min_score must be finite and below max_score")
    if not 0.0 < interval < 1.0:
        raise ValueError("interval must be strictly between 0 and 1")


def _check_arrays(
    item: IndexArray,
    reviewer: IndexArray,
    score: FloatArray,
    n_items: int,
    n_reviewers: int,
    anchor_items: IndexArray,
    anchor_values: FloatArray,
) -> None:
    if not item.shape == reviewer.shape == score.shape or item.ndim != 1:
        raise ValueError("item, reviewer and score must be 1-d arrays of equal length")
    if anchor_items.shape != anchor_values.shape:
        raise ValueError("anchor_items and anchor_values must have equal length")
    if n_items == 0:
        raise ValueError("nothing to aggregate: no reviews and no anchors")
    if item.size and (item.min() < 0 or item.max() >= n_items):
        raise ValueError("item index out of range")
    if reviewer.size and (reviewer.min() < 0 or reviewer.max() >= n_reviewers):
        raise ValueError("reviewer index out of range")
    if anchor_items.size and (anchor_items.min() < 0 or anchor_items.max() >= n_items):
        raise ValueError("anchor index out of range")
    if not np.all(np.isfinite(score)) or not np.all(np.isfinite(anchor_values)):
        raise ValueError("scores and anchor grades must be finite numbers")


class _Indexer:
    """Assigns dense integer indices to ids in first-seen order."""

    __slots__ = ("ids", "index")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.ids: list[str] = []

    def __call__(self, key: str) -> int:
        found = self.index.get(key)
        if found is None:
            found = len(self.ids)
            self.index[key] = found
            self.ids.append(key)
        return found


def aggregate(
    reviews: Iterable[Review],
    *,
    anchors: Mapping[str, float] | None = None,
    calibration: Sequence[CalibrationResult] = (),
    min_score: float,
    max_score: float,
    interval: float = 0.9,
    options: ModelOptions | None = None,
) -> AggregationResult:
    """Estimate submission grades and reviewer bias/precision from peer reviews."""
    review_list = list(reviews)
    anchor_map = dict(anchors or {})
    if not review_list and not anchor_map:
        raise ValueError("nothing to aggregate: no reviews and no anchors")
    submissions = _Indexer()
    reviewers = _Indexer()
    item = np.fromiter((submissions(r.submission_id) for r in review_list), np.intp)
    who = np.fromiter((reviewers(r.reviewer_id) for r in review_list), np.intp)
    score = np.fromiter((r.score for r in review_list), np.float64)
    for sub_id in anchor_map:
        submissions(sub_id)
    n_submissions = len(submissions.ids)

    # Calibration samples become extra anchored items that only the model sees.
    samples = _Indexer()
    cal_item = np.fromiter((samples(c.sample_id) for c in calibration), np.intp)
    cal_who = np.fromiter((reviewers(c.reviewer_id) for c in calibration), np.intp)
    cal_score = np.fromiter((c.score for c in calibration), np.float64)
    references: dict[int, float] = {}
    for c in calibration:
        previous = references.setdefault(samples.index[c.sample_id], c.reference)
        if previous != c.reference:
            raise ValueError(f"calibration sample {c.sample_id!r} has conflicting references")
    n_items = n_submissions + len(samples.ids)
    population = np.zeros(n_items, dtype=np.bool_)
    population[:n_submissions] = True

    anchor_items = np.fromiter(
        [submissions.index[k] for k in anchor_map] + [n_submissions + k for k in references],
        np.intp,
    )
    anchor_values = np.fromiter(
        [float(x) for x in anchor_map.values()] + list(references.values()), np.float64
    )
    n_cal = np.bincount(cal_who, minlength=len(reviewers.ids))
    fit = fit_arrays(
        np.concatenate([item, n_submissions + cal_item]),
        np.concatenate([who, cal_who]),
        np.concatenate([score, cal_score]),
        n_items=n_items,
        n_reviewers=len(reviewers.ids),
        anchor_items=anchor_items,
        anchor_values=anchor_values,
        min_score=min_score,
        max_score=max_score,
        interval=interval,
        population_items=population,
        options=options,
    )
    anchored = np.zeros(n_items, dtype=np.bool_)
    anchored[anchor_items] = True
    estimate = fit.estimate.tolist()
    low = fit.low.tolist()
    high = fit.high.tolist()
    sd = fit.sd.tolist()
    per_item = fit.reviews_per_item.tolist()
    is_anchor = anchored.tolist()
    graded = {
        sub_id: SubmissionGrade(
            estimate=estimate[i],
            low=low[i],
            high=high[i],
            sd=sd[i],
            n_reviews=per_item[i],
            anchored=is_anchor[i],
        )
        for i, sub_id in enumerate(submissions.ids)
    }
    bias = fit.bias.tolist()
    bias_sd = fit.bias_sd.tolist()
    precision = fit.precision.tolist()
    reliability = fit.reliability.tolist()
    per_reviewer = fit.reviews_per_reviewer.tolist()
    cal_counts = n_cal.tolist()
    reviewer_estimates = {
        rev_id: ReviewerEstimate(
            bias=bias[j],
            bias_sd=bias_sd[j],
            precision=precision[j],
            reliability=reliability[j],
            n_reviews=per_reviewer[j] - cal_counts[j],
            n_calibration=cal_counts[j],
        )
        for j, rev_id in enumerate(reviewers.ids)
    }
    return AggregationResult(
        submissions=graded,
        reviewers=reviewer_estimates,
        peer_offset=fit.peer_offset,
        peer_offset_sd=fit.peer_offset_sd,
        population_mean=fit.population_mean,
        population_sd=fit.population_sd,
        iterations=fit.iterations,
        converged=fit.converged,
    )


def group_means(item: IndexArray, score: FloatArray, n_items: int) -> FloatArray:
    """Per-item mean score; NaN for items without scores."""
    counts = np.bincount(item, minlength=n_items).astype(np.float64)
    sums = _bincount(item, score, n_items)
    out = np.full(n_items, np.nan)
    has = counts > 0
    out[has] = sums[has] / counts[has]
    return out


def group_medians(item: IndexArray, score: FloatArray, n_items: int) -> FloatArray:
    """Per-item median score; NaN for items without scores."""
    order = np.lexsort((score, item))
    sorted_scores = score[order]
    counts = np.bincount(item, minlength=n_items)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.full(n_items, np.nan)
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    out[has] = 0.5 * (sorted_scores[lo] + sorted_scores[hi])
    return out


def _baseline(reviews: Iterable[Review], median: bool) -> dict[str, float]:
    ids = _Indexer()
    review_list = list(reviews)
    item = np.fromiter((ids(r.submission_id) for r in review_list), np.intp)
    score = np.fromiter((r.score for r in review_list), np.float64)
    values = (group_medians if median else group_means)(item, score, len(ids.ids))
    return dict(zip(ids.ids, values.tolist(), strict=True))


def median_grades(reviews: Iterable[Review]) -> dict[str, float]:
    """Plain per-submission median of peer scores."""
    return _baseline(reviews, median=True)


def mean_grades(reviews: Iterable[Review]) -> dict[str, float]:
    """Plain per-submission mean of peer scores."""
    return _baseline(reviews, median=False)
