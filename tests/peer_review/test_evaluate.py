from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from peer_review.aggregation import Review
from peer_review.evaluate import (
    DataError,
    EvaluationReport,
    anchor_count,
    build_dataset,
    evaluate,
    format_report,
    read_reviews_csv,
    read_truth_csv,
    report_to_json,
)
from peer_review.simulate import simulate


@pytest.fixture(scope="module")
def report() -> EvaluationReport:
    course = simulate(1200, 3, seed=21)
    return evaluate(build_dataset(course.reviews, course.truth), anchors=0.1, repeats=4, seed=1)


def test_model_beats_baselines(report: EvaluationReport) -> None:
    agora, median, mean = (report.methods[k] for k in ("agora", "median", "mean"))
    assert agora.rmse < 0.85 * median.rmse
    assert agora.rmse < mean.rmse
    assert agora.mae < median.mae
    assert agora.within > median.within
    assert report.ratio == pytest.approx(agora.rmse / median.rmse)
    assert report.agora_beats_mean == report.repeats


def test_report_fields(report: EvaluationReport) -> None:
    assert report.n_submissions == 1200
    assert report.n_anchors == 120
    assert (report.min_score, report.max_score) == (0.0, 14.0)
    agora = report.methods["agora"]
    assert agora.coverage is not None and 0.8 <= agora.coverage <= 0.97
    assert agora.width is not None and 0 < agora.width < 14
    assert report.methods["median"].coverage is None
    assert report.methods["median"].width is None
    assert -1.5 < report.peer_offset < -0.3


def test_format_report_last_line(report: EvaluationReport) -> None:
    text = format_report(report)
    last = text.splitlines()[-1]
    assert re.fullmatch(r"agora_rmse/median_rmse=\d+\.\d{3}", last)
    assert last == f"agora_rmse/median_rmse={report.ratio:.3f}"
    assert "n/a" in text


def test_report_to_json(report: EvaluationReport) -> None:
    data = json.loads(json.dumps(report_to_json(report)))
    assert set(data["methods"]) == {"mean", "median", "agora"}
    assert data["methods"]["median"]["coverage"] is None
    assert data["agora_rmse/median_rmse"] == pytest.approx(report.ratio)


def test_anchor_count() -> None:
    assert anchor_count(0.1, 100) == 10
    assert anchor_count(2, 100) == 2
    assert anchor_count(0, 100) == 0
    for bad in (1.5, -1, 100, True):
        with pytest.raises(DataError):
            anchor_count(bad, 100)


def test_errors_are_measured_on_held_out_only() -> None:
    reviews = [
        Review(f"s{i}", f"r{(i + k) % 9}", float(i % 5 + k)) for i in range(30) for k in (0, 1)
    ]
    truth = {f"s{i}": float(i % 5) for i in range(30)}
    report = evaluate(build_dataset(reviews, truth), anchors=29, repeats=3)
    assert report.n_anchors == 29
    assert report.n_submissions - report.n_anchors == 1


def test_bounds_inferred_and_checked() -> None:
    reviews = [Review("a", "r", 3.0), Review("b", "r", 5.0)]
    data = build_dataset(reviews, {"a": 2.0, "b": 6.0})
    report = evaluate(data, anchors=0, repeats=1)
    assert (report.min_score, report.max_score) == (2.0, 6.0)
    with pytest.raises(DataError, match="outside"):
        evaluate(data, anchors=0, repeats=1, min_score=0, max_score=4)
    same = build_dataset([Review("a", "r", 3.0)], {"a": 3.0, "b": 3.0})
    with pytest.raises(DataError, match="min-score"):
        evaluate(same, anchors=0, repeats=1)


def test_unreviewed_submissions_are_skipped() -> None:
    data = build_dataset([Review("a", "r", 3.0), Review("b", "r", 4.0)], {"a": 3, "b": 4, "c": 1})
    assert data.n_unreviewed == 1
    assert data.submission_ids == ["a", "b"]
    text = format_report(evaluate(data, anchors=0, repeats=1, min_score=0, max_score=5))
    assert "1 without reviews skipped" in text


def test_unknown_submission() -> None:
    with pytest.raises(DataError, match="'zz'"):
        build_dataset([Review("zz", "r", 3.0)], {"a": 3.0})


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sub,rev,score\na,r,1\n", "header must contain"),
        ("", "header must contain"),
        ("submission_id,reviewer_id,score\n", "no reviews"),
        ("submission_id,reviewer_id,score\na,r,high\n", r"line 2: score 'high' is not a number"),
        ("submission_id,reviewer_id,score\na,r,nan\n", "not a finite number"),
        ("submission_id,reviewer_id,score\n,r,3\n", "submission_id is empty"),
        ("submission_id,reviewer_id,score\na,r\n", "score '' is not a number"),
    ],
)
def test_read_reviews_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_reviews_csv(_write(tmp_path / "r.csv", text))


def test_read_reviews_tolerates_spaces_bom_and_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "\ufeffsubmission_id, reviewer_id, score\n\na , r, 3.5\n")
    assert read_reviews_csv(path) == [Review("a", "r", 3.5)]


def test_read_truth_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="appears twice"):
        read_truth_csv(_write(tmp_path / "t.csv", "submission_id,truth\na,1\na,2\n"))
    with pytest.raises(DataError, match="header"):
        read_truth_csv(_write(tmp_path / "t.csv", "submission_id,grade\na,1\n"))
    with pytest.raises(DataError, match="cannot open"):
        read_truth_csv(tmp_path / "missing.csv")
