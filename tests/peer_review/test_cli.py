from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from peer_review.cli import peer


def _run(*args: str | int | Path) -> Result:
    return CliRunner().invoke(peer, [str(a) for a in args])


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("course")
    reviews, truth = folder / "reviews.csv", folder / "truth.csv"
    result = _run(
        "simulate", "--submissions", 600, "--reviews-per-submission", 3, "--seed", 5,
        "--out-reviews", reviews, "--out-truth", truth,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "600 truths" in result.output
    return reviews, truth


def test_evaluate_last_line(course: tuple[Path, Path]) -> None:
    reviews, truth = course
    result = _run("evaluate", "--reviews", reviews, "--truth", truth, "--repeats", 3)
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip("\n").splitlines()
    assert re.fullmatch(r"agora_rmse/median_rmse=\d+\.\d{3}", lines[-1])
    assert float(lines[-1].split("=")[1]) < 1.0
    assert any(line.startswith("agora ") for line in lines)
    assert "anchors: 60 per repeat" in result.output


def test_evaluate_with_anchor_count_and_bounds(course: tuple[Path, Path]) -> None:
    reviews, truth = course
    result = _run(
        "evaluate", "--reviews", reviews, "--truth", truth, "--anchors", "2", "--repeats", 2,
        "--min-score", 0, "--max-score", 14,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "anchors: 2 per repeat" in result.output


def test_evaluate_json(course: tuple[Path, Path]) -> None:
    reviews, truth = course
    result = _run("evaluate", "--reviews", reviews, "--truth", truth, "--repeats", 2, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["repeats"] == 2
    assert data["methods"]["agora"]["rmse"] < data["methods"]["median"]["rmse"]


@pytest.mark.parametrize(
    ("anchors", "message"), [("1.5", "must lie in [0, 1)"), ("lots", "neither a share")]
)
def test_bad_anchor_spec(course: tuple[Path, Path], anchors: str, message: str) -> None:
    reviews, truth = course
    result = _run("evaluate", "--reviews", reviews, "--truth", truth, "--anchors", anchors)
    assert result.exit_code == 2
    assert message in result.output


def _error(tmp_path: Path, reviews_text: str, truth_text: str, *extra: str) -> Result:
    reviews = tmp_path / "r.csv"
    truth = tmp_path / "t.csv"
    reviews.write_text(reviews_text)
    truth.write_text(truth_text)
    result = _run("evaluate", "--reviews", reviews, "--truth", truth, *extra)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result


GOOD_REVIEWS = "submission_id,reviewer_id,score\na,r1,3\nb,r1,5\nb,r2,6\n"
GOOD_TRUTH = "submission_id,truth\na,3\nb,6\n"


def test_bad_header(tmp_path: Path) -> None:
    result = _error(tmp_path, "sid,rid,score\na,r,3\n", GOOD_TRUTH)
    assert "--reviews" in result.output
    assert "header must contain submission_id,reviewer_id,score" in result.output


def test_non_numeric_score(tmp_path: Path) -> None:
    result = _error(tmp_path, GOOD_REVIEWS + "a,r2,seven\n", GOOD_TRUTH)
    assert "line 5: score 'seven' is not a number" in result.output


def test_bad_truth(tmp_path: Path) -> None:
    result = _error(tmp_path, GOOD_REVIEWS, "submission_id,truth\na,x\n")
    assert "--truth" in result.output
    assert "truth 'x' is not a number" in result.output


def test_unknown_submission(tmp_path: Path) -> None:
    result = _error(tmp_path, GOOD_REVIEWS + "zz,r1,4\n", GOOD_TRUTH)
    assert "missing from the truth: 'zz'" in result.output


def test_score_outside_given_bounds(tmp_path: Path) -> None:
    result = _error(tmp_path, GOOD_REVIEWS, GOOD_TRUTH, "--max-score", "5")
    assert "outside the score range" in result.output


def test_too_many_anchors(tmp_path: Path) -> None:
    result = _error(tmp_path, GOOD_REVIEWS, GOOD_TRUTH, "--anchors", "2")
    assert "nothing to evaluate" in result.output


def test_missing_file(tmp_path: Path) -> None:
    truth = tmp_path / "t.csv"
    truth.write_text(GOOD_TRUTH)
    result = _run("evaluate", "--reviews", tmp_path / "nope.csv", "--truth", truth)
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_simulate_rejects_empty_range(tmp_path: Path) -> None:
    result = _run(
        "simulate", "--submissions", 5, "--min-score", 3, "--max-score", 3,
        "--out-reviews", tmp_path / "r.csv", "--out-truth", tmp_path / "t.csv",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "must exceed --min-score" in result.output
