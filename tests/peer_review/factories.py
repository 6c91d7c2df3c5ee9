"""Builders for peer-review test data, through the real actions; a clock tests can move."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from core import actions as core_actions
from core import timeutil
from core.models import Course, Role, User
from peer_review import actions
from peer_review.actions import AssignmentInput
from peer_review.models import Assignment, Review, Submission
from peer_review.queries import load_rubric
from peer_review.rubric import CommentRule, CriterionSpec, LevelSpec, RawAnswer, Rubric
from tests.factories import add_member, make_course, make_user

# Words for essays: random sequences of these have distinct four-word phrases, like prose.
VOCABULARY = (
    "analysis argument because between careful claim clearly compare conclusion consider "
    "data decision define describe design detail different effect evidence example explain "
    "factor figure first focus follow general given growth however idea important include "
    "increase instead interpret issue justify known language later likely limit measure "
    "method model moreover natural nevertheless notice observe often order outcome paper "
    "pattern perhaps point possible practice present problem process question rather reason "
    "record relation report result review sample second section several show similar simple "
    "source specific structure study suggest support system table theory therefore third "
    "through topic trend typical under value variable various whether while within without"
).split()


def essay(seed: int, words: int = 120) -> str:
    """A distinct, real-looking text: a few paragraphs of varied words."""
    rng = random.Random(seed)
    picked = [rng.choice(VOCABULARY) for _ in range(words)]
    paragraphs = [" ".join(picked[i : i + 40]) for i in range(0, words, 40)]
    return "\n\n".join(p.capitalize() + "." for p in paragraphs)


COMMENT = "The argument is clear and every step is supported by evidence."


def default_rubric() -> list[CriterionSpec]:
    """Argument (weight 2, 0-3 points, explain scores below Good) and Clarity (0-2)."""
    return [
        CriterionSpec(
            title="Argument",
            weight=2.0,
            levels=[
                LevelSpec(0, "Missing"),
                LevelSpec(1, "Weak"),
                LevelSpec(2, "Good"),
                LevelSpec(3, "Excellent"),
            ],
            comment=CommentRule.BELOW_LEVEL,
            comment_below=2,
        ),
        CriterionSpec(
            title="Clarity",
            levels=[LevelSpec(0, "Unclear"), LevelSpec(1, "Mostly clear"), LevelSpec(2, "Clear")],
        ),
    ]


def answers_at(
    rubric: Rubric, positions: list[int], comment: str = COMMENT
) -> dict[int, RawAnswer]:
    """One level per criterion (by position; -1 is the best), each with a comment."""
    return {
        c.id: RawAnswer((c.levels[p].id,), comment)
        for c, p in zip(rubric.criteria, positions, strict=True)
    }


class Clock:
    """The application's clock (core.timeutil.utcnow), frozen and moved by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def freeze_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    current = Clock(timeutil.utcnow().replace(microsecond=0))
    monkeypatch.setattr(timeutil, "utcnow", current)
    return current


@dataclass(slots=True)
class Cast:
    course: Course
    instructor: User
    mentor: User
    learners: list[User]
    outsider: User
    extra: dict[str, Any] = field(default_factory=dict)


async def make_cast(learners: int = 4) -> Cast:
    """A course with an instructor, a mentor, some learners, and someone from outside."""
    instructor = await make_user(can_create_courses=True)
    course = await make_course(instructor)
    mentor = await make_user()
    await add_member(course, mentor, Role.MENTOR)
    people = []
    for _ in range(learners):
        learner = await make_user()
        # Joining by invite code is the learners' own way in, and writes no log entry.
        await core_actions.join_course(
            course=course, invite_code=course.invite_code, acting_user=learner
        )
        people.append(learner)
    return Cast(course, instructor, mentor, people, await make_user())


def assignment_input(now: datetime, **overrides: Any) -> AssignmentInput:
    values: dict[str, Any] = {
        "title": "Essay one",
        "instructions": "Write an essay about **evidence** in science.",
        "submission_opens_at": now - timedelta(hours=1),
        "submission_due_at": now + timedelta(days=1),
        "review_opens_at": now - timedelta(hours=1),
        "review_due_at": now + timedelta(days=3),
        "min_words": 50,
        "spot_check_rate": 0.0,
    }
    values.update(overrides)
    return AssignmentInput(**values)


async def make_assignment(
    cast: Cast, now: datetime, *, publish: bool = True, **overrides: Any
) -> Assignment:
    assignment = await actions.create_assignment(
        cast.course, assignment_input(now, **overrides), acting_user=cast.instructor
    )
    await actions.set_rubric(assignment, default_rubric(), acting_user=cast.instructor)
    if publish:
        await actions.publish_assignment(assignment, acting_user=cast.instructor)
    return assignment


async def submit_all(assignment: Assignment, learners: list[User]) -> list[Submission]:
    return [
        await actions.submit(assignment, body=essay(i + 1000 * learner.id), acting_user=learner)
        for i, learner in enumerate(learners)
    ]


async def review_once(
    assignment: Assignment, reviewer: User, positions: list[int] | None = None
) -> Review:
    """Take the next review and submit it (default: the best level everywhere)."""
    rubric = await load_rubric(assignment.id)
    review = await actions.review_next(assignment, acting_user=reviewer)
    assert review is not None, f"nothing to review for {reviewer}"
    chosen = positions if positions is not None else [-1] * len(rubric.criteria)
    return await actions.submit_review(
        review, answers=answers_at(rubric, chosen), overall=COMMENT, acting_user=reviewer
    )
