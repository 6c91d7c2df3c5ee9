"""``agora peer``: evaluate the grading model and generate synthetic courses."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["peer"]


def _parse_anchors(ctx: click.Context, param: click.Parameter, value: str) -> float | int:
    """A share of submissions in [0, 1) like ``0.1``, or a whole count like ``2``."""
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        share = float(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a share like 0.1 nor a count like 2", ctx, param
        ) from None
    if not 0.0 <= share < 1.0:
        raise click.BadParameter(
            f"share {text} must lie in [0, 1); use a whole number for a count", ctx, param
        )
    return share


_CSV_IN = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)
_CSV_OUT = click.Path(dir_okay=False, writable=True, path_type=Path)


@click.group(name="peer")
def peer() -> None:
    """Calibrated peer grading tools."""


@peer.command(name="evaluate")
@click.option(
    "--reviews",
    "reviews_path",
    type=_CSV_IN,
    required=True,
    help="CSV with submission_id,reviewer_id,score.",
)
@click.option(
    "--truth", "truth_path", type=_CSV_IN, required=True, help="CSV with submission_id,truth."
)
@click.option(
    "--anchors",
    type=str,
    callback=_parse_anchors,
    default="0.1",
    show_default=True,
    help="Share of submissions revealed as staff grades, or a whole count.",
)
@click.option("--repeats", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--min-score", type=float, default=None, help="Default: lowest score in the data.")
@click.option("--max-score", type=float, default=None, help="Default: highest score in the data.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def evaluate_command(
    reviews_path: Path,
    truth_path: Path,
    anchors: float | int,
    repeats: int,
    seed: int,
    min_score: float | None,
    max_score: float | None,
    as_json: bool,
) -> None:
    """Compare the model with the per-submission mean and median against known truths."""
    # Imported here, as in simulate: NumPy and the model would otherwise load at every start
    # of every `agora` command.
    from peer_review.evaluate import (
        DataError,
        build_dataset,
        evaluate,
        format_report,
        read_reviews_csv,
        read_truth_csv,
        report_to_json,
    )

    try:
        reviews = read_reviews_csv(reviews_path)
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="--reviews") from None
    try:
        truth = read_truth_csv(truth_path)
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="--truth") from None
    try:
        data = build_dataset(reviews, truth)
        report = evaluate(
            data,
            anchors=anchors,
            repeats=repeats,
            seed=seed,
            min_score=min_score,
            max_score=max_score,
        )
    except DataError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report_to_json(report), sort_keys=True))
    else:
        click.echo(format_report(report))


@peer.command(name="simulate")
@click.option("--submissions", type=click.IntRange(min=1), required=True)
@click.option("--reviews-per-submission", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--reviewers",
    type=click.IntRange(min=1),
    default=None,
    help="Default: enough for 2-3 reviews each.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--min-score", type=int, default=0, show_default=True)
@click.option("--max-score", type=int, default=14, show_default=True)
@click.option("--out-reviews", type=_CSV_OUT, required=True)
@click.option("--out-truth", type=_CSV_OUT, required=True)
def simulate_command(
    submissions: int,
    reviews_per_submission: int,
    reviewers: int | None,
    seed: int,
    min_score: int,
    max_score: int,
    out_reviews: Path,
    out_truth: Path,
) -> None:
    """Write a synthetic course: peer reviews and the staff-grade truth."""
    from peer_review.simulate import simulate, write_reviews_csv, write_truth_csv

    if max_score <= min_score:
        raise click.BadParameter("must exceed --min-score", param_hint="--max-score")
    course = simulate(
        submissions,
        reviews_per_submission,
        reviewers,
        seed=seed,
        min_score=min_score,
        max_score=max_score,
    )
    try:
        write_reviews_csv(out_reviews, course.reviews)
        write_truth_csv(out_truth, course.truth)
    except OSError as exc:
        raise click.FileError(str(exc.filename), hint=exc.strerror) from None
    click.echo(
        f"wrote {len(course.reviews)} reviews by {len(course.reviewer_bias)} reviewers "
        f"to {out_reviews} and {len(course.truth)} truths to {out_truth}"
    )
