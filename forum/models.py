"""Forums, threads, posts, revisions, votes, subscriptions and visit markers."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from core.errors import NotFound
from core.models import Course, Role, User
from core.orm import Model

# Ids are 32-bit integer columns: a larger number in a URL names nothing.
MAX_ID = 2**31 - 1
ANONYMOUS_LABEL = "Anonymous learner"
DELETED_USER_LABEL = "Deleted user"


class PostState(StrEnum):
    VISIBLE = "visible"
    # Others see a notice (time, rule, reason); the author and the course's staff see the text.
    HIDDEN = "hidden"
    # Only the course's staff see the text, kept for appeals.
    REMOVED = "removed"


class ThreadKind(StrEnum):
    DISCUSSION = "discussion"
    QUESTION = "question"


def is_staff(user: User | None, role: Role | None) -> bool:
    return user is not None and (user.is_admin or (role is not None and role.is_staff))


class Forum(Model):
    id = fields.IntField(primary_key=True)
    course: fields.ForeignKeyRelation[Course] = fields.ForeignKeyField(
        "core.Course", related_name="forums", on_delete=fields.CASCADE
    )
    title = fields.CharField(max_length=120)
    description = fields.TextField(default="")
    position = fields.IntField(default=0)
    allow_anonymous = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agora_forum"
        ordering = ("position", "id")
        indexes = (("course_id", "position"),)

    def can_be_posted_in_by(self, user: User | None, role: Role | None) -> bool:
        return user is not None and user.is_active and (user.is_admin or role is not None)

    def can_be_managed_by(self, user: User | None, role: Role | None) -> bool:
        return user is not None and user.is_active and (user.is_admin or role == Role.INSTRUCTOR)


class Thread(Model):
    id = fields.IntField(primary_key=True)
    forum: fields.ForeignKeyRelation[Forum] = fields.ForeignKeyField(
        "forum.Forum", related_name="threads", on_delete=fields.CASCADE
    )
    course: fields.ForeignKeyRelation[Course] = fields.ForeignKeyField(
        "core.Course", related_name="threads", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(ThreadKind, default=ThreadKind.DISCUSSION, max_length=16)
    title = fields.CharField(max_length=200)
    author: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "core.User", related_name="threads", null=True, on_delete=fields.SET_NULL
    )
    is_anonymous = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_activity_at = fields.DatetimeField(db_index=True)
    reply_count = fields.IntField(default=0)
    is_locked = fields.BooleanField(default=False)
    is_pinned = fields.BooleanField(default=False)
    accepted_post_id = fields.IntField(null=True)

    class Meta:
        table = "agora_thread"
        # A forum's threads and a course's threads (the API), pinned first, latest activity next.
        indexes = (
            ("forum_id", "is_pinned", "last_activity_at"),
            ("course_id", "is_pinned", "last_activity_at"),
        )

    def can_accept_answer(self, user: User | None, role: Role | None) -> bool:
        if self.kind != ThreadKind.QUESTION or user is None or not user.is_active:
            return False
        return is_staff(user, role) or self.author_id == user.id  # type: ignore[attr-defined]

    def can_be_replied_to_by(self, user: User | None, role: Role | None) -> bool:
        if user is None or not user.is_active or (user.is_admin is False and role is None):
            return False
        return not self.is_locked or is_staff(user, role)


class Post(Model):
    id = fields.IntField(primary_key=True)
    thread: fields.ForeignKeyRelation[Thread] = fields.ForeignKeyField(
        "forum.Thread", related_name="posts", on_delete=fields.CASCADE
    )
    # One level of nesting: a reply's parent is a top-level post, never another reply.
    parent: fields.ForeignKeyNullableRelation[Post] = fields.ForeignKeyField(
        "forum.Post", related_name="replies", null=True, on_delete=fields.CASCADE
    )
    is_opening = fields.BooleanField(default=False)
    author: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "core.User", related_name="posts", null=True, on_delete=fields.SET_NULL
    )
    is_anonymous = fields.BooleanField(default=False)
    body_markdown = fields.TextField()
    body_html = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    edited_at = fields.DatetimeField(null=True)
    revision_count = fields.IntField(default=0)
    deleted_at = fields.DatetimeField(null=True)
    is_endorsed = fields.BooleanField(default=False)
    vote_count = fields.IntField(default=0)
    state = fields.CharEnumField(PostState, default=PostState.VISIBLE, max_length=16)
    # The log entry that put the post in its current state (None while visible).
    state_seq = fields.BigIntField(null=True)

    class Meta:
        table = "agora_post"
        # A thread's posts in order, and an author's posts (exports, account deletion).
        indexes = (("thread_id", "parent_id", "id"), ("author_id", "created_at"))

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def is_by(self, user: User | None) -> bool:
        return user is not None and self.author_id == user.id  # type: ignore[attr-defined]

    def can_be_edited_by(self, user: User | None, role: Role | None) -> bool:
        if user is None or not user.is_active or self.is_deleted:
            return False
        return self.is_by(user) or is_staff(user, role)

    def can_be_deleted_by(self, user: User | None) -> bool:
        return user is not None and user.is_active and not self.is_deleted and self.is_by(user)

    def can_be_voted_on_by(self, user: User | None, role: Role | None) -> bool:
        if user is None or not user.is_active or self.is_deleted or self.is_by(user):
            return False
        return user.is_admin or role is not None

    def author_is_visible_to(self, user: User | None, role: Role | None) -> bool:
        """Anonymous posts show their author only to the author and the course's staff."""
        return not self.is_anonymous or self.is_by(user) or is_staff(user, role)


class Revision(Model):
    """The body a post had before one edit: who changed it, when, and the full previous text."""

    id = fields.IntField(primary_key=True)
    post: fields.ForeignKeyRelation[Post] = fields.ForeignKeyField(
        "forum.Post", related_name="revisions", on_delete=fields.CASCADE
    )
    editor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    edited_at = fields.DatetimeField(auto_now_add=True)
    previous_markdown = fields.TextField()
    previous_title = fields.CharField(max_length=200, null=True)
    by_staff = fields.BooleanField(default=False)

    class Meta:
        table = "agora_revision"
        ordering = ("id",)


class Vote(Model):
    id = fields.IntField(primary_key=True)
    post: fields.ForeignKeyRelation[Post] = fields.ForeignKeyField(
        "forum.Post", related_name="votes", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agora_vote"
        unique_together = (("post", "user"),)


class Subscription(Model):
    id = fields.IntField(primary_key=True)
    thread: fields.ForeignKeyRelation[Thread] = fields.ForeignKeyField(
        "forum.Thread", related_name="subscriptions", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agora_subscription"
        unique_together = (("thread", "user"),)


class ThreadVisit(Model):
    """When a user last read a thread, for "new since your last visit" markers."""

    id = fields.IntField(primary_key=True)
    thread: fields.ForeignKeyRelation[Thread] = fields.ForeignKeyField(
        "forum.Thread", related_name=False, on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "core.User", related_name=False, on_delete=fields.CASCADE
    )
    last_seen_at = fields.DatetimeField()

    class Meta:
        table = "agora_thread_visit"
        unique_together = (("thread", "user"),)


async def forum_in_course(course: Course, forum_id: int) -> Forum:
    """The forum with this id if it belongs to the course, else NotFound."""
    forum = await Forum.get_or_none(id=forum_id, course_id=course.id)
    if forum is None:
        raise NotFound("There is no such forum in this course.")
    return forum


async def thread_in_course(course: Course, thread_id: int, *, with_forum: bool = False) -> Thread:
    """The thread with this id in the course (its forum loaded if asked), else NotFound."""
    if not 0 < thread_id <= MAX_ID:  # ids are 32-bit columns: a larger number names nothing
        raise NotFound("There is no such thread in this course.")
    query = Thread.get_or_none(id=thread_id, course_id=course.id)
    thread = await (query.select_related("forum") if with_forum else query)
    if thread is None:
        raise NotFound("There is no such thread in this course.")
    return thread


async def post_in_course(course: Course, post_id: int) -> Post:
    """The post with this id if it belongs to the course, else NotFound."""
    post = await Post.get_or_none(id=post_id, thread__course_id=course.id)
    if post is None:
        raise NotFound("There is no such post in this course.")
    return post
