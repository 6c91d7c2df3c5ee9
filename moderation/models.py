"""The moderation log and what hangs off it: rules, sanctions, notices, appeals, flags."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.expressions import Q

from core.models import Course, User
from core.orm import Model


class Act(StrEnum):
    """Every kind of log entry. docs/moderation.md describes each one (a test checks)."""

    HIDE_POST = "hide_post"
    UNHIDE_POST = "unhide_post"
    REMOVE_POST = "remove_post"
    RESTORE_POST = "restore_post"
    EDIT_POST = "edit_post"
    LOCK_THREAD = "lock_thread"
    UNLOCK_THREAD = "unlock_thread"
    PIN_THREAD = "pin_thread"
    UNPIN_THREAD = "unpin_thread"
    MOVE_THREAD = "move_thread"
    WARN_USER = "warn_user"
    SILENCE_USER = "silence_user"
    SUSPEND_USER = "suspend_user"
    LIFT_SANCTION = "lift_sanction"
    CHANGE_ROLE = "change_role"
    RESOLVE_FLAG = "resolve_flag"
    DECIDE_APPEAL = "decide_appeal"
    OVERRIDE_GRADE = "override_grade"
    VOID_REVIEW = "void_review"
    UPHOLD_REVIEW = "uphold_review"
    STAFF_GRADE = "staff_grade"
    PLAGIARISM_DECISION = "plagiarism_decision"


class Source(StrEnum):
    MANUAL = "manual"
    FLAG = "flag"
    AUTOMATIC = "automatic"
    APPEAL = "appeal"


class TargetType(StrEnum):
    POST = "post"
    THREAD = "thread"
    USER = "user"
    FLAG = "flag"
    APPEAL = "appeal"


class LogEntry(Model):
    """One moderation act. Append-only: the database refuses UPDATE and DELETE on this table.

    `canonical` is the exact serialization of the public fields that was hashed into the
    Merkle tree as leaf `seq`; `agora audit verify` recomputes it from the columns.
    """

    id = fields.BigIntField(primary_key=True)
    seq = fields.BigIntField(unique=True)
    created_at = fields.DatetimeField()
    course_id = fields.IntField(null=True, db_index=True)
    actor_id = fields.IntField(null=True)
    actor_role = fields.CharField(max_length=16)
    act = fields.CharField(max_length=32)
    target_type = fields.CharField(max_length=16)
    target_id = fields.BigIntField()
    rule_code = fields.CharField(max_length=16, default="")
    reason = fields.TextField(default="")
    duration_seconds = fields.BigIntField(null=True)
    old_value = fields.TextField(default="")
    new_value = fields.TextField(default="")
    reverses_seq = fields.BigIntField(null=True)
    source = fields.CharField(max_length=16, default=Source.MANUAL.value)
    canonical = fields.TextField()
    leaf_hash = fields.CharField(max_length=64)

    class Meta:
        table = "agora_log_entry"
        ordering = ("seq",)
        # A course's log (or the site-wide one, course_id NULL) paged by seq.
        indexes = (("course_id", "seq"),)


class TreeHead(Model):
    """A signed statement "after `size` entries the tree's root was `root_hex`". Append-only."""

    id = fields.BigIntField(primary_key=True)
    size = fields.BigIntField(unique=True)
    root_hex = fields.CharField(max_length=64)
    signed_at = fields.DatetimeField()
    signature_hex = fields.CharField(max_length=128)
    key_id = fields.CharField(max_length=64)

    class Meta:
        table = "agora_tree_head"
        ordering = ("size",)


class LogState(Model):
    """The one row that appends lock and extend: size and the compact range of the tree."""

    id = fields.IntField(primary_key=True)
    size = fields.BigIntField(default=0)
    range_hex: Any = fields.JSONField(default=list)

    class Meta:
        table = "agora_log_state"


class Rule(Model):
    id = fields.IntField(primary_key=True)
    course: fields.ForeignKeyRelation[Course] = fields.ForeignKeyField(
        "core.Course", related_name="rules", on_delete=fields.CASCADE
    )
    code = fields.CharField(max_length=16)
    text = fields.TextField()
    position = fields.IntField(default=0)
    retired = fields.BooleanField(default=False)

    class Meta:
        table = "agora_rule"
        unique_together = (("course", "code"),)
        ordering = ("position", "id")


class SanctionKind(StrEnum):
    WARNING = "warning"
    SILENCE = "silence"
    SUSPENSION = "suspension"


class Sanction(Model):
    id = fields.IntField(primary_key=True)
    course: fields.ForeignKeyRelation[Course] = fields.ForeignKeyField(
        "core.Course", related_name="sanctions", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name="sanctions", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(SanctionKind, max_length=16)
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField(null=True)
    lifted_at = fields.DatetimeField(null=True)
    entry_seq = fields.BigIntField()

    class Meta:
        table = "agora_sanction"
        # Every course page asks whether its viewer is suspended there.
        indexes = (("course_id", "user_id"),)

    def is_active(self, now: datetime) -> bool:
        if self.kind == SanctionKind.WARNING or self.lifted_at is not None:
            return False
        return self.ends_at is None or now < self.ends_at


class Notice(Model):
    """What the affected person is told about an act: durable, shown on their standing page."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name="notices", on_delete=fields.CASCADE
    )
    course_id = fields.IntField(null=True)
    entry_seq = fields.BigIntField(db_index=True)
    act = fields.CharField(max_length=32)
    summary = fields.TextField()
    content_excerpt = fields.TextField(default="")
    rule_code = fields.CharField(max_length=16, default="")
    rule_text = fields.TextField(default="")
    reason = fields.TextField(default="")
    automatic = fields.BooleanField(default=False)
    ends_at = fields.DatetimeField(null=True)
    appeal_until = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "agora_notice"
        ordering = ("-created_at", "-id")


class AppealStatus(StrEnum):
    PENDING = "pending"
    UPHELD = "upheld"
    OVERTURNED = "overturned"


class Appeal(Model):
    id = fields.IntField(primary_key=True)
    notice: fields.ForeignKeyRelation[Notice] = fields.ForeignKeyField(
        "moderation.Notice", related_name="appeals", on_delete=fields.CASCADE
    )
    entry_seq = fields.BigIntField(unique=True)
    appellant: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, on_delete=fields.CASCADE
    )
    course_id = fields.IntField(null=True, db_index=True)
    text = fields.TextField()
    created_at = fields.DatetimeField()
    status = fields.CharEnumField(AppealStatus, default=AppealStatus.PENDING, max_length=16)
    decided_at = fields.DatetimeField(null=True)
    decided_by_id = fields.IntField(null=True)
    decision_text = fields.TextField(default="")
    decision_seq = fields.BigIntField(null=True)

    class Meta:
        table = "agora_appeal"


class FlagCategory(StrEnum):
    SPAM = "spam"
    HARASSMENT = "harassment"
    OFF_TOPIC = "off_topic"
    PLAGIARISM = "plagiarism"
    OTHER = "other"


class Flag(Model):
    id = fields.IntField(primary_key=True)
    course_id = fields.IntField(db_index=True)
    post_id = fields.IntField(db_index=True)
    flagger: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, on_delete=fields.CASCADE
    )
    category = fields.CharEnumField(FlagCategory, max_length=16)
    text = fields.TextField(default="")
    created_at = fields.DatetimeField()
    resolved_at = fields.DatetimeField(null=True)
    resolution_seq = fields.BigIntField(null=True)
    outcome = fields.TextField(default="")

    class Meta:
        table = "agora_flag"


async def active_sanction(course_id: int, user_id: int, now: datetime) -> Sanction | None:
    """The strongest sanction now restricting the user in the course, if any."""
    # Ended sanctions stay unlifted rows: leave them in the database, a person with a long
    # history would otherwise have every one read on every page.
    candidates = await Sanction.filter(
        Q(ends_at=None) | Q(ends_at__gt=now),
        course_id=course_id,
        user_id=user_id,
        lifted_at=None,
        kind__in=[SanctionKind.SILENCE, SanctionKind.SUSPENSION],
    ).order_by("-id")
    active = [s for s in candidates if s.is_active(now)]
    active.sort(key=lambda s: s.kind != SanctionKind.SUSPENSION)
    return active[0] if active else None


DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    ("R1", "Be respectful: no insults, harassment or discrimination."),
    ("R2", "Stay on topic for the course and the forum."),
    ("R3", "No spam, advertising or repeated posts."),
    ("R4", "Academic honesty: do not share solutions to graded work or copy others' work."),
    ("R5", "Protect privacy: do not post other people's personal information."),
)
