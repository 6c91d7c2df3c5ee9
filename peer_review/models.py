"""Assignments, rubrics, calibration, submissions, reviews, grades, and read-only queries.

Every state change is in peer_review/actions.py; read-only queries are in
peer_review/queries.py. Permission checks are methods here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tortoise import fields

from core.models import Course, Role, User
from core.orm import Model
from peer_review import attachments
from peer_review.rubric import CommentRule


def is_staff(user: User | None, role: Role | None) -> bool:
    return user is not None and (user.is_admin or (role is not None and role.is_staff))


class LatePolicy(StrEnum):
    REFUSE = "refuse"
    # Taken until the grace period ends, marked late.
    ACCEPT = "accept"
    # Taken until the grace period ends, marked late, grade reduced by late_penalty_percent.
    PENALTY = "penalty"


class ReviewStatus(StrEnum):
    LEASED = "leased"  # handed to the reviewer; may hold a draft
    SUBMITTED = "submitted"
    VOIDED = "voided"  # staff voided it: it counts for nothing


class FlagState(StrEnum):
    NONE = "none"
    OPEN = "open"  # the author flagged it as unjustified
    VOIDED = "voided"
    UPHELD = "upheld"


class SimilarityState(StrEnum):
    OPEN = "open"
    CLEARED = "cleared"
    CONFIRMED = "confirmed"


class GradeSource(StrEnum):
    PEER = "peer"
    STAFF = "staff"
    OVERRIDE = "override"


class Assignment(Model):
    id = fields.IntField(primary_key=True)
    course: fields.ForeignKeyRelation[Course] = fields.ForeignKeyField(
        "core.Course", related_name="assignments", on_delete=fields.CASCADE
    )
    title = fields.CharField(max_length=200)
    instructions_markdown = fields.TextField()
    instructions_html = fields.TextField()
    submission_opens_at = fields.DatetimeField()
    submission_due_at = fields.DatetimeField()
    review_opens_at = fields.DatetimeField()
    review_due_at = fields.DatetimeField()
    reviews_required = fields.IntField(default=3)  # each learner gives
    reviews_wanted = fields.IntField(default=3)  # each submission gets
    calibration_required = fields.IntField(default=0)
    attempt_limit = fields.IntField(default=2)
    late_policy = fields.CharEnumField(LatePolicy, default=LatePolicy.REFUSE, max_length=16)
    late_grace_hours = fields.IntField(default=0)
    late_penalty_percent = fields.IntField(default=0)
    min_words = fields.IntField(default=100)
    comment_min_chars = fields.IntField(default=20)
    lease_hours = fields.IntField(default=8)
    spot_check_rate = fields.FloatField(default=0.1)
    is_published = fields.BooleanField(default=False)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agora_assignment"
        ordering = ("submission_due_at", "id")

    def __str__(self) -> str:
        return self.title

    @property
    def late_until(self) -> datetime:
        """The last moment a submission is taken at all."""
        if self.late_policy == LatePolicy.REFUSE:
            return self.submission_due_at
        return self.submission_due_at + timedelta(hours=self.late_grace_hours)

    @property
    def lease(self) -> timedelta:
        return timedelta(hours=self.lease_hours)

    def takes_submissions_at(self, now: datetime) -> bool:
        return self.is_published and self.submission_opens_at <= now <= self.late_until

    def takes_reviews_at(self, now: datetime) -> bool:
        return self.is_published and self.review_opens_at <= now <= self.review_due_at

    def can_be_managed_by(self, user: User | None, role: Role | None) -> bool:
        return user is not None and user.is_active and (user.is_admin or role == Role.INSTRUCTOR)

    def can_be_seen_by(self, user: User | None, role: Role | None) -> bool:
        if is_staff(user, role):
            return True
        return user is not None and role is not None and self.is_published

    def can_be_worked_on_by(self, user: User | None, role: Role | None) -> bool:
        """Submitting, calibrating and reviewing are for the course's learners."""
        return user is not None and user.is_active and role == Role.LEARNER and self.is_published


class Criterion(Model):
    id = fields.IntField(primary_key=True)
    assignment: fields.ForeignKeyRelation[Assignment] = fields.ForeignKeyField(
        "peer_review.Assignment", related_name="criteria", on_delete=fields.CASCADE
    )
    position = fields.IntField()
    title = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    weight = fields.FloatField(default=1.0)
    comment_rule = fields.CharEnumField(CommentRule, default=CommentRule.OPTIONAL, max_length=16)
    # Levels below this position need a comment (comment_rule BELOW_LEVEL).
    comment_below = fields.IntField(null=True)

    class Meta:
        table = "agora_rubric_criterion"
        ordering = ("position", "id")


class Level(Model):
    id = fields.IntField(primary_key=True)
    criterion: fields.ForeignKeyRelation[Criterion] = fields.ForeignKeyField(
        "peer_review.Criterion", related_name="levels", on_delete=fields.CASCADE
    )
    position = fields.IntField()  # 0 is the worst
    points = fields.IntField()
    label = fields.CharField(max_length=80)
    description = fields.TextField(default="")

    class Meta:
        table = "agora_rubric_level"
        ordering = ("position", "id")


class CalibrationSample(Model):
    """A piece of work the instructor graded, with the reason for each level."""

    id = fields.IntField(primary_key=True)
    assignment: fields.ForeignKeyRelation[Assignment] = fields.ForeignKeyField(
        "peer_review.Assignment", related_name="calibration_samples", on_delete=fields.CASCADE
    )
    position = fields.IntField(default=0)
    title = fields.CharField(max_length=200)
    body_markdown = fields.TextField()
    body_html = fields.TextField()
    # {criterion id: {"level": level id, "explanation": text}}
    reference: Any = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agora_calibration_sample"
        ordering = ("position", "id")

    def reference_levels(self) -> dict[int, int]:
        return {int(cid): int(ref["level"]) for cid, ref in self.reference.items()}


class CalibrationAnswer(Model):
    """How a learner graded a calibration sample, and how that agrees with the reference."""

    id = fields.IntField(primary_key=True)
    sample: fields.ForeignKeyRelation[CalibrationSample] = fields.ForeignKeyField(
        "peer_review.CalibrationSample", related_name="answers", on_delete=fields.CASCADE
    )
    assignment_id = fields.IntField(db_index=True)
    learner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, on_delete=fields.CASCADE
    )
    levels: Any = fields.JSONField(default=dict)  # {criterion id: level id}
    distances: Any = fields.JSONField(default=dict)  # {criterion id: level positions apart}
    agreement_rate = fields.FloatField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "agora_calibration_answer"
        unique_together = (("sample", "learner"),)


class Participation(Model):
    """One learner in one assignment: when they first opened the work of a peer (which
    locks their own)."""

    id = fields.IntField(primary_key=True)
    assignment: fields.ForeignKeyRelation[Assignment] = fields.ForeignKeyField(
        "peer_review.Assignment", related_name=False, on_delete=fields.CASCADE
    )
    learner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, on_delete=fields.CASCADE
    )
    locked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "agora_participation"
        unique_together = (("assignment", "learner"),)


class Submission(Model):
    """One attempt at an assignment: the latest attempt of a learner is the current one."""

    id = fields.IntField(primary_key=True)
    assignment: fields.ForeignKeyRelation[Assignment] = fields.ForeignKeyField(
        "peer_review.Assignment", related_name="submissions", on_delete=fields.CASCADE
    )
    author: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, on_delete=fields.CASCADE
    )
    attempt = fields.IntField()
    is_current = fields.BooleanField(default=True)
    body_markdown = fields.TextField()
    body_html = fields.TextField()
    word_count = fields.IntField()
    submitted_at = fields.DatetimeField()
    is_late = fields.BooleanField(default=False)
    superseded_at = fields.DatetimeField(null=True)
    # MinHash signature for near-duplicate checks, filled in by the outbox handler.
    signature: Any = fields.JSONField(null=True)

    class Meta:
        table = "agora_submission"
        unique_together = (("assignment", "author", "attempt"),)
        indexes = (("assignment_id", "is_current"),)

    def is_by(self, user: User | None) -> bool:
        return user is not None and self.author_id == user.id  # type: ignore[attr-defined]

    def can_be_read_by(self, user: User | None, role: Role | None, *, reviewing: bool) -> bool:
        """The author, the course's staff, and a peer it was handed to for review."""
        return self.is_by(user) or is_staff(user, role) or (user is not None and reviewing)


class Attachment(Model):
    id = fields.IntField(primary_key=True)
    submission: fields.ForeignKeyRelation[Submission] = fields.ForeignKeyField(
        "peer_review.Submission", related_name="attachments", on_delete=fields.CASCADE
    )
    filename = fields.CharField(max_length=120)
    kind = fields.CharEnumField(attachments.AttachmentKind, max_length=8)
    size = fields.IntField()
    sha256 = fields.CharField(max_length=64)
    storage_name = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agora_submission_attachment"
        ordering = ("id",)


class Review(Model):
    """The review of one submission by one reviewer, from lease through draft to submission."""

    id = fields.IntField(primary_key=True)
    assignment: fields.ForeignKeyRelation[Assignment] = fields.ForeignKeyField(
        "peer_review.Assignment", related_name=False, on_delete=fields.CASCADE
    )
    submission: fields.ForeignKeyRelation[Submission] = fields.ForeignKeyField(
        "peer_review.Submission", related_name="reviews", on_delete=fields.CASCADE
    )
    reviewer: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(ReviewStatus, default=ReviewStatus.LEASED, max_length=16)
    is_spot_check = fields.BooleanField(default=False)
    leased_at = fields.DatetimeField()
    lease_expires_at = fields.DatetimeField()
    draft: Any = fields.JSONField(default=dict)
    # {criterion id: {"level": level id, "points": points, "comment": text}} once submitted.
    answers: Any = fields.JSONField(default=dict)
    overall_comment = fields.TextField(default="")
    percent = fields.FloatField(null=True)
    submitted_at = fields.DatetimeField(null=True)
    # Spot checks: level positions apart from the staff grade, per criterion.
    staff_distances: Any = fields.JSONField(null=True)
    helpfulness = fields.IntField(null=True)  # 1-5, from the author
    flag_state = fields.CharEnumField(FlagState, default=FlagState.NONE, max_length=16)
    flag_reason = fields.TextField(default="")
    flagged_at = fields.DatetimeField(null=True)
    decision_seq = fields.BigIntField(null=True)
    voided_at = fields.DatetimeField(null=True)

    class Meta:
        table = "agora_review"
        unique_together = (("submission", "reviewer"),)
        indexes = (("assignment_id", "status"),)

    def is_by(self, user: User | None) -> bool:
        return user is not None and self.reviewer_id == user.id  # type: ignore[attr-defined]

    def is_live_lease(self, now: datetime) -> bool:
        return self.status == ReviewStatus.LEASED and self.lease_expires_at > now

    def can_be_edited_by(self, user: User | None) -> bool:
        return self.is_by(user) and self.status == ReviewStatus.LEASED

    def levels(self) -> dict[int, int]:
        return {int(cid): int(a["level"]) for cid, a in self.answers.items()}


class StaffGrade(Model):
    """A submission graded by a member of staff (a moderation act, on the log)."""

    id = fields.IntField(primary_key=True)
    submission: fields.ForeignKeyRelation[Submission] = fields.ForeignKeyField(
        "peer_review.Submission", related_name="staff_grades", on_delete=fields.CASCADE
    )
    grader: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    answers: Any = fields.JSONField(default=dict)
    comment = fields.TextField(default="")
    percent = fields.FloatField()
    entry_seq = fields.BigIntField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "agora_staff_grade"
        ordering = ("id",)

    def levels(self) -> dict[int, int]:
        return {int(cid): int(a["level"]) for cid, a in self.answers.items()}


class GradeOverride(Model):
    id = fields.IntField(primary_key=True)
    submission: fields.ForeignKeyRelation[Submission] = fields.ForeignKeyField(
        "peer_review.Submission", related_name="overrides", on_delete=fields.CASCADE
    )
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    percent = fields.FloatField()
    reason = fields.TextField()
    entry_seq = fields.BigIntField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "agora_grade_override"
        ordering = ("id",)


class Grade(Model):
    """The computed grade of a submission, written only by the recompute action."""

    id = fields.IntField(primary_key=True)
    submission: fields.OneToOneRelation[Submission] = fields.OneToOneField(
        "peer_review.Submission", related_name="grade", on_delete=fields.CASCADE
    )
    assignment_id = fields.IntField(db_index=True)
    author_id = fields.IntField(db_index=True)
    peer_percent = fields.FloatField(null=True)
    # The peer grade's 90 % interval, when the grader gives one (peer_review/calibrated.py).
    peer_low_percent = fields.FloatField(null=True)
    peer_high_percent = fields.FloatField(null=True)
    staff_percent = fields.FloatField(null=True)
    override_percent = fields.FloatField(null=True)
    late_penalty_percent = fields.IntField(default=0)
    final_percent = fields.FloatField(null=True)
    source = fields.CharEnumField(GradeSource, null=True, max_length=16)
    per_criterion: Any = fields.JSONField(default=dict)  # {criterion id: median points}
    review_count = fields.IntField(default=0)
    grader = fields.CharField(max_length=32, default="")
    computed_at = fields.DatetimeField()

    class Meta:
        table = "agora_grade"


class SimilarityFlag(Model):
    """Two submissions whose texts are nearly the same: for staff to look at, not a verdict."""

    id = fields.IntField(primary_key=True)
    assignment: fields.ForeignKeyRelation[Assignment] = fields.ForeignKeyField(
        "peer_review.Assignment", related_name=False, on_delete=fields.CASCADE
    )
    submission_a: fields.ForeignKeyRelation[Submission] = fields.ForeignKeyField(
        "peer_review.Submission", related_name=False, on_delete=fields.CASCADE
    )
    submission_b: fields.ForeignKeyRelation[Submission] = fields.ForeignKeyField(
        "peer_review.Submission", related_name=False, on_delete=fields.CASCADE
    )
    similarity = fields.FloatField()
    state = fields.CharEnumField(SimilarityState, default=SimilarityState.OPEN, max_length=16)
    created_at = fields.DatetimeField()
    responsible: Any = fields.JSONField(default=list)  # submission ids found to have copied
    decided_at = fields.DatetimeField(null=True)
    decided_by_id = fields.IntField(null=True)
    decision_seq = fields.BigIntField(null=True)

    class Meta:
        table = "agora_similarity_flag"
        unique_together = (("submission_a", "submission_b"),)


class LearnerRecord(Model):
    """Whether a learner made their course record (completed assignments, grades) public."""

    id = fields.IntField(primary_key=True)
    course: fields.ForeignKeyRelation[Course] = fields.ForeignKeyField(
        "core.Course", related_name=False, on_delete=fields.CASCADE
    )
    learner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, on_delete=fields.CASCADE
    )
    is_public = fields.BooleanField(default=False)

    class Meta:
        table = "agora_learner_record"
        unique_together = (("course", "learner"),)
