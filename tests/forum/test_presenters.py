"""What the forum pages are built from: a thread read whole or by pages, forums with counts."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette

from core.models import Role
from core.settings import Settings
from forum import presenters
from forum.models import Forum, Post, Thread, ThreadVisit
from forum.presenters import POSTS_PER_PAGE, ThreadPage, course_forums, thread_page
from tests.factories import (
    add_member,
    log_in,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

pytestmark = pytest.mark.usefixtures("reused_password_hashes")


def shape(page: ThreadPage) -> list[tuple[int, str, list[tuple[int, str]]]]:
    """Each answer on the page with its author as shown and its replies, in order."""
    return [(a.id, a.author.name, [(r.id, r.author.name) for r in a.replies]) for a in page.posts]


async def test_a_thread_read_by_pages_shows_what_it_shows_read_whole(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    instructor = await make_user()
    course = await make_course(instructor)
    learners = []
    for _ in range(6):
        learner = await make_user()
        await add_member(course, learner)
        learners.append(learner)
    viewer = learners[0]
    forum = await make_forum(course)
    thread = await make_thread(forum, instructor, kind="question")
    answers: list[Post] = []
    for n in range(POSTS_PER_PAGE + 5):
        author = learners[1 + n % 5] if n % 7 else instructor
        answers.append(await make_reply(thread, author, anonymous=n % 4 == 1 and n % 7 != 0))
        if n % 3 == 0:
            await make_reply(thread, learners[1 + (n + 1) % 5], parent=answers[-1])
    thread = await Thread.get(id=thread.id)
    forum = await Forum.get(id=forum.id)

    async def read(page: int) -> ThreadPage:
        return await thread_page(thread, viewer, Role.LEARNER, page, forum=forum)

    whole = [await read(n) for n in (1, 2, 3, 0)]
    monkeypatch.setattr(presenters, "WHOLE_THREAD_REPLIES", 0)
    paged = [await read(n) for n in (1, 2, 3, 0)]

    for a, b in zip(whole, paged, strict=True):
        assert shape(a) == shape(b)
        assert (a.page.number, a.page.count) == (b.page.number, b.page.count)
        assert a.opening.id == b.opening.id
    first, second, beyond, before = whole
    assert [p.id for p in first.posts] == [a.id for a in answers[:POSTS_PER_PAGE]]
    assert [p.id for p in second.posts] == [a.id for a in answers[POSTS_PER_PAGE:]]
    # A page past the end shows the last one, a page before the start the first.
    assert (beyond.page.number, before.page.number) == (2, 1)
    assert shape(beyond) == shape(second) and shape(before) == shape(first)
    # Anonymous answers stay anonymous to a classmate, whichever way the thread is read.
    names = {name for _, name, _ in shape(first)}
    assert "Anonymous learner" in names and instructor.display_name in names


async def test_each_forum_shows_its_own_thread_count(db: Settings) -> None:
    instructor = await make_user()
    course = await make_course(instructor)
    other_course = await make_course(instructor)
    learner = await make_user()
    await add_member(course, learner)
    await add_member(other_course, learner)
    busy = await make_forum(course, title="Busy")
    await make_forum(course, title="Empty")
    quiet = await make_forum(course, title="Quiet")
    elsewhere = await make_forum(other_course)
    for _ in range(3):
        await make_thread(busy, learner)
    await make_thread(quiet, learner)
    await make_thread(elsewhere, learner)

    counts = [(forum.title, count) for forum, count in await course_forums(course)]
    assert counts == [("Busy", 3), ("Empty", 0), ("Quiet", 1)]


async def test_a_post_that_landed_during_a_visit_is_new_once(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    """A visit can fall between a reply's activity time and its post: that post is new once."""
    instructor = await make_user()
    course = await make_course(instructor)
    reader, writer = await make_user(), await make_user()
    await add_member(course, reader)
    await add_member(course, writer)
    thread = await make_thread(await make_forum(course), writer)
    assert (await log_in(client, reader.username)).status_code == 303
    url = f"/courses/{course.slug}/threads/{thread.id}"
    await client.get(url)
    reply = await make_reply(thread, writer, body="Written while the page was read")
    visited = reply.created_at - timedelta(microseconds=50)
    await Thread.filter(id=thread.id).update(last_activity_at=visited - timedelta(microseconds=50))
    await ThreadVisit.filter(thread_id=thread.id, user_id=reader.id).update(last_seen_at=visited)

    def new_posts(html: str) -> set[int]:
        return {int(n) for n in re.findall(r'id="post-(\d+)" class="[^"]*\bnew\b', html)}

    assert new_posts((await client.get(url)).text) == {reply.id}
    assert new_posts((await client.get(url)).text) == set()
