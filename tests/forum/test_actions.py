"""Every state change of the forums, through forum.actions: the new state and its side effects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from tortoise.models import Model

from core import actions as core_actions
from core import jobs
from core.errors import InvalidInput, PermissionDenied
from core.models import Course, Notification, OutboxEvent, Role, User
from core.settings import Settings
from forum import actions
from forum.markup import MAX_BODY_CHARS
from forum.models import (
    Forum,
    Post,
    Revision,
    Subscription,
    Thread,
    ThreadKind,
    ThreadVisit,
    Vote,
)
from moderation.models import LogEntry
from search import service
from search.backends import SearchQuery
from tests.conftest import drain_jobs
from tests.factories import (
    add_member,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass(slots=True)
class Cast:
    course: Course
    forum: Forum
    instructor: User
    mentor: User
    asker: User
    learner: User
    outsider: User


@pytest.fixture
async def cast(db: Settings) -> Cast:
    """A course with an instructor, a mentor, two learners, one forum, and a non-member."""
    instructor = await make_user("ines")
    course = await make_course(instructor, title="Algorithms")
    mentor, asker, learner = await make_user("mona"), await make_user("ali"), await make_user("lea")
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, asker)
    await add_member(course, learner)
    outsider = await make_user("otto")
    forum = await make_forum(course, title="Questions")
    await drain_jobs()
    return Cast(course, forum, instructor, mentor, asker, learner, outsider)


TABLES: tuple[type[Model], ...] = (
    Forum,
    Thread,
    Post,
    Revision,
    Vote,
    Subscription,
    ThreadVisit,
    Notification,
    OutboxEvent,
)


async def row_counts() -> dict[str, int]:
    return {model.__name__: await model.all().count() for model in TABLES}


async def last_event_id() -> int:
    last = await OutboxEvent.all().order_by("-id").first()
    return last.id if last else 0


async def events_after(mark: int) -> list[tuple[str, dict[str, Any]]]:
    rows = await OutboxEvent.filter(id__gt=mark).order_by("id")
    return [(row.kind, row.payload) for row in rows]


async def refused(
    error: type[Exception], work: Awaitable[object], *, fields: set[str] | None = None
) -> None:
    """`work` raises `error` (with exactly these fields) and writes nothing at all."""
    await drain_jobs()
    before = await row_counts()
    with pytest.raises(error) as caught:
        await work
    if fields is not None:
        assert isinstance(caught.value, InvalidInput)
        assert set(caught.value.fields) == fields
        assert all(message.strip() for message in caught.value.fields.values())
    assert await row_counts() == before


async def user_ids(query: Any) -> list[int]:
    """The user_id column of a queryset's rows."""
    return [int(value) for value in await query.values_list("user_id", flat=True)]


async def search_post_ids(course: Course, text: str = "", **filters: Any) -> set[int]:
    results = await service.backend().search(
        SearchQuery(text=text, course_ids=[course.id], **filters)
    )
    return {hit.post_id for hit in results.hits}


async def opening_of(thread: Thread) -> Post:
    return await Post.get(thread_id=thread.id, is_opening=True)


# ---------------------------------------------------------------- forums


async def test_create_forum_appends_in_order(cast: Cast) -> None:
    second = await actions.create_forum(
        cast.course,
        title="  General   talk ",
        description="  Anything goes.  ",
        allow_anonymous=False,
        acting_user=cast.instructor,
    )
    stored = await Forum.get(id=second.id)
    assert stored.title == "General talk"
    assert stored.description == "Anything goes."
    assert stored.allow_anonymous is False
    assert stored.course_id == cast.course.id  # type: ignore[attr-defined]
    assert (cast.forum.position, stored.position) == (0, 1)
    third = await actions.create_forum(cast.course, title="Third", acting_user=cast.instructor)
    assert third.position == 2 and third.allow_anonymous is True


async def test_only_instructors_and_admins_create_forums(cast: Cast) -> None:
    for user in (cast.mentor, cast.learner, cast.outsider):
        await refused(
            PermissionDenied, actions.create_forum(cast.course, title="Nope", acting_user=user)
        )
    admin = await make_user("root", is_admin=True)
    forum = await actions.create_forum(cast.course, title="By an admin", acting_user=admin)
    assert forum.course_id == cast.course.id  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("title", "description", "field"),
    [
        ("", "", "title"),
        ("   ", "", "title"),
        ("x" * 121, "", "title"),
        ("Ok", "d" * 2001, "description"),
    ],
)
async def test_create_forum_rejects_bad_input(
    cast: Cast, title: str, description: str, field: str
) -> None:
    await refused(
        InvalidInput,
        actions.create_forum(
            cast.course, title=title, description=description, acting_user=cast.instructor
        ),
        fields={field},
    )


async def test_update_forum(cast: Cast) -> None:
    updated = await actions.update_forum(
        cast.forum,
        title=" Q &  A ",
        description=" Ask here ",
        allow_anonymous=False,
        acting_user=cast.instructor,
    )
    stored = await Forum.get(id=cast.forum.id)
    assert (stored.title, stored.description, stored.allow_anonymous) == (
        "Q & A",
        "Ask here",
        False,
    )
    assert updated.title == "Q & A"

    await refused(
        PermissionDenied,
        actions.update_forum(
            cast.forum, title="Mine", description="", allow_anonymous=True, acting_user=cast.mentor
        ),
    )
    await refused(
        InvalidInput,
        actions.update_forum(
            cast.forum,
            title="",
            description="",
            allow_anonymous=True,
            acting_user=cast.instructor,
        ),
        fields={"title"},
    )
    assert (await Forum.get(id=cast.forum.id)).title == "Q & A"


async def test_move_forum(cast: Cast) -> None:
    second = await make_forum(cast.course, title="Second")
    third = await make_forum(cast.course, title="Third")
    order = await actions.move_forum(third, up=True, acting_user=cast.instructor)
    assert [f.id for f in order] == [cast.forum.id, third.id, second.id]
    stored = await Forum.filter(course_id=cast.course.id).order_by("position")
    assert [(f.id, f.position) for f in stored] == [
        (cast.forum.id, 0),
        (third.id, 1),
        (second.id, 2),
    ]
    # The first cannot move further up, the last not further down.
    await actions.move_forum(cast.forum, up=True, acting_user=cast.instructor)
    await actions.move_forum(second, up=False, acting_user=cast.instructor)
    stored = await Forum.filter(course_id=cast.course.id).order_by("position")
    assert [f.id for f in stored] == [cast.forum.id, third.id, second.id]
    await refused(PermissionDenied, actions.move_forum(second, up=True, acting_user=cast.learner))


# ---------------------------------------------------------------- start_thread


async def test_start_thread_writes_thread_opening_post_subscription_and_one_event(
    cast: Cast,
) -> None:
    mark = await last_event_id()
    thread = await actions.start_thread(
        cast.forum,
        kind="question",
        title="  How do   heaps work? ",
        body="Why is **sift-down** O(log n)? <script>alert(1)</script>",
        acting_user=cast.asker,
    )
    stored = await Thread.get(id=thread.id)
    assert stored.title == "How do heaps work?"
    assert stored.kind == ThreadKind.QUESTION
    assert stored.author_id == cast.asker.id  # type: ignore[attr-defined]
    assert stored.course_id == cast.course.id  # type: ignore[attr-defined]
    assert stored.reply_count == 0 and stored.accepted_post_id is None
    assert not stored.is_anonymous and not stored.is_locked

    posts = await Post.filter(thread_id=thread.id)
    assert len(posts) == 1
    opening = posts[0]
    assert opening.is_opening and opening.parent_id is None  # type: ignore[attr-defined]
    assert opening.author_id == cast.asker.id  # type: ignore[attr-defined]
    assert "<strong>sift-down</strong>" in opening.body_html
    assert "<script" not in opening.body_html
    assert "&lt;script&gt;" in opening.body_html
    assert opening.body_markdown.startswith("Why is **sift-down**")

    assert await user_ids(Subscription.filter(thread_id=thread.id)) == [cast.asker.id]
    assert await ThreadVisit.filter(thread_id=thread.id, user_id=cast.asker.id).count() == 1
    assert await events_after(mark) == [("search.index_post", {"post_id": opening.id})]

    await drain_jobs()
    assert await search_post_ids(cast.course, "heaps") == {opening.id}


async def test_start_thread_anonymously_where_allowed(cast: Cast) -> None:
    thread = await actions.start_thread(
        cast.forum,
        kind=ThreadKind.DISCUSSION,
        title="Shy",
        body="Hello",
        anonymous=True,
        acting_user=cast.learner,
    )
    assert (await Thread.get(id=thread.id)).is_anonymous
    assert (await opening_of(thread)).is_anonymous


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"body": ""}, {"body"}),
        ({"body": "  \n\t "}, {"body"}),
        ({"body": "x" * (MAX_BODY_CHARS + 1)}, {"body"}),
        ({"title": "Hi"}, {"title"}),
        ({"title": "t" * 201}, {"title"}),
        ({"kind": "poll"}, {"kind"}),
        ({"anonymous": True}, {"anonymous"}),
        ({"title": "", "body": ""}, {"title", "body"}),
    ],
)
async def test_start_thread_rejects_bad_input_and_writes_nothing(
    cast: Cast, changes: dict[str, Any], fields: set[str]
) -> None:
    closed = await make_forum(cast.course, title="Named only", allow_anonymous=False)
    arguments: dict[str, Any] = {"kind": "discussion", "title": "A fine title", "body": "Text"}
    await refused(
        InvalidInput,
        actions.start_thread(closed, **(arguments | changes), acting_user=cast.learner),
        fields=fields,
    )


async def test_start_thread_accepts_the_longest_body(cast: Cast) -> None:
    thread = await actions.start_thread(
        cast.forum,
        kind="discussion",
        title="Long",
        body="y" * MAX_BODY_CHARS,
        acting_user=cast.learner,
    )
    assert len((await opening_of(thread)).body_markdown) == MAX_BODY_CHARS


async def test_start_thread_refuses_non_members_and_suspended_members(cast: Cast) -> None:
    await refused(
        PermissionDenied,
        actions.start_thread(
            cast.forum,
            kind="discussion",
            title="Hello there",
            body="Hi",
            acting_user=cast.outsider,
        ),
    )
    await core_actions.set_user_active(cast.learner, False, acting_user=None)
    await refused(
        PermissionDenied,
        actions.start_thread(
            cast.forum,
            kind="discussion",
            title="Hello there",
            body="Hi",
            acting_user=cast.learner,
        ),
    )


# ---------------------------------------------------------------- reply


async def test_reply_bumps_the_thread_and_writes_two_events(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker, kind="question")
    before = await Thread.get(id=thread.id)
    mark = await last_event_id()
    post = await actions.reply(thread, body="Use a *heap*.", acting_user=cast.learner)

    stored = await Post.get(id=post.id)
    assert stored.thread_id == thread.id  # type: ignore[attr-defined]
    assert stored.parent_id is None and not stored.is_opening  # type: ignore[attr-defined]
    assert stored.author_id == cast.learner.id  # type: ignore[attr-defined]
    assert "<em>heap</em>" in stored.body_html
    after = await Thread.get(id=thread.id)
    assert after.reply_count == 1
    assert after.last_activity_at > before.last_activity_at
    assert thread.reply_count == 1  # the caller's object is kept in step
    assert await events_after(mark) == [
        ("forum.reply", {"post_id": post.id}),
        ("search.index_post", {"post_id": post.id}),
    ]
    # The replier now follows the thread.
    assert await Subscription.filter(thread_id=thread.id, user_id=cast.learner.id).exists()


async def test_reply_notifies_every_subscriber_but_the_replier_exactly_once(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker, title="Heaps")
    await actions.set_subscription(thread, subscribed=True, acting_user=cast.mentor)
    await actions.set_subscription(thread, subscribed=True, acting_user=cast.learner)
    mark = await last_event_id()
    post = await actions.reply(thread, body="An answer", acting_user=cast.learner)
    await drain_jobs()

    def replies(user: User) -> Any:
        return Notification.filter(user_id=user.id, kind="reply")

    for subscriber in (cast.asker, cast.mentor):
        notices = await replies(subscriber)
        assert len(notices) == 1
        assert notices[0].message == f"{cast.learner.display_name} replied in “Heaps”."
        assert notices[0].link == f"/courses/{cast.course.slug}/threads/{thread.id}#post-{post.id}"
    assert await replies(cast.learner).count() == 0
    assert await replies(cast.instructor).count() == 0

    event = await OutboxEvent.get(id__gt=mark, kind="forum.reply")
    assert event.delivered_at is not None
    # Delivered events are not delivered again...
    assert await jobs.deliver(event.id) is False
    # ...and a handler that runs twice (a crash before the "delivered" mark) adds nothing.
    await OutboxEvent.filter(id=event.id).update(delivered_at=None)
    assert await jobs.deliver(event.id) is True
    assert await Notification.filter(kind="reply").count() == 2


async def test_a_reply_deleted_before_delivery_notifies_nobody(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    await drain_jobs()

    async def later() -> None:
        pass

    monkeypatch.setattr(jobs, "wake", later)  # the worker is slow today
    post = await actions.reply(thread, body="Oops", acting_user=cast.learner)
    await actions.delete_own_post(post, acting_user=cast.learner)
    assert await jobs.deliver_pending() == 3
    assert await Notification.filter(kind="reply").count() == 0


async def test_reply_to_a_reply_attaches_to_the_top_level_answer(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    answer = await make_reply(thread, cast.learner)
    nested = await make_reply(thread, cast.asker, parent=answer)
    deeper = await make_reply(thread, cast.mentor, parent=nested)
    assert (await Post.get(id=nested.id)).parent_id == answer.id  # type: ignore[attr-defined]
    assert (await Post.get(id=deeper.id)).parent_id == answer.id  # type: ignore[attr-defined]
    assert (await Thread.get(id=thread.id)).reply_count == 3


async def test_reply_counts_are_not_lost_with_stale_thread_objects(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    # Two requests that loaded the thread at the same moment.
    first, second = await Thread.get(id=thread.id), await Thread.get(id=thread.id)
    await actions.reply(first, body="One", acting_user=cast.learner)
    await actions.reply(second, body="Two", acting_user=cast.mentor)
    assert (await Thread.get(id=thread.id)).reply_count == 2


async def test_reply_refuses_a_parent_that_is_not_an_answer_of_this_thread(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    other = await make_thread(cast.forum, cast.asker)
    elsewhere = await make_reply(other, cast.learner)
    for parent in (await opening_of(thread), elsewhere):
        await refused(
            InvalidInput,
            actions.reply(thread, body="Hi", parent=parent, acting_user=cast.learner),
            fields={"parent"},
        )


@pytest.mark.parametrize(
    ("body", "anonymous", "field"),
    [("", False, "body"), ("z" * (MAX_BODY_CHARS + 1), False, "body"), ("ok", True, "anonymous")],
)
async def test_reply_rejects_bad_input_and_writes_nothing(
    cast: Cast, body: str, anonymous: bool, field: str
) -> None:
    closed = await make_forum(cast.course, allow_anonymous=False)
    thread = await make_thread(closed, cast.asker)
    await refused(
        InvalidInput,
        actions.reply(thread, body=body, anonymous=anonymous, acting_user=cast.learner),
        fields={field},
    )
    assert (await Thread.get(id=thread.id)).reply_count == 0


async def test_a_locked_thread_refuses_learners_but_not_staff(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    await Thread.filter(id=thread.id).update(is_locked=True)
    locked = await Thread.get(id=thread.id)
    for learner in (cast.asker, cast.learner):
        await refused(PermissionDenied, actions.reply(locked, body="Hi", acting_user=learner))
    for staff in (cast.mentor, cast.instructor):
        await actions.reply(locked, body="Staff note", acting_user=staff)
    assert (await Thread.get(id=thread.id)).reply_count == 2


# ---------------------------------------------------------------- edit_post


async def test_edit_post_keeps_the_previous_text_as_a_revision(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    post = await make_reply(thread, cast.learner, body="First *draft*")
    mark = await last_event_id()
    edited = await actions.edit_post(post, body="Second **draft**", acting_user=cast.learner)

    stored = await Post.get(id=post.id)
    assert stored.body_markdown == "Second **draft**"
    assert "<strong>draft</strong>" in stored.body_html
    assert stored.edited_at is not None and stored.revision_count == 1
    assert edited.revision_count == 1 and edited.body_markdown == "Second **draft**"
    revisions = await Revision.filter(post_id=post.id)
    assert len(revisions) == 1
    revision = revisions[0]
    assert revision.previous_markdown == "First *draft*"
    assert revision.previous_title is None
    assert revision.editor_id == cast.learner.id  # type: ignore[attr-defined]
    assert revision.by_staff is False
    assert await events_after(mark) == [("search.index_post", {"post_id": post.id})]

    await actions.edit_post(post, body="Third", acting_user=cast.learner)
    assert [r.previous_markdown for r in await Revision.filter(post_id=post.id)] == [
        "First *draft*",
        "Second **draft**",
    ]
    assert (await Post.get(id=post.id)).revision_count == 2


async def test_a_mentor_editing_a_learners_post_is_a_staff_edit(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    post = await make_reply(thread, cast.learner, body="Wrong")
    # Editing someone else's post is a moderation act: it cites a rule and gives a reason.
    await refused(InvalidInput, actions.edit_post(post, body="Corrected", acting_user=cast.mentor))
    await actions.edit_post(
        post,
        body="Corrected by staff",
        rule_code="R2",
        reason="The formula was wrong and misled others.",
        acting_user=cast.mentor,
    )
    revision = await Revision.get(post_id=post.id)
    assert revision.by_staff is True
    assert revision.editor_id == cast.mentor.id  # type: ignore[attr-defined]
    assert revision.previous_markdown == "Wrong"
    assert (await Post.get(id=post.id)).body_markdown == "Corrected by staff"
    entries = await LogEntry.filter(target_type="post", target_id=post.id)
    assert [(e.act, e.rule_code) for e in entries] == [("edit_post", "R2")]


async def test_editing_the_opening_post_can_retitle_the_thread(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker, title="Old title", body="Body")
    opening = await opening_of(thread)
    await make_reply(thread, cast.learner, body="An answer")
    await drain_jobs()
    mark = await last_event_id()
    await actions.edit_post(
        opening, body="Body", title="  Brand   new title ", acting_user=cast.asker
    )

    assert (await Thread.get(id=thread.id)).title == "Brand new title"
    revision = await Revision.get(post_id=opening.id)
    assert (revision.previous_title, revision.previous_markdown) == ("Old title", "Body")
    assert await events_after(mark) == [("search.index_thread", {"thread_id": thread.id})]
    await drain_jobs()
    # Every post of the thread is found by the new title.
    assert len(await search_post_ids(cast.course, "brand")) == 2


async def test_a_title_on_a_reply_is_ignored(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker, title="Keep me")
    post = await make_reply(thread, cast.learner, body="Before")
    mark = await last_event_id()
    await actions.edit_post(post, body="After", title="Hijack", acting_user=cast.learner)
    assert (await Thread.get(id=thread.id)).title == "Keep me"
    assert (await Revision.get(post_id=post.id)).previous_title is None
    assert [kind for kind, _ in await events_after(mark)] == ["search.index_post"]


async def test_an_edit_that_changes_nothing_writes_nothing(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker, title="Same", body="Same body")
    opening = await opening_of(thread)
    before = await row_counts()
    await actions.edit_post(opening, body="Same body\n\n", title=" Same ", acting_user=cast.asker)
    assert await row_counts() == before
    assert (await Post.get(id=opening.id)).edited_at is None


@pytest.mark.parametrize(
    ("body", "title", "fields"),
    [
        ("", None, {"body"}),
        ("q" * (MAX_BODY_CHARS + 1), None, {"body"}),
        ("Fine", "ab", {"title"}),
        ("", "ab", {"title", "body"}),
    ],
)
async def test_edit_post_rejects_bad_input_and_changes_nothing(
    cast: Cast, body: str, title: str | None, fields: set[str]
) -> None:
    thread = await make_thread(cast.forum, cast.asker, title="Original", body="Original body")
    opening = await opening_of(thread)
    await refused(
        InvalidInput,
        actions.edit_post(opening, body=body, title=title, acting_user=cast.asker),
        fields=fields,
    )
    stored = await Post.get(id=opening.id)
    assert (stored.body_markdown, stored.revision_count) == ("Original body", 0)
    assert (await Thread.get(id=thread.id)).title == "Original"


async def test_edit_post_refuses_other_learners_outsiders_and_deleted_posts(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    post = await make_reply(thread, cast.learner, body="Mine")
    for user in (cast.asker, cast.outsider):
        await refused(PermissionDenied, actions.edit_post(post, body="Theirs", acting_user=user))
    await actions.delete_own_post(post, acting_user=cast.learner)
    deleted = await Post.get(id=post.id)
    for user in (cast.learner, cast.instructor):
        await refused(PermissionDenied, actions.edit_post(deleted, body="Back", acting_user=user))


# ---------------------------------------------------------------- delete_own_post


async def test_delete_own_post_leaves_a_tombstone_and_keeps_replies(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    answer = await make_reply(thread, cast.learner, body="Secret draft")
    await actions.edit_post(answer, body="Secret final", acting_user=cast.learner)
    reply_to_it = await make_reply(thread, cast.asker, parent=answer, body="Thanks")
    await drain_jobs()
    assert answer.id in await search_post_ids(cast.course, "secret")
    assert (await Thread.get(id=thread.id)).reply_count == 2
    mark = await last_event_id()

    await actions.delete_own_post(answer, acting_user=cast.learner)

    stored = await Post.get(id=answer.id)
    assert stored.deleted_at is not None and stored.is_deleted
    assert (stored.body_markdown, stored.body_html, stored.revision_count) == ("", "", 0)
    assert await Revision.filter(post_id=answer.id).count() == 0
    assert await Post.filter(id=reply_to_it.id).exists()
    assert (await Post.get(id=reply_to_it.id)).body_markdown == "Thanks"
    assert (await Thread.get(id=thread.id)).reply_count == 1
    assert answer.is_deleted and answer.body_markdown == ""
    assert await events_after(mark) == [("search.index_post", {"post_id": answer.id})]
    await drain_jobs()
    assert await search_post_ids(cast.course, "secret") == set()


async def test_deleting_the_opening_post_keeps_the_reply_count(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    await make_reply(thread, cast.learner)
    await actions.delete_own_post(await opening_of(thread), acting_user=cast.asker)
    stored = await Thread.get(id=thread.id)
    assert stored.reply_count == 1
    assert (await opening_of(thread)).is_deleted


async def test_only_the_author_deletes_and_only_once(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    post = await make_reply(thread, cast.learner)
    for user in (cast.asker, cast.mentor, cast.instructor, cast.outsider):
        await refused(PermissionDenied, actions.delete_own_post(post, acting_user=user))
    await actions.delete_own_post(post, acting_user=cast.learner)
    await refused(
        PermissionDenied,
        actions.delete_own_post(await Post.get(id=post.id), acting_user=cast.learner),
    )
    assert (await Thread.get(id=thread.id)).reply_count == 0


# ---------------------------------------------------------------- set_vote


async def test_set_vote_is_idempotent_and_counts(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    post = await make_reply(thread, cast.learner)
    before = await last_event_id()

    voted = await actions.set_vote(post, up=True, acting_user=cast.asker)
    assert voted.vote_count == 1
    await actions.set_vote(post, up=True, acting_user=cast.asker)
    assert (await Post.get(id=post.id)).vote_count == 1
    assert await Vote.filter(post_id=post.id).count() == 1

    await actions.set_vote(post, up=True, acting_user=cast.mentor)
    assert (await Post.get(id=post.id)).vote_count == 2

    await actions.set_vote(post, up=False, acting_user=cast.asker)
    await actions.set_vote(post, up=False, acting_user=cast.asker)
    assert (await Post.get(id=post.id)).vote_count == 1
    assert await user_ids(Vote.filter(post_id=post.id)) == [cast.mentor.id]
    assert await last_event_id() == before


async def test_votes_refused_on_own_deleted_or_foreign_posts(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    post = await make_reply(thread, cast.learner)
    with pytest.raises(PermissionDenied, match="own post"):
        await actions.set_vote(post, up=True, acting_user=cast.learner)
    await refused(PermissionDenied, actions.set_vote(post, up=True, acting_user=cast.outsider))
    await actions.delete_own_post(post, acting_user=cast.learner)
    await refused(
        PermissionDenied,
        actions.set_vote(await Post.get(id=post.id), up=True, acting_user=cast.asker),
    )
    assert (await Post.get(id=post.id)).vote_count == 0


# ---------------------------------------------------------------- accept_answer


async def test_the_asker_accepts_and_clears_an_answer(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker, kind="question")
    answer = await make_reply(thread, cast.learner)
    mark = await last_event_id()
    result = await actions.accept_answer(thread, answer, acting_user=cast.asker)
    assert result.accepted_post_id == answer.id
    assert (await Thread.get(id=thread.id)).accepted_post_id == answer.id
    assert await events_after(mark) == [("search.index_thread", {"thread_id": thread.id})]
    await drain_jobs()
    assert answer.id not in await search_post_ids(cast.course, unanswered_only=True)

    await actions.accept_answer(thread, None, acting_user=cast.asker)
    assert (await Thread.get(id=thread.id)).accepted_post_id is None
    await drain_jobs()
    assert answer.id in await search_post_ids(cast.course, unanswered_only=True)


async def test_staff_accept_answers_other_learners_do_not(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker, kind="question")
    first = await make_reply(thread, cast.learner)
    second = await make_reply(thread, cast.instructor)
    await actions.accept_answer(thread, first, acting_user=cast.mentor)
    await actions.accept_answer(await Thread.get(id=thread.id), second, acting_user=cast.instructor)
    assert (await Thread.get(id=thread.id)).accepted_post_id == second.id
    for user in (cast.learner, cast.outsider):
        await refused(
            PermissionDenied,
            actions.accept_answer(await Thread.get(id=thread.id), first, acting_user=user),
        )
    assert (await Thread.get(id=thread.id)).accepted_post_id == second.id


async def test_accept_answer_only_for_top_level_live_answers_of_this_question(cast: Cast) -> None:
    question = await make_thread(cast.forum, cast.asker, kind="question")
    answer = await make_reply(question, cast.learner)
    nested = await make_reply(question, cast.mentor, parent=answer)
    gone = await make_reply(question, cast.learner)
    await actions.delete_own_post(gone, acting_user=cast.learner)
    other = await make_thread(cast.forum, cast.asker, kind="question")
    foreign = await make_reply(other, cast.learner)
    for post in (nested, await Post.get(id=gone.id), await opening_of(question), foreign):
        await refused(InvalidInput, actions.accept_answer(question, post, acting_user=cast.asker))
    discussion = await make_thread(cast.forum, cast.asker, kind="discussion")
    reply = await make_reply(discussion, cast.learner)
    await refused(InvalidInput, actions.accept_answer(discussion, reply, acting_user=cast.asker))
    assert await Thread.exclude(accepted_post_id=None).count() == 0


# ---------------------------------------------------------------- endorse


async def test_only_staff_endorse(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    post = await make_reply(thread, cast.learner)
    endorsed = await actions.endorse(post, endorsed=True, acting_user=cast.mentor)
    assert endorsed.is_endorsed and (await Post.get(id=post.id)).is_endorsed
    await actions.endorse(post, endorsed=False, acting_user=cast.instructor)
    assert not (await Post.get(id=post.id)).is_endorsed
    for user in (cast.learner, cast.asker, cast.outsider):
        with pytest.raises(PermissionDenied):
            await actions.endorse(post, endorsed=True, acting_user=user)
    assert not (await Post.get(id=post.id)).is_endorsed


# ---------------------------------------------------------------- subscriptions and visits


async def test_set_subscription_toggles_idempotently(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)

    async def followers() -> list[int]:
        return sorted(await user_ids(Subscription.filter(thread_id=thread.id)))

    assert await actions.set_subscription(thread, subscribed=True, acting_user=cast.learner)
    assert await actions.set_subscription(thread, subscribed=True, acting_user=cast.learner)
    assert await followers() == sorted([cast.asker.id, cast.learner.id])
    assert not await actions.set_subscription(thread, subscribed=False, acting_user=cast.asker)
    assert not await actions.set_subscription(thread, subscribed=False, acting_user=cast.asker)
    assert await followers() == [cast.learner.id]

    await make_reply(thread, cast.mentor)
    await drain_jobs()
    assert await Notification.filter(user_id=cast.asker.id, kind="reply").count() == 0
    assert await Notification.filter(user_id=cast.learner.id, kind="reply").count() == 1


async def test_mark_visited_keeps_one_row_per_reader(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    await actions.mark_visited(thread, acting_user=cast.learner)
    first = await ThreadVisit.get(thread_id=thread.id, user_id=cast.learner.id)
    await actions.mark_visited(thread, acting_user=cast.learner)
    rows = await ThreadVisit.filter(thread_id=thread.id, user_id=cast.learner.id)
    assert len(rows) == 1
    assert rows[0].last_seen_at >= first.last_seen_at


async def test_replying_moves_the_repliers_visit_marker(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.asker)
    before = (await ThreadVisit.get(thread_id=thread.id, user_id=cast.asker.id)).last_seen_at
    await make_reply(thread, cast.asker)
    after = (await ThreadVisit.get(thread_id=thread.id, user_id=cast.asker.id)).last_seen_at
    assert after > before
    assert (await Thread.get(id=thread.id)).last_activity_at == after


# ---------------------------------------------------------------- non-members


Work = Callable[[Cast, Thread, Post], Awaitable[object]]

EVERY_ACTION: dict[str, Work] = {
    "create_forum": lambda c, t, p: actions.create_forum(
        c.course, title="Mine", acting_user=c.outsider
    ),
    "update_forum": lambda c, t, p: actions.update_forum(
        c.forum, title="Mine", description="", allow_anonymous=True, acting_user=c.outsider
    ),
    "move_forum": lambda c, t, p: actions.move_forum(c.forum, up=False, acting_user=c.outsider),
    "start_thread": lambda c, t, p: actions.start_thread(
        c.forum, kind="question", title="Hello", body="Hi", acting_user=c.outsider
    ),
    "reply": lambda c, t, p: actions.reply(t, body="Hi", acting_user=c.outsider),
    "reply_to_answer": lambda c, t, p: actions.reply(
        t, body="Hi", parent=p, acting_user=c.outsider
    ),
    "edit_post": lambda c, t, p: actions.edit_post(p, body="Mine now", acting_user=c.outsider),
    "delete_own_post": lambda c, t, p: actions.delete_own_post(p, acting_user=c.outsider),
    "set_vote": lambda c, t, p: actions.set_vote(p, up=True, acting_user=c.outsider),
    "accept_answer": lambda c, t, p: actions.accept_answer(t, p, acting_user=c.outsider),
    "endorse": lambda c, t, p: actions.endorse(p, endorsed=True, acting_user=c.outsider),
    "set_subscription": lambda c, t, p: actions.set_subscription(
        t, subscribed=True, acting_user=c.outsider
    ),
}


@pytest.mark.parametrize("name", list(EVERY_ACTION))
async def test_non_members_are_refused_everywhere(cast: Cast, name: str) -> None:
    thread = await make_thread(cast.forum, cast.asker, kind="question")
    post = await make_reply(thread, cast.learner)
    await drain_jobs()
    await refused(PermissionDenied, EVERY_ACTION[name](cast, await Thread.get(id=thread.id), post))
    # A member of another course is no member of this one either.
    other_course = await make_course(cast.outsider)
    assert await other_course.role_of(cast.outsider) == Role.INSTRUCTOR
    await refused(PermissionDenied, EVERY_ACTION[name](cast, await Thread.get(id=thread.id), post))
