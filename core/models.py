"""Accounts, sessions, courses and roles, notifications and the job outbox."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from tortoise import fields

from core.orm import Model


class Role(StrEnum):
    LEARNER = "learner"
    MENTOR = "mentor"
    INSTRUCTOR = "instructor"

    @property
    def is_staff(self) -> bool:
        return self in {Role.MENTOR, Role.INSTRUCTOR}


class Enrolment(StrEnum):
    OPEN = "open"
    INVITE = "invite"


class User(Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=32, unique=True)
    display_name = fields.CharField(max_length=80)
    email = fields.CharField(max_length=254, null=True)
    password_hash = fields.CharField(max_length=255)
    is_admin = fields.BooleanField(default=False)
    can_create_courses = fields.BooleanField(default=False)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # Profile: every field optional, seen only by people sharing a course unless made public.
    about = fields.TextField(default="")
    links: Any = fields.JSONField(default=list)
    profile_public = fields.BooleanField(default=False)
    # Email preferences per notification category: "immediate", "daily" or "off".
    email_prefs: Any = fields.JSONField(default=dict)
    last_digest_at = fields.DatetimeField(null=True)
    # Set when the account is deleted: the row stays (the log hashes ids) with no personal data.
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "agora_user"

    def __str__(self) -> str:
        return self.username

    def may_create_courses(self) -> bool:
        return self.is_active and (self.is_admin or self.can_create_courses)


class AuthSession(Model):
    """A signed-in browser: the cookie holds a random key whose SHA-256 is stored here."""

    id = fields.IntField(primary_key=True)
    key_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name="sessions", on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    last_seen_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    user_agent = fields.CharField(max_length=300, default="")

    class Meta:
        table = "agora_session"

    def is_live(self, now: datetime, idle_seconds: int) -> bool:
        if self.revoked_at is not None or now >= self.expires_at:
            return False
        return (now - self.last_seen_at).total_seconds() < idle_seconds


class ApiToken(Model):
    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name="api_tokens", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=80, default="")
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "agora_api_token"


class Course(Model):
    id = fields.IntField(primary_key=True)
    slug = fields.CharField(max_length=64, unique=True)
    title = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    enrolment = fields.CharEnumField(Enrolment, default=Enrolment.INVITE, max_length=16)
    invite_code = fields.CharField(max_length=32, unique=True)
    # Whether logged-out readers of the moderation log see moderators' names, not "Mentor 1".
    public_moderator_names = fields.BooleanField(default=False)
    # Whether a member deleting their account may have their posts removed, not only unnamed.
    allow_removal_on_deletion = fields.BooleanField(default=True)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agora_course"
        ordering = ("title",)

    def __str__(self) -> str:
        return self.title

    async def membership_of(self, user: User | None) -> Membership | None:
        if user is None:
            return None
        return await Membership.get_or_none(course_id=self.id, user_id=user.id)

    async def role_of(self, user: User | None) -> Role | None:
        membership = await self.membership_of(user)
        return Role(membership.role) if membership else None

    def can_be_read_by(self, user: User | None, role: Role | None) -> bool:
        return user is not None and (user.is_admin or role is not None)

    def can_be_managed_by(self, user: User | None, role: Role | None) -> bool:
        return user is not None and user.is_active and (user.is_admin or role == Role.INSTRUCTOR)

    def can_be_joined_by(self, user: User | None, role: Role | None) -> bool:
        return user is not None and user.is_active and role is None


class Membership(Model):
    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name="memberships", on_delete=fields.CASCADE
    )
    course: fields.ForeignKeyRelation[Course] = fields.ForeignKeyField(
        "core.Course", related_name="memberships", on_delete=fields.CASCADE
    )
    role = fields.CharEnumField(Role, default=Role.LEARNER, max_length=16)
    joined_at = fields.DatetimeField(auto_now_add=True)
    role_changed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "agora_membership"
        unique_together = (("user", "course"),)


class RateLimitCounter(Model):
    """Hits of one limited key in one fixed window, shared by every web process."""

    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=200)
    window_start = fields.BigIntField()
    count = fields.IntField(default=0)

    class Meta:
        table = "agora_rate_limit"
        unique_together = (("key", "window_start"),)


class Notification(Model):
    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name="notifications", on_delete=fields.CASCADE
    )
    kind = fields.CharField(max_length=64)
    message = fields.TextField()
    link = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    read_at = fields.DatetimeField(null=True)
    # When it went out by email (alone or in a daily digest), if it did.
    emailed_at = fields.DatetimeField(null=True)
    # The outbox event (or other source) that made it: delivering twice makes one notification.
    dedupe_key = fields.CharField(max_length=128, unique=True)

    class Meta:
        table = "agora_notification"
        ordering = ("-created_at", "-id")
        # A user's notifications, newest first, and their unread count on every page.
        indexes = (("user_id", "created_at"), ("user_id", "read_at"))


class OutboxEvent(Model):
    """A side effect written in the same transaction as the change that causes it."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=64)
    payload: Any = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    delivered_at = fields.DatetimeField(null=True, db_index=True)
    attempts = fields.IntField(default=0)
    last_error = fields.TextField(null=True)
    # Which delivery run is working on the row, and until when: other runs leave it alone
    # until then, so a run that died lets go of its rows when the claim runs out.
    claimed_by = fields.CharField(max_length=64, null=True)
    claimed_until = fields.DatetimeField(null=True)

    class Meta:
        table = "agora_outbox"


class ExportStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"


class DataExport(Model):
    """A learner's request for a copy of their data, built by a background job into a ZIP."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name="exports", on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(ExportStatus, default=ExportStatus.QUEUED, max_length=16)
    progress = fields.IntField(default=0)
    stage = fields.CharField(max_length=120, default="")
    file_name = fields.CharField(max_length=200, default="")
    size_bytes = fields.BigIntField(default=0)
    error = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)

    class Meta:
        table = "agora_data_export"
        ordering = ("-created_at", "-id")
