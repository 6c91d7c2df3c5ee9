"""Reply notifications (forum.tasks) delivered a batch at a time."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core import jobs
from core.models import Course, Notification, OutboxEvent, User
from core.settings import Settings
from forum import actions
from forum.models import ANONYMOUS_LABEL, Forum, Thread
from tests.conftest import drain_jobs
from tests.factories import (
    add_member,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)
from tests.queries import count_queries

pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass(slots=True)
class Cast:
    course: Course
    forum: Forum
    asker: User
    learners: list[User]


@pytest.fixture
async def cast(db: Settings) -> Cast:
    instructor = await make_user("ines")
    course = await make_course(instructor, title="Seismology")
    asker = await make_user("ada", display_name="Ada Quake")
    await add_member(course, asker)
    learners = []
    for n in range(30):
        learner = await make_user(f"learner{n:02d}", display_name=f"Learner {n}")
        await add_member(course, learner)
        learners.append(learner)
    forum = await make_forum(course, title="Waves")
    await drain_jobs()
    return Cast(course, forum, asker, learners)


def hold_deliveries(monkeypatch: pytest.MonkeyPatch) -> None:
    async def later() -> None:
        return None

    monkeypatch.setattr(jobs, "wake", later)


def post_of(link: str) -> int:
    return int(link.rsplit("#post-", 1)[1])


async def thread_followed_by(cast: Cast, followers: list[User], title: str) -> Thread:
    thread = await make_thread(cast.forum, cast.asker, title=title)
    for user in followers:
        await actions.set_subscription(thread, subscribed=True, acting_user=user)
    return thread


async def test_a_batch_of_replies_tells_every_subscriber_once(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    followers = cast.learners[:10]
    thread = await thread_followed_by(cast, followers, "P waves")
    hold_deliveries(monkeypatch)
    named = await make_reply(thread, followers[0], body="Primary waves arrive first.")
    hidden_author = await make_reply(thread, followers[1], anonymous=True, body="S waves next.")
    await jobs.deliver_pending()

    notes = await Notification.filter(kind="reply").order_by("id")
    # Asker plus ten followers, less the author of each reply.
    assert len(notes) == 2 * 10
    by_link: dict[int, list[Notification]] = {}
    for note in notes:
        by_link.setdefault(post_of(note.link), []).append(note)
    assert (
        {n.user_id for n in by_link[named.id]}
        == {  # type: ignore[attr-defined]
            u.id for u in [cast.asker, *followers[1:]]
        }
    )
    assert (
        {n.user_id for n in by_link[hidden_author.id]}
        == {  # type: ignore[attr-defined]
            u.id for u in [cast.asker, followers[0], *followers[2:]]
        }
    )
    assert all(n.message == "Learner 0 replied in “P waves”." for n in by_link[named.id])
    assert all(
        n.message == f"{ANONYMOUS_LABEL} replied in “P waves”." for n in by_link[hidden_author.id]
    )
    assert all("Learner 1" not in n.message for n in notes)

    # Delivered again (a crash before the "delivered" mark): nothing new.
    await OutboxEvent.filter(kind="forum.reply").update(delivered_at=None)
    await jobs.deliver_pending()
    assert await Notification.filter(kind="reply").count() == 2 * 10


async def test_the_cost_of_a_reply_does_not_grow_with_its_subscribers(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = await thread_followed_by(cast, cast.learners[:2], "Small thread")
    large = await thread_followed_by(cast, cast.learners[2:], "Large thread")
    await drain_jobs()  # nothing else runs while statements are counted
    hold_deliveries(monkeypatch)

    counts: list[int] = []
    for thread in (small, large):
        await make_reply(thread, cast.asker, body="A reply for everyone following.")
        with count_queries(monkeypatch) as log:
            await jobs.deliver_pending()
        counts.append(log.count)
    assert counts[0] == counts[1], counts
    assert await Notification.filter(kind="reply").count() == 2 + 28


async def test_a_reply_withdrawn_before_delivery_in_a_batch_tells_nobody(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = await thread_followed_by(cast, cast.learners[:3], "Aftershocks")
    hold_deliveries(monkeypatch)
    kept = await make_reply(thread, cast.learners[0], body="Kept.")
    gone = await make_reply(thread, cast.learners[1], body="Withdrawn.")
    await actions.delete_own_post(gone, acting_user=cast.learners[1])
    await jobs.deliver_pending()
    notes = await Notification.filter(kind="reply")
    assert {post_of(n.link) for n in notes} == {kept.id}
    assert len(notes) == 3  # the asker and the two other followers
