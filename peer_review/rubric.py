"""Rubrics as plain values: checking a rubric an instructor writes, and enforcing it on answers.

Pure functions, no database. The same enforcement serves peer reviews, staff grades and
calibration: exactly one level per criterion, comments where the rubric demands them, and an
overall comment. Problems come back keyed by form field (`level-<criterion id>`,
`comment-<criterion id>`, `overall`), so a form can show each one in place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from peer_review.content import check_text

MAX_CRITERIA = 20
MIN_LEVELS, MAX_LEVELS = 2, 10
MAX_POINTS = 1000
MAX_WEIGHT = 100.0
TITLE_MAX = 200
LABEL_MAX = 80
DESCRIPTION_MAX = 2000
COMMENT_MAX = 5000
COMMENT_MIN_WORDS = 3


class CommentRule(StrEnum):
    """When a reviewer must explain their score on a criterion."""

    OPTIONAL = "optional"
    ALWAYS = "always"
    # Required when the chosen level is below the criterion's `comment_below` level.
    BELOW_LEVEL = "below_level"


# --- writing a rubric ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LevelSpec:
    points: int
    label: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class CriterionSpec:
    """One criterion as an instructor writes it; levels from worst to best."""

    title: str
    levels: Sequence[LevelSpec]
    description: str = ""
    weight: float = 1.0
    comment: CommentRule | str = CommentRule.OPTIONAL
    # Index into `levels` of the lowest level that needs no comment (BELOW_LEVEL only).
    comment_below: int | None = None


def _squash(text: str) -> str:
    return " ".join((text or "").split())


def check_rubric(criteria: Sequence[CriterionSpec]) -> tuple[list[CriterionSpec], dict[str, str]]:
    """The cleaned rubric and the problems found, keyed `criteria.<i>.<field>`."""
    errors: dict[str, str] = {}
    if not criteria:
        errors["criteria"] = "A rubric needs at least one criterion."
    elif len(criteria) > MAX_CRITERIA:
        errors["criteria"] = f"A rubric can have at most {MAX_CRITERIA} criteria."
    cleaned: list[CriterionSpec] = []
    for i, spec in enumerate(criteria[:MAX_CRITERIA]):
        key = f"criteria.{i}"
        title = _squash(spec.title)
        if not 1 <= len(title) <= TITLE_MAX:
            errors[f"{key}.title"] = f"Give the criterion a title of 1-{TITLE_MAX} characters."
        description = (spec.description or "").strip()
        if len(description) > DESCRIPTION_MAX:
            errors[f"{key}.description"] = (
                f"Keep the description under {DESCRIPTION_MAX} characters."
            )
        weight = spec.weight
        if not (isinstance(weight, int | float) and math.isfinite(weight)) or not (
            0 < weight <= MAX_WEIGHT
        ):
            errors[f"{key}.weight"] = f"A weight is a number above 0 and at most {MAX_WEIGHT:g}."
            weight = 1.0
        try:
            rule = CommentRule(spec.comment)
        except ValueError:
            errors[f"{key}.comment"] = "Choose when a comment is required."
            rule = CommentRule.OPTIONAL
        levels = list(spec.levels)
        if not MIN_LEVELS <= len(levels) <= MAX_LEVELS:
            errors[f"{key}.levels"] = f"A criterion needs {MIN_LEVELS}-{MAX_LEVELS} levels."
        clean_levels: list[LevelSpec] = []
        for j, level in enumerate(levels[:MAX_LEVELS]):
            lkey = f"{key}.levels.{j}"
            label = _squash(level.label)
            if not 1 <= len(label) <= LABEL_MAX:
                errors[f"{lkey}.label"] = f"Give the level a label of 1-{LABEL_MAX} characters."
            points = level.points
            if isinstance(points, bool) or not isinstance(points, int):
                errors[f"{lkey}.points"] = "Points are a whole number."
                points = 0
            elif not 0 <= points <= MAX_POINTS:
                errors[f"{lkey}.points"] = f"Points are between 0 and {MAX_POINTS}."
            elif clean_levels and points <= clean_levels[-1].points:
                errors[f"{lkey}.points"] = (
                    "Order the levels from worst to best, each worth more points than the last."
                )
            level_description = (level.description or "").strip()
            if len(level_description) > DESCRIPTION_MAX:
                errors[f"{lkey}.description"] = (
                    f"Keep the description under {DESCRIPTION_MAX} characters."
                )
            clean_levels.append(LevelSpec(points, label, level_description))
        below = spec.comment_below
        if rule == CommentRule.BELOW_LEVEL:
            if below is None or not 1 <= below < max(len(levels), 1):
                errors[f"{key}.comment_below"] = (
                    "Choose the level below which a comment is required (not the lowest)."
                )
        else:
            below = None
        cleaned.append(CriterionSpec(title, clean_levels, description, float(weight), rule, below))
    return cleaned, errors


# --- a stored rubric, and answers to it ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class LevelView:
    id: int
    position: int
    points: int
    label: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class CriterionView:
    id: int
    title: str
    weight: float
    levels: tuple[LevelView, ...]
    comment: CommentRule = CommentRule.OPTIONAL
    comment_below: int | None = None
    description: str = ""

    @property
    def max_points(self) -> int:
        return max(level.points for level in self.levels)

    def level(self, level_id: int) -> LevelView | None:
        return next((level for level in self.levels if level.id == level_id), None)

    def needs_comment(self, level: LevelView | None) -> bool:
        if self.comment == CommentRule.ALWAYS:
            return True
        if self.comment == CommentRule.BELOW_LEVEL and level is not None:
            return self.comment_below is not None and level.position < self.comment_below
        return False


@dataclass(frozen=True, slots=True)
class Rubric:
    criteria: tuple[CriterionView, ...]

    @property
    def max_score(self) -> float:
        return sum(c.weight * c.max_points for c in self.criteria)

    def criterion(self, criterion_id: int) -> CriterionView | None:
        return next((c for c in self.criteria if c.id == criterion_id), None)

    def score(self, points: Mapping[int, float]) -> float:
        """Weighted points of per-criterion points (criterion id -> points)."""
        return sum(c.weight * points[c.id] for c in self.criteria if c.id in points)

    def percent(self, points: Mapping[int, float]) -> float:
        top = self.max_score
        return 100.0 * self.score(points) / top if top > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """What a form sent for one criterion: every level chosen (should be one) and a comment."""

    level_ids: tuple[int, ...] = ()
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    level_id: int
    points: int
    comment: str


@dataclass(slots=True)
class Checked:
    answers: dict[int, Answer] = field(default_factory=dict)
    overall: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def points(self) -> dict[int, float]:
        return {cid: float(a.points) for cid, a in self.answers.items()}

    def levels(self) -> dict[int, int]:
        return {cid: a.level_id for cid, a in self.answers.items()}


def _comment_problem(text: str, min_chars: int, what: str) -> str | None:
    if len(text) < min_chars:
        return f"{what} needs at least {min_chars} characters; this one has {len(text)}."
    verdict = check_text(text, min_words=COMMENT_MIN_WORDS, what=what)
    return verdict.problem


def check_answers(
    rubric: Rubric,
    answers: Mapping[int, RawAnswer],
    overall: str = "",
    *,
    comment_min_chars: int,
    need_overall: bool = True,
    need_comments: bool = True,
) -> Checked:
    """Enforce the rubric on answers; `need_comments=False` checks levels only."""
    result = Checked()
    unknown = sorted(set(answers) - {c.id for c in rubric.criteria})
    if unknown:
        result.errors["answers"] = "The form has answers for criteria this rubric does not have."
    for criterion in rubric.criteria:
        raw = answers.get(criterion.id, RawAnswer())
        chosen = list(dict.fromkeys(raw.level_ids))
        comment = (raw.comment or "").strip()
        level = criterion.level(chosen[0]) if len(chosen) == 1 else None
        if not chosen:
            result.errors[f"level-{criterion.id}"] = f"Choose a level for “{criterion.title}”."
        elif len(chosen) > 1:
            result.errors[f"level-{criterion.id}"] = (
                f"Choose exactly one level for “{criterion.title}”."
            )
        elif level is None:
            result.errors[f"level-{criterion.id}"] = (
                f"Choose one of the levels listed for “{criterion.title}”."
            )
        if len(comment) > COMMENT_MAX:
            result.errors[f"comment-{criterion.id}"] = (
                f"Keep the comment under {COMMENT_MAX} characters."
            )
        elif need_comments and criterion.needs_comment(level):
            problem = _comment_problem(comment, comment_min_chars, "This comment")
            if problem is not None:
                why = "this criterion" if criterion.comment == CommentRule.ALWAYS else "this score"
                result.errors[f"comment-{criterion.id}"] = (
                    f"The rubric asks you to explain {why}. {problem}"
                )
        if level is not None:
            result.answers[criterion.id] = Answer(level.id, level.points, comment)
    result.overall = (overall or "").strip()
    if len(result.overall) > COMMENT_MAX:
        result.errors["overall"] = f"Keep the overall comment under {COMMENT_MAX} characters."
    elif need_overall:
        problem = _comment_problem(result.overall, comment_min_chars, "The overall comment")
        if problem is not None:
            result.errors["overall"] = problem
    return result


def answers_from_form(items: Iterable[tuple[str, str]]) -> tuple[dict[int, RawAnswer], str]:
    """Form fields `level-<id>` (repeatable), `comment-<id>` and `overall` as raw answers."""
    levels: dict[int, list[int]] = {}
    comments: dict[int, str] = {}
    overall = ""
    for name, value in items:
        kind, _, raw_id = name.partition("-")
        if name == "overall":
            overall = value
            continue
        if kind not in {"level", "comment"} or not raw_id.isdigit():
            continue
        criterion_id = int(raw_id)
        if kind == "level":
            # A value that is not a level id can never match one: 0 is no row's id.
            levels.setdefault(criterion_id, []).append(int(value) if value.isdigit() else 0)
        else:
            comments[criterion_id] = value
    answers = {
        cid: RawAnswer(tuple(levels.get(cid, ())), comments.get(cid, ""))
        for cid in sorted(set(levels) | set(comments))
    }
    return answers, overall


def answers_to_json(answers: Mapping[int, RawAnswer], overall: str) -> dict[str, Any]:
    """A draft as stored: whatever was entered, valid or not."""
    return {
        "answers": {
            str(cid): {"levels": list(a.level_ids), "comment": a.comment}
            for cid, a in answers.items()
        },
        "overall": overall,
    }


def answers_from_json(data: Mapping[str, Any] | None) -> tuple[dict[int, RawAnswer], str]:
    if not data:
        return {}, ""
    answers = {
        int(cid): RawAnswer(tuple(int(x) for x in raw.get("levels", [])), raw.get("comment", ""))
        for cid, raw in (data.get("answers") or {}).items()
    }
    return answers, str(data.get("overall", ""))


@dataclass(frozen=True, slots=True)
class Agreement:
    """How a grader's level compares with the reference level on one criterion."""

    criterion_id: int
    given_level_id: int
    reference_level_id: int
    distance: int  # level positions apart; 0 means agreement

    @property
    def agrees(self) -> bool:
        return self.distance == 0


def agreement(
    rubric: Rubric, given: Mapping[int, int], reference: Mapping[int, int]
) -> list[Agreement]:
    """Per-criterion agreement of chosen levels (criterion id -> level id) with a reference."""
    out: list[Agreement] = []
    for criterion in rubric.criteria:
        mine = criterion.level(given.get(criterion.id, -1))
        theirs = criterion.level(reference.get(criterion.id, -1))
        if mine is None or theirs is None:
            continue
        out.append(
            Agreement(criterion.id, mine.id, theirs.id, abs(mine.position - theirs.position))
        )
    return out


def agreement_rate(items: Sequence[Agreement]) -> float:
    return sum(a.agrees for a in items) / len(items) if items else 0.0
