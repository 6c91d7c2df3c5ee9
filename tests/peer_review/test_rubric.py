"""Rubric enforcement: the rubric an instructor writes, and the answers a reviewer sends.

The server decides what a complete review is: exactly one level per criterion, the comments
the rubric demands (long enough, real words), an overall comment; an incomplete one is
answered with one message per field and nothing is written.
"""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from peer_review import actions
from peer_review.models import Review, ReviewStatus
from peer_review.queries import load_rubric
from peer_review.rubric import (
    CommentRule,
    CriterionSpec,
    CriterionView,
    LevelSpec,
    LevelView,
    RawAnswer,
    Rubric,
    agreement,
    answers_from_form,
    answers_from_json,
    answers_to_json,
    check_answers,
    check_rubric,
)
from tests.peer_review.factories import COMMENT, Cast, Clock, make_assignment, submit_all


def levels(criterion_id: int, points: list[int]) -> tuple[LevelView, ...]:
    return tuple(LevelView(criterion_id * 10 + i, i, p, f"L{i}") for i, p in enumerate(points))


RUBRIC = Rubric(
    (
        CriterionView(1, "Argument", 2.0, levels(1, [0, 1, 2, 3]), CommentRule.BELOW_LEVEL, 2),
        CriterionView(2, "Sources", 1.0, levels(2, [0, 2, 4]), CommentRule.ALWAYS),
        CriterionView(3, "Clarity", 1.0, levels(3, [0, 1])),
    )
)
GOOD = {
    1: RawAnswer((13,), ""),
    2: RawAnswer((22,), COMMENT),
    3: RawAnswer((31,), ""),
}


def check(answers: dict[int, RawAnswer], overall: str = COMMENT) -> dict[str, str]:
    return check_answers(RUBRIC, answers, overall, comment_min_chars=20).errors


def test_a_complete_review_passes_and_scores_by_weight() -> None:
    result = check_answers(RUBRIC, GOOD, COMMENT, comment_min_chars=20)
    assert result.ok
    assert result.points() == {1: 3.0, 2: 4.0, 3: 1.0}
    assert RUBRIC.max_score == 2 * 3 + 4 + 1
    assert RUBRIC.percent(result.points()) == 100.0


def test_every_criterion_needs_exactly_one_of_its_own_levels() -> None:
    errors = check({**GOOD, 1: RawAnswer(()), 3: RawAnswer((30, 31))})
    assert set(errors) == {"level-1", "level-3"}
    assert "exactly one" in errors["level-3"]
    errors = check({**GOOD, 1: RawAnswer((22,))})  # a level of another criterion
    assert set(errors) == {"level-1"}
    assert set(check({k: v for k, v in GOOD.items() if k != 3})) == {"level-3"}
    # The same level sent twice is still one level.
    assert check({**GOOD, 3: RawAnswer((31, 31))}) == {}


def test_comments_are_required_always_or_below_a_level() -> None:
    errors = check({**GOOD, 2: RawAnswer((22,), "")})
    assert set(errors) == {"comment-2"} and "explain this criterion" in errors["comment-2"]
    # Argument asks for a comment below "Good" (position 2): "Weak" needs one, "Good" does not.
    errors = check({**GOOD, 1: RawAnswer((11,), "")})
    assert set(errors) == {"comment-1"} and "explain this score" in errors["comment-1"]
    assert check({**GOOD, 1: RawAnswer((12,), "")}) == {}
    assert check({**GOOD, 1: RawAnswer((11,), COMMENT)}) == {}


def test_required_comments_have_a_minimum_length_and_real_words() -> None:
    assert set(check({**GOOD, 2: RawAnswer((22,), "too short")})) == {"comment-2"}
    filler = "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    assert set(check({**GOOD, 2: RawAnswer((22,), filler)})) == {"comment-2"}
    assert set(check({**GOOD, 2: RawAnswer((22,), "aaaaaaa bbbbbbbb ccccccc dddddd")})) == {
        "comment-2"
    }


def test_an_overall_comment_is_required() -> None:
    assert set(check(GOOD, overall="")) == {"overall"}
    assert set(check(GOOD, overall="ok " * 3)) == {"overall"}


def test_all_problems_come_back_together() -> None:
    errors = check({2: RawAnswer((22,), ""), 99: RawAnswer((1,), "")}, overall="")
    assert set(errors) == {"answers", "level-1", "comment-2", "level-3", "overall"}
    assert all(message.strip() for message in errors.values())


def test_form_fields_and_drafts_round_trip() -> None:
    answers, overall = answers_from_form(
        [("level-1", "13"), ("comment-1", "fine"), ("level-3", "30"), ("level-3", "31"),
         ("level-2", "x"), ("overall", "Done."), ("csrf_token", "abc"), ("level-", "1")]
    )  # fmt: skip
    assert answers == {
        1: RawAnswer((13,), "fine"),
        2: RawAnswer((0,), ""),
        3: RawAnswer((30, 31), ""),
    }
    assert overall == "Done."
    assert set(check(answers, overall)) >= {"level-2", "level-3"}
    assert answers_from_json(answers_to_json(answers, overall)) == (answers, overall)
    assert answers_from_json(None) == ({}, "")


def test_agreement_counts_level_positions_apart() -> None:
    found = agreement(RUBRIC, {1: 13, 2: 20, 3: 31}, {1: 11, 2: 20, 3: 30})
    assert [(a.criterion_id, a.distance, a.agrees) for a in found] == [
        (1, 2, False), (2, 0, True), (3, 1, False)
    ]  # fmt: skip


def test_instructors_rubrics_are_checked_field_by_field() -> None:
    good = [CriterionSpec("  Argument  ", [LevelSpec(0, "No"), LevelSpec(2, "Yes")])]
    cleaned, errors = check_rubric(good)
    assert errors == {} and cleaned[0].title == "Argument"
    _, errors = check_rubric([])
    assert set(errors) == {"criteria"}
    _, errors = check_rubric(
        [
            CriterionSpec("", [LevelSpec(0, "A")], weight=0),
            CriterionSpec(
                "Order", [LevelSpec(2, "A"), LevelSpec(1, "B"), LevelSpec(-1, "")],
                comment=CommentRule.BELOW_LEVEL, comment_below=0,
            ),
            CriterionSpec("Rule", [LevelSpec(0, "A"), LevelSpec(1, "B")], comment="sometimes"),
        ]
    )  # fmt: skip
    assert set(errors) == {
        "criteria.0.title", "criteria.0.weight", "criteria.0.levels",
        "criteria.1.levels.1.points", "criteria.1.levels.2.points", "criteria.1.levels.2.label",
        "criteria.1.comment_below", "criteria.2.comment",
    }  # fmt: skip


# ---------------------------------------------------------------- through the action


async def test_submit_review_answers_an_incomplete_review_field_by_field(
    cast: Cast, clock: Clock
) -> None:
    assignment = await make_assignment(cast, clock.now)
    reviewer = cast.learners[0]
    await submit_all(assignment, cast.learners[:2])
    review = await actions.review_next(assignment, acting_user=reviewer)
    assert review is not None
    argument, clarity = (await load_rubric(assignment.id)).criteria
    weak = {argument.id: RawAnswer((argument.levels[1].id,), "")}
    with pytest.raises(InvalidInput) as caught:
        await actions.submit_review(review, answers=weak, overall="", acting_user=reviewer)
    assert set(caught.value.fields) == {f"comment-{argument.id}", f"level-{clarity.id}", "overall"}
    stored = await Review.get(id=review.id)
    assert stored.status == ReviewStatus.LEASED and stored.answers == {}
    complete = {
        argument.id: RawAnswer((argument.levels[1].id,), COMMENT),
        clarity.id: RawAnswer((clarity.levels[2].id,), ""),
    }
    done = await actions.submit_review(
        review, answers=complete, overall=COMMENT, acting_user=reviewer
    )
    assert done.status == ReviewStatus.SUBMITTED
    assert done.answers[str(argument.id)] == {
        "level": argument.levels[1].id,
        "points": 1,
        "comment": COMMENT,
    }
    assert done.percent == pytest.approx(100 * (2 * 1 + 2) / 8)
