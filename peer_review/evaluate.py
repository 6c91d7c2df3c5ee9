"""Evaluation harness: hide most truths, reveal a few as staff grades, score the estimates."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from peer_review.aggregation import (
    FloatArray,
    IndexArray,
    ModelOptions,
    Review,
    fit_arrays,
    group_means,
    group_medians,
)

__all__ = [
    "DataError",
    "Dataset",
    "EvaluationReport",
    "MethodMetrics",
    "anchor_count",
    "build_dataset",
    "evaluate",
    "format_report",
    "read_reviews_csv",
    "read_truth_csv",
    "report_to_json",
]

METHODS = ("mean", "median", "agora")
REVIEW_COLUMNS = ("submission_id", "reviewer_id", "score")
TRUTH_COLUMNS = ("submission_id", "truth")


class DataError(ValueError):
    """Input data that cannot be evaluated, with a message meant for the user."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """Reviews and truths indexed by dense integers; submission i has truth[i]."""

    submission_ids: list[str]
    reviewer_ids: list[str]
    item: IndexArray
    reviewer: IndexArray
    score: FloatArray
    truth: FloatArray
    n_unreviewed: int


@dataclass(frozen=True, slots=True)
class MethodMetrics:
    """Errors of one method on non-anchored submissions, averaged over repeats."""

    rmse: float
    mae: float
    within: float
    coverage: float | None
    width: float | None


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """Everything `format_report` prints."""

    methods: dict[str, MethodMetrics]
    n_submissions: int
    n_unreviewed: int
    n_reviews: int
    n_reviewers: int
    n_anchors: int
    repeats: int
    seed: int
    min_score: float
    max_score: float
    interval: float
    within_tolerance: float
    agora_beats_mean: int
    peer_offset: float

    @property
    def ratio(self) -> float:
        """Agora's RMSE relative to the per-submission median's."""
        median = self.methods["median"].rmse
        return self.methods["agora"].rmse / median if median > 0 else math.nan


def _open_rows(path: Path, columns: tuple[str, ...]) -> Iterable[tuple[int, dict[str, str]]]:
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror})") from exc
    with fh:
        reader = csv.DictReader(fh)
        try:
            header = [name.strip() for name in reader.fieldnames or []]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a readable CSV file ({exc})") from exc
        missing = [c for c in columns if c not in header]
        if missing:
            found = ",".join(header) if header else "nothing"
            raise DataError(
                f"{path}: header must contain {','.join(columns)}; found {found} "
                f"(missing {','.join(missing)})"
            )
        reader.fieldnames = header
        try:
            for row in reader:
                if any((value or "").strip() for value in row.values()):
                    yield reader.line_num, row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a readable CSV file ({exc})") from exc


def _number(path: Path, line: int, column: str, text: str | None) -> float:
    raw = (text or "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{path}, line {line}: {column} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}, line {line}: {column} {raw!r} is not a finite number")
    return value


def _identifier(path: Path, line: int, column: str, text: str | None) -> str:
    value = (text or "").strip()
    if not value:
        raise DataError(f"{path}, line {line}: {column} is empty")
    return value


def read_reviews_csv(path: Path) -> list[Review]:
    """Read ``submission_id,reviewer_id,score`` rows."""
    reviews = [
        Review(
            _identifier(path, line, "submission_id", row.get("submission_id")),
            _identifier(path, line, "reviewer_id", row.get("reviewer_id")),
            _number(path, line, "score", row.get("score")),
        )
        for line, row in _open_rows(path, REVIEW_COLUMNS)
    ]
    if not reviews:
        raise DataError(f"{path}: no reviews")
    return reviews


def read_truth_csv(path: Path) -> dict[str, float]:
    """Read ``submission_id,truth`` rows."""
    truth: dict[str, float] = {}
    for line, row in _open_rows(path, TRUTH_COLUMNS):
        sub_id = _identifier(path, line, "submission_id", row.get("submission_id"))
        if sub_id in truth:
            raise DataError(f"{path}, line {line}: submission {sub_id!r} appears twice")
        truth[sub_id] = _number(path, line, "truth", row.get("truth"))
    if not truth:
        raise DataError(f"{path}: no truth rows")
    return truth


def build_dataset(reviews: Iterable[Review], truth: Mapping[str, float]) -> Dataset:
    """Index reviews against the truth; submissions nobody reviewed are left out."""
    review_list = list(reviews)
    unknown = sorted({r.submission_id for r in review_list} - truth.keys())
    if unknown:
        shown = ", ".join(repr(s) for s in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise DataError(f"reviews mention submissions missing from the truth: {shown}{more}")
    if not review_list:
        raise DataError("no reviews")
    sub_index: dict[str, int] = {}
    rev_index: dict[str, int] = {}
    item = np.fromiter(
        (sub_index.setdefault(r.submission_id, len(sub_index)) for r in review_list), np.intp
    )
    who = np.fromiter(
        (rev_index.setdefault(r.reviewer_id, len(rev_index)) for r in review_list), np.intp
    )
    score = np.fromiter((r.score for r in review_list), np.float64)
    submission_ids = list(sub_index)
    return Dataset(
        submission_ids=submission_ids,
        reviewer_ids=list(rev_index),
        item=item,
        reviewer=who,
        score=score,
        truth=np.fromiter((truth[s] for s in submission_ids), np.float64),
        n_unreviewed=len(truth) - len(submission_ids),
    )


def anchor_count(anchors: float | int, n_submissions: int) -> int:
    """Number of anchors: an int is a count, a float in [0, 1) a share of the submissions."""
    if isinstance(anchors, bool):
        raise DataError("anchors must be a share in [0, 1) or a whole count")
    if isinstance(anchors, int):
        count = anchors
    elif 0.0 <= anchors < 1.0:
        count = round(anchors * n_submissions)
    else:
        raise DataError("anchors must be a share in [0, 1) or a whole count")
    if count < 0:
        raise DataError("anchors must not be negative")
    if count >= n_submissions:
        raise DataError(
            f"{count} anchors leave nothing to evaluate among {n_submissions} reviewed submissions"
        )
    return count


def _metrics(
    estimate: FloatArray,
    truth: FloatArray,
    tolerance: float,
    low: FloatArray | None = None,
    high: FloatArray | None = None,
) -> NDArray[np.float64]:
    err = estimate - truth
    row = [
        math.sqrt(float(np.mean(err * err))),
        float(np.mean(np.abs(err))),
        float(np.mean(np.abs(err) <= tolerance + 1e-9)),
        math.nan,
        math.nan,
    ]
    if low is not None and high is not None:
        row[3] = float(np.mean((low <= truth) & (truth <= high)))
        row[4] = float(np.mean(high - low))
    return np.array(row)


def evaluate(
    data: Dataset,
    *,
    anchors: float | int = 0.1,
    repeats: int = 20,
    seed: int = 0,
    min_score: float | None = None,
    max_score: float | None = None,
    interval: float = 0.9,
    options: ModelOptions | None = None,
) -> EvaluationReport:
    """Compare mean, median and the model over repeated random draws of anchors."""
    if repeats < 1:
        raise DataError("repeats must be at least 1")
    lo = float(min(data.score.min(), data.truth.min())) if min_score is None else min_score
    hi = float(max(data.score.max(), data.truth.max())) if max_score is None else max_score
    if not lo < hi:
        raise DataError(f"score range [{lo:g}, {hi:g}] is empty; pass --min-score and --max-score")
    for name, values in (("score", data.score), ("truth", data.truth)):
        if float(values.min()) < lo or float(values.max()) > hi:
            raise DataError(f"a {name} lies outside the score range [{lo:g}, {hi:g}]")
    n = len(data.submission_ids)
    count = anchor_count(anchors, n)
    tolerance = 0.1 * (hi - lo)
    rng = np.random.default_rng(seed)

    means = group_means(data.item, data.score, n)
    medians = group_medians(data.item, data.score, n)
    counts = np.bincount(data.item, minlength=n).astype(np.float64)
    # The mean's interval: normal, with the within-submission spread pooled over submissions.
    resid = data.score - means[data.item]
    dof = float(np.sum(np.maximum(counts - 1.0, 0.0)))
    pooled_sd = math.sqrt(float(np.sum(resid * resid)) / dof) if dof > 0 else 0.0
    half = NormalDist().inv_cdf(0.5 + 0.5 * interval) * pooled_sd / np.sqrt(counts)
    mean_low = np.clip(means - half, lo, hi)
    mean_high = np.clip(means + half, lo, hi)

    rows: dict[str, list[NDArray[np.float64]]] = {name: [] for name in METHODS}
    wins = 0
    offsets = []
    for _ in range(repeats):
        chosen = rng.choice(n, size=count, replace=False)
        fit = fit_arrays(
            data.item,
            data.reviewer,
            data.score,
            n_items=n,
            n_reviewers=len(data.reviewer_ids),
            anchor_items=chosen,
            anchor_values=data.truth[chosen],
            min_score=lo,
            max_score=hi,
            interval=interval,
            options=options,
        )
        held_out = np.ones(n, dtype=np.bool_)
        held_out[chosen] = False
        truth = data.truth[held_out]
        rows["mean"].append(
            _metrics(means[held_out], truth, tolerance, mean_low[held_out], mean_high[held_out])
        )
        rows["median"].append(_metrics(medians[held_out], truth, tolerance))
        rows["agora"].append(
            _metrics(
                fit.estimate[held_out], truth, tolerance, fit.low[held_out], fit.high[held_out]
            )
        )
        wins += int(rows["agora"][-1][0] <= rows["mean"][-1][0])
        offsets.append(fit.peer_offset)

    methods = {}
    for name, per_repeat in rows.items():
        avg = np.mean(np.array(per_repeat), axis=0)
        methods[name] = MethodMetrics(
            rmse=float(avg[0]),
            mae=float(avg[1]),
            within=float(avg[2]),
            coverage=None if math.isnan(avg[3]) else float(avg[3]),
            width=None if math.isnan(avg[4]) else float(avg[4]),
        )
    return EvaluationReport(
        methods=methods,
        n_submissions=n,
        n_unreviewed=data.n_unreviewed,
        n_reviews=int(data.score.size),
        n_reviewers=len(data.reviewer_ids),
        n_anchors=count,
        repeats=repeats,
        seed=seed,
        min_score=lo,
        max_score=hi,
        interval=interval,
        within_tolerance=tolerance,
        agora_beats_mean=wins,
        peer_offset=float(np.mean(offsets)),
    )


def _cell(value: float | None, width: int) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.3f}"


def format_report(report: EvaluationReport) -> str:
    """Plain-text table; the last line is ``agora_rmse/median_rmse=<ratio>``."""
    level = f"{round(100 * report.interval)}%"
    skipped = f" ({report.n_unreviewed} without reviews skipped)" if report.n_unreviewed else ""
    lines = [
        f"submissions: {report.n_submissions}{skipped}, reviews: {report.n_reviews}, "
        f"reviewers: {report.n_reviewers}, scale: [{report.min_score:g}, {report.max_score:g}]",
        f"anchors: {report.n_anchors} per repeat, repeats: {report.repeats}, seed: {report.seed}; "
        f"errors on the {report.n_submissions - report.n_anchors} non-anchored submissions",
        "",
        f"{'method':<8}{'RMSE':>8}{'MAE':>8}{'within':>9}{'cover':>8}{'width':>8}",
    ]
    for name in METHODS:
        m = report.methods[name]
        lines.append(
            f"{name:<8}{m.rmse:>8.3f}{m.mae:>8.3f}{m.within:>9.3f}"
            f"{_cell(m.coverage, 8)}{_cell(m.width, 8)}"
        )
    lines += [
        "",
        f"within: share within {report.within_tolerance:g} points (10% of the scale); "
        f"cover/width: {level} interval",
        f"agora at least as good as the mean in {report.agora_beats_mean}/{report.repeats} "
        f"repeats; fitted peer offset {report.peer_offset:+.3f}",
        f"agora_rmse/median_rmse={report.ratio:.3f}",
    ]
    return "\n".join(lines)


def report_to_json(report: EvaluationReport) -> dict[str, Any]:
    """JSON-ready dictionary of the report."""
    return {
        "submissions": report.n_submissions,
        "unreviewed_submissions": report.n_unreviewed,
        "reviews": report.n_reviews,
        "reviewers": report.n_reviewers,
        "anchors": report.n_anchors,
        "repeats": report.repeats,
        "seed": report.seed,
        "min_score": report.min_score,
        "max_score": report.max_score,
        "interval": report.interval,
        "within_tolerance": report.within_tolerance,
        "methods": {name: asdict(m) for name, m in report.methods.items()},
        "agora_beats_mean": report.agora_beats_mean,
        "peer_offset": report.peer_offset,
        "agora_rmse/median_rmse": None if math.isnan(report.ratio) else report.ratio,
    }
