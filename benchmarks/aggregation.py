"""Time the peer-grading model on 100k reviews of 30k submissions against the plain median.

Prints figures and ratios measured in this run; it never passes or fails.
Run: python benchmarks/aggregation.py [--submissions N] [--reviews N] [--repeats K]
(--reviews must not exceed the ~3.6 reviews per submission the simulation produces)
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import Figure, report  # noqa: E402
from peer_review.aggregation import aggregate, fit_arrays, group_medians, median_grades  # noqa: E402
from peer_review.simulate import simulate  # noqa: E402


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """Best wall-clock time of several runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Simulate a large course and time the model and the median baseline on it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--submissions", type=int, default=30_000)
    parser.add_argument("--reviews", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    # Four assigned reviews per submission, less the missing ones, thinned to the target count.
    course = simulate(args.submissions, 4, seed=0)
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(course.reviews), size=args.reviews, replace=False))
    reviews = [course.reviews[i] for i in keep.tolist()]
    reviewed = sorted({r.submission_id for r in reviews})
    picked = rng.choice(len(reviewed), size=len(reviewed) // 10, replace=False).tolist()
    anchors = {reviewed[i]: course.truth[reviewed[i]] for i in picked}
    n_subs = len({r.submission_id for r in reviews})
    n_revs = len({r.reviewer_id for r in reviews})
    print(
        f"{len(reviews)} reviews, {n_subs} submissions, {n_revs} reviewers, {len(anchors)} anchors"
    )

    sub_index: dict[str, int] = {}
    rev_index: dict[str, int] = {}
    item = np.array([sub_index.setdefault(r.submission_id, len(sub_index)) for r in reviews])
    who = np.array([rev_index.setdefault(r.reviewer_id, len(rev_index)) for r in reviews])
    score = np.array([r.score for r in reviews])
    for key in anchors:
        sub_index.setdefault(key, len(sub_index))
    anchor_items = np.array([sub_index[k] for k in anchors])
    anchor_values = np.array(list(anchors.values()))

    result = aggregate(reviews, anchors=anchors, min_score=0, max_score=14)
    model = best_of(
        args.repeats, lambda: aggregate(reviews, anchors=anchors, min_score=0, max_score=14)
    )
    core = best_of(
        args.repeats,
        lambda: fit_arrays(
            item, who, score, n_items=len(sub_index), n_reviewers=len(rev_index),
            anchor_items=anchor_items, anchor_values=anchor_values, min_score=0, max_score=14,
        ),
    )  # fmt: skip
    median = best_of(args.repeats, lambda: median_grades(reviews))
    median_core = best_of(args.repeats, lambda: group_medians(item, score, len(sub_index)))

    print(
        f"aggregate (ids in, dataclasses out): {model:.3f} s "
        f"({result.iterations} iterations, converged={result.converged})"
    )
    print(f"fit_arrays (index arrays):           {core:.3f} s")
    print(f"median_grades (ids in, dict out):    {median:.3f} s")
    print(f"group_medians (index arrays):        {median_core:.4f} s")
    print(f"aggregate/median_grades={model / median:.1f}")
    print(f"fit_arrays/group_medians={core / median_core:.1f}")
    where = f"{len(reviews):,} reviews"
    report(
        [
            Figure(
                f"peer grade aggregation ({where})",
                model,
                "s",
                "plain median",
                median,
                better="lower",
                note=f"{result.iterations} iterations, converged={result.converged}",
            ),
            Figure(
                f"aggregation model on index arrays ({where})",
                core,
                "s",
                "median on arrays",
                median_core,
                better="lower",
            ),
        ],
        args.results_json,
    )


if __name__ == "__main__":
    main()
