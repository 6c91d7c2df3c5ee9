"""Synthetic peer-review data with the structure seen in real courses."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peer_review.aggregation import Review

__all__ = ["SimulatedCourse", "simulate", "write_reviews_csv", "write_truth_csv"]


@dataclass(frozen=True, slots=True)
class SimulatedCourse:
    """Peer reviews, the staff-grade truth, and the hidden parameters that produced them."""

    reviews: list[Review]
    truth: dict[str, float]
    reviewer_bias: dict[str, float]
    reviewer_noise_sd: dict[str, float]
    generous: frozenset[str]
    peer_offset: float
    min_score: float
    max_score: float


def simulate(
    n_submissions: int,
    reviews_per_submission: int = 3,
    n_reviewers: int | None = None,
    *,
    seed: int = 0,
    min_score: int = 0,
    max_score: int = 14,
    peer_offset: float = -0.06,
    bias_scale: float = 0.04,
    noise_scale: float = 0.07,
    generous_share: float = 0.04,
    careless_share: float = 0.06,
    missing_share: float = 0.1,
) -> SimulatedCourse:
    """Generate integer peer scores and truths; scale parameters are fractions of the range."""
    if n_submissions < 1:
        raise ValueError("n_submissions must be at least 1")
    if reviews_per_submission < 1:
        raise ValueError("reviews_per_submission must be at least 1")
    if max_score <= min_score:
        raise ValueError("max_score must exceed min_score")
    span = float(max_score - min_score)
    slots = n_submissions * reviews_per_submission
    if n_reviewers is None:
        # Everyone submits and grades a few others; missing reviews leave ~2-3 each.
        n_reviewers = max(reviews_per_submission, round(slots / 2.7))
    if n_reviewers < 1:
        raise ValueError("n_reviewers must be at least 1")
    rng = np.random.default_rng(seed)

    # True scores pile up towards the maximum: a skewed shortfall below a level just above it.
    shortfall = rng.gamma(shape=1.3, scale=0.2 * span, size=n_submissions)
    truth = np.clip(np.round(max_score + 0.07 * span - shortfall), min_score, max_score)

    bias = bias_scale * span * rng.standard_t(df=3, size=n_reviewers)
    noise_sd = noise_scale * span * rng.lognormal(mean=0.0, sigma=0.5, size=n_reviewers)
    careless = rng.random(n_reviewers) < careless_share
    noise_sd[careless] = 0.25 * span
    generous = rng.random(n_reviewers) < generous_share

    # Balanced loads: each reviewer fills floor/ceil(slots / n_reviewers) assignment slots.
    load_order = np.arange(slots) % n_reviewers
    assigned = rng.permutation(load_order).reshape(n_submissions, reviews_per_submission)
    keep = rng.random(assigned.shape) >= missing_share
    keep[:, 0] = True
    for k in range(1, reviews_per_submission):
        # A reviewer never sees the same submission twice.
        keep[:, k] &= np.all(assigned[:, :k] != assigned[:, k : k + 1], axis=1)
    sub_idx, col = np.nonzero(keep)
    who = assigned[sub_idx, col]

    latent = (
        truth[sub_idx]
        + peer_offset * span
        + bias[who]
        + noise_sd[who] * rng.standard_normal(who.size)
    )
    scores = np.clip(np.round(latent), min_score, max_score)
    scores[generous[who]] = max_score

    sub_names = [f"s{i:06d}" for i in range(n_submissions)]
    rev_names = [f"r{j:06d}" for j in range(n_reviewers)]
    reviews = [
        Review(sub_names[i], rev_names[j], float(s))
        for i, j, s in zip(sub_idx.tolist(), who.tolist(), scores.tolist(), strict=True)
    ]
    return SimulatedCourse(
        reviews=reviews,
        truth=dict(zip(sub_names, truth.tolist(), strict=True)),
        reviewer_bias=dict(zip(rev_names, bias.tolist(), strict=True)),
        reviewer_noise_sd=dict(zip(rev_names, noise_sd.tolist(), strict=True)),
        generous=frozenset(name for name, g in zip(rev_names, generous.tolist(), strict=True) if g),
        peer_offset=peer_offset * span,
        min_score=float(min_score),
        max_score=float(max_score),
    )


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_reviews_csv(path: Path, reviews: Iterable[Review]) -> None:
    """Write reviews as ``submission_id,reviewer_id,score``."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["submission_id", "reviewer_id", "score"])
        writer.writerows((r.submission_id, r.reviewer_id, _fmt(r.score)) for r in reviews)


def write_truth_csv(path: Path, truth: Mapping[str, float]) -> None:
    """Write true grades as ``submission_id,truth``."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["submission_id", "truth"])
        writer.writerows((sub_id, _fmt(value)) for sub_id, value in truth.items())
