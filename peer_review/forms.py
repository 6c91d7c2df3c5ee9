"""Turning the peer-review HTML forms into action arguments, and stored values back into forms.

No database: the views read the request, these functions shape what they read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import InvalidInput
from peer_review.authoring import AssignmentInput
from peer_review.models import Assignment
from peer_review.rubric import CommentRule, CriterionSpec, LevelSpec, Rubric

MAX_ROWS = 20
TIME_FIELDS = ("submission_opens_at", "submission_due_at", "review_opens_at", "review_due_at")
INT_FIELDS = (
    "reviews_required",
    "reviews_wanted",
    "calibration_required",
    "attempt_limit",
    "late_grace_hours",
    "late_penalty_percent",
    "min_words",
    "comment_min_chars",
    "lease_hours",
)
TIME_FORMAT = "%Y-%m-%dT%H:%M"


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def assignment_values(assignment: Assignment) -> dict[str, str]:
    """An assignment as the edit form shows it."""
    values = {
        "title": assignment.title,
        "instructions": assignment.instructions_markdown,
        "late_policy": str(assignment.late_policy.value),
        "spot_check_rate": f"{assignment.spot_check_rate:g}",
    }
    for name in TIME_FIELDS:
        values[name] = format_time(getattr(assignment, name))
    for name in INT_FIELDS:
        values[name] = str(getattr(assignment, name))
    return values


def assignment_input(values: dict[str, str]) -> AssignmentInput:
    """The form as an AssignmentInput; unreadable numbers and times are named per field."""
    errors: dict[str, str] = {}
    times: dict[str, datetime | None] = {}
    for name in TIME_FIELDS:
        raw = values.get(name, "").strip()
        if not raw and name == "review_opens_at":
            times[name] = None
            continue
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            errors[name] = "Give a date and time (UTC), e.g. 2026-03-01T09:00."
            continue
        times[name] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    numbers: dict[str, int] = {}
    for name in INT_FIELDS:
        raw = values.get(name, "").strip() or "0"
        try:
            numbers[name] = int(raw)
        except ValueError:
            errors[name] = "Give a whole number."
    try:
        rate = float(values.get("spot_check_rate", "").strip() or "0")
    except ValueError:
        errors["spot_check_rate"] = "Give a number between 0 and 0.5."
        rate = 0.0
    if errors:
        raise InvalidInput("Please correct the marked fields.", fields=errors)
    opens, due, review_due = (
        times["submission_opens_at"],
        times["submission_due_at"],
        times["review_due_at"],
    )
    assert opens is not None and due is not None and review_due is not None
    return AssignmentInput(
        title=values.get("title", ""),
        instructions=values.get("instructions", ""),
        submission_opens_at=opens,
        submission_due_at=due,
        review_opens_at=times.get("review_opens_at"),
        review_due_at=review_due,
        late_policy=values.get("late_policy", "refuse"),
        spot_check_rate=rate,
        **numbers,
    )


# --- the rubric editor ----------------------------------------------------------------------


@dataclass(slots=True)
class LevelRow:
    points: str = ""
    label: str = ""
    description: str = ""


@dataclass(slots=True)
class CriterionRow:
    title: str = ""
    description: str = ""
    weight: str = "1"
    comment: str = CommentRule.OPTIONAL.value
    comment_below: str = ""
    levels: list[LevelRow] = field(default_factory=list)


def blank_criterion() -> CriterionRow:
    return CriterionRow(levels=[LevelRow("0", ""), LevelRow("1", "")])


def rubric_rows(rubric: Rubric) -> list[CriterionRow]:
    rows = [
        CriterionRow(
            title=c.title,
            description=c.description,
            weight=f"{c.weight:g}",
            comment=c.comment.value,
            comment_below="" if c.comment_below is None else str(c.comment_below),
            levels=[
                LevelRow(str(level.points), level.label, level.description) for level in c.levels
            ],
        )
        for c in rubric.criteria
    ]
    return rows or [blank_criterion()]


def _count(values: dict[str, str], name: str, default: int) -> int:
    try:
        return max(0, min(MAX_ROWS, int(values.get(name, default))))
    except ValueError:
        return default


def rubric_rows_from_form(values: dict[str, str]) -> list[CriterionRow]:
    rows: list[CriterionRow] = []
    for i in range(_count(values, "criteria_count", 0)):
        prefix = f"c{i}-"
        levels = [
            LevelRow(
                values.get(f"{prefix}l{j}-points", ""),
                values.get(f"{prefix}l{j}-label", ""),
                values.get(f"{prefix}l{j}-description", ""),
            )
            for j in range(_count(values, f"{prefix}level_count", 0))
        ]
        rows.append(
            CriterionRow(
                title=values.get(f"{prefix}title", ""),
                description=values.get(f"{prefix}description", ""),
                weight=values.get(f"{prefix}weight", ""),
                comment=values.get(f"{prefix}comment", CommentRule.OPTIONAL.value),
                comment_below=values.get(f"{prefix}comment_below", ""),
                levels=levels,
            )
        )
    return rows


def apply_editor_op(rows: list[CriterionRow], op: str) -> bool:
    """Add or remove a row as a button asked; True when the form changed (nothing saved)."""
    kind, _, raw = op.partition(":")
    index = int(raw) if raw.isdigit() else -1
    if kind == "add_criterion" and len(rows) < MAX_ROWS:
        rows.append(blank_criterion())
        return True
    if kind == "remove_criterion" and 0 <= index < len(rows):
        del rows[index]
        return True
    if kind == "add_level" and 0 <= index < len(rows) and len(rows[index].levels) < MAX_ROWS:
        levels = rows[index].levels
        last = levels[-1].points if levels else "-1"
        levels.append(LevelRow(str(int(last) + 1) if last.lstrip("-").isdigit() else "", ""))
        return True
    if kind == "remove_level" and 0 <= index < len(rows) and rows[index].levels:
        rows[index].levels.pop()
        return True
    return kind in {"add_criterion", "remove_criterion", "add_level", "remove_level"}


def _number(raw: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(raw.strip())
    except ValueError:
        return raw  # check_rubric names it as not a number


def rubric_specs(rows: list[CriterionRow]) -> list[CriterionSpec]:
    specs = []
    for row in rows:
        weight = _number(row.weight, float)
        below = _number(row.comment_below, int) if row.comment_below.strip() else None
        specs.append(
            CriterionSpec(
                title=row.title,
                description=row.description,
                weight=weight if isinstance(weight, float) else float("nan"),
                comment=row.comment,
                comment_below=below if isinstance(below, int) else None,
                levels=[
                    LevelSpec(_number(level.points, int), level.label, level.description)
                    for level in row.levels
                ],
            )
        )
    return specs


_RUBRIC_KEY = re.compile(r"^criteria\.(\d+)\.(?:levels\.(\d+)\.)?(\w+)$")


def rubric_field(key: str) -> str:
    """`criteria.0.levels.1.points` (check_rubric's key) as the form field `c0-l1-points`."""
    match = _RUBRIC_KEY.match(key)
    if match is None:
        return key
    criterion, level, name = match.groups()
    return f"c{criterion}-l{level}-{name}" if level is not None else f"c{criterion}-{name}"


def rubric_errors(errors: dict[str, str]) -> dict[str, str]:
    return {rubric_field(key): message for key, message in errors.items()}
