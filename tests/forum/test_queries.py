"""The busiest pages send a fixed number of SQL statements, however much they show.

Each test counts the statements of one page view with a little data, adds many more of the
things the page lists (posts, threads, forums, log entries, by more authors, anonymous or
hidden), and counts again: a count that grows with the data is a query per row (N+1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette

from core import actions as core_actions
from core.models import Course, Role, User
from forum import actions, presenters
from forum.models import Forum, Post, Thread
from forum.presenters import POSTS_PER_PAGE, THREADS_PER_PAGE
from moderation import actions as moderation
from moderation.endpoints import PAGE_SIZE
from moderation.models import SanctionKind
from tests.conftest import drain_jobs
from tests.factories import (
    add_member,
    log_in,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)
from tests.queries import QueryLog, count_queries

# Ceilings with a little room, so a page that starts doing more per view is noticed too.
THREAD_PAGE_BUDGET = 13
LIST_PAGE_BUDGET = 10
LOG_PAGE_BUDGET = 16


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass
class Course_:
    course: Course
    instructor: User
    mentor: User
    viewer: User
    learners: list[User]
    forum: Forum

    def author(self, n: int) -> User:
        """Authors in turn, so no learner passes the posting rate limit."""
        return self.learners[n % len(self.learners)]


@pytest.fixture
async def world(app: Starlette) -> Course_:
    instructor = await make_user(display_name="Ingrid Instructor")
    course = await make_course(instructor)
    mentor = await make_user(display_name="Marta Mentor")
    await add_member(course, mentor, Role.MENTOR)
    viewer = await make_user(display_name="Vera Viewer")
    await add_member(course, viewer)
    learners = []
    for _ in range(8):
        learner = await make_user()
        await add_member(course, learner)
        learners.append(learner)
    forum = await make_forum(course)
    return Course_(course, instructor, mentor, viewer, learners, forum)


@pytest.fixture
async def signed_in(app: Starlette, world: Course_) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in as the learner who looks at the pages."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await log_in(client, world.viewer.username)
        assert response.status_code == 303
        yield client


async def statements_of(
    client: httpx.AsyncClient, url: str, monkeypatch: pytest.MonkeyPatch
) -> QueryLog:
    """The statements of a repeat view of `url` (the first view may write one-time rows)."""
    first = await client.get(url)
    assert first.status_code == 200, first.text
    # Outbox deliveries run in this process too: finish them, so only the page is counted.
    await drain_jobs()
    with count_queries(monkeypatch) as queries:
        response = await client.get(url)
    assert response.status_code == 200, response.text
    return queries


async def _add_posts(world: Course_, thread: Thread, count: int, start: int) -> list[Post]:
    """`count` posts: answers, replies under them, some anonymous, one hidden, some voted."""
    made: list[Post] = []
    answers = [p for p in await Post.filter(thread_id=thread.id, parent_id=None, is_opening=False)]
    for n in range(start, start + count):
        author = world.author(n)
        if n % 2 == 0 or not answers:
            post = await make_reply(thread, author, anonymous=n % 3 == 0)
            answers.append(post)
        else:
            post = await make_reply(thread, author, parent=answers[-1], anonymous=n % 3 == 0)
        made.append(post)
        if n % 4 == 1:
            await actions.set_vote(post, up=True, acting_user=world.viewer)
    hidden = made[-1]
    await moderation.hide_post(
        hidden, rule_code="R1", reason="Off topic for this thread.", acting_user=world.mentor
    )
    return made


@pytest.mark.parametrize("whole", [True, False], ids=["read-whole", "read-by-page"])
async def test_thread_page_queries_do_not_grow_with_its_posts(
    whole: bool, world: Course_, signed_in: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not whole:
        # Take the path of long threads: the page's answers, then their replies.
        monkeypatch.setattr(presenters, "WHOLE_THREAD_REPLIES", 0)
    thread = await make_thread(world.forum, world.learners[0], kind="question")
    await _add_posts(world, thread, 4, start=0)
    url = f"/courses/{world.course.slug}/threads/{thread.id}"
    few = await statements_of(signed_in, url, monkeypatch)

    # Fill the page: the opening post, a full page of answers, a reply under all but one.
    await _add_posts(world, thread, 2 * POSTS_PER_PAGE - 5, start=4)
    shown = await Post.filter(thread_id=thread.id).count()
    assert shown == 2 * POSTS_PER_PAGE
    many = await statements_of(signed_in, url, monkeypatch)
    page = (await signed_in.get(url)).text
    assert page.count('<article id="post-') == shown
    assert "Anonymous learner" in page and "Hidden by a moderator" in page
    assert many.count == few.count, f"{few.count} with 5 posts, {many.count} with {shown}:\n{many}"
    assert many.count <= THREAD_PAGE_BUDGET, str(many)


async def test_forum_page_queries_do_not_grow_with_its_threads(
    world: Course_, signed_in: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full first page and one thread more: the page counts the threads for its pager.
    for n in range(THREADS_PER_PAGE + 1):
        await make_thread(world.forum, world.author(n), anonymous=n == 1)
    url = f"/courses/{world.course.slug}/forums/{world.forum.id}"
    few = await statements_of(signed_in, url, monkeypatch)

    threads = []
    for n in range(THREADS_PER_PAGE + 1, 2 * THREADS_PER_PAGE + 5):
        threads.append(await make_thread(world.forum, world.author(n), anonymous=n % 3 == 0))
    for thread in threads[::4]:
        await make_reply(thread, world.instructor)
        await signed_in.get(f"/courses/{world.course.slug}/threads/{thread.id}")
    await moderation.pin_thread(
        threads[0],
        pinned=True,
        rule_code="R1",
        reason="Read this thread first.",
        acting_user=world.mentor,
    )
    for page in ("", "?page=2"):
        many = await statements_of(signed_in, url + page, monkeypatch)
        assert many.count == few.count, (
            f"{few.count} with 31 threads, {many.count} with 64:\n{many}"
        )
        assert many.count <= LIST_PAGE_BUDGET, str(many)
    page = (await signed_in.get(url)).text
    assert page.count('class="thread-title"') == THREADS_PER_PAGE
    assert "Page 1 of 3" in page


async def test_forum_index_queries_do_not_grow_with_its_forums(
    world: Course_, signed_in: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_thread(world.forum, world.author(0))
    url = f"/courses/{world.course.slug}/forums"
    few = await statements_of(signed_in, url, monkeypatch)

    for n in range(8):
        forum = await make_forum(world.course, title=f"Week {n + 1}")
        for k in range(n % 3):
            await make_thread(forum, world.author(n + k))
    many = await statements_of(signed_in, url, monkeypatch)
    page = (await signed_in.get(url)).text
    assert "Week 8" in page and page.count("1 thread<") + page.count("2 threads<") >= 5
    assert many.count == few.count, f"{few.count} with 1 forum, {many.count} with 9:\n{many}"
    assert many.count <= LIST_PAGE_BUDGET, str(many)


async def _moderate(world: Course_, thread: Thread, posts: list[Post], start: int) -> None:
    """Acts of several kinds, by a mentor and the instructor, on posts, threads and users."""
    for n, post in enumerate(posts, start=start):
        actor = world.mentor if n % 2 else world.instructor
        fresh = await Post.get(id=post.id)
        if fresh.state == "visible":
            await moderation.hide_post(
                fresh, rule_code="R1", reason=f"Moderation act number {n}.", acting_user=actor
            )
        else:
            await moderation.unhide_post(
                fresh, rule_code="R1", reason=f"Moderation act number {n}.", acting_user=actor
            )
    await moderation.lock_thread(
        thread,
        locked=True,
        rule_code="R2",
        reason="The question is settled.",
        acting_user=world.mentor,
    )
    await moderation.sanction_user(
        world.course,
        world.author(start),
        SanctionKind.WARNING,
        rule_code="R2",
        reason="Keep to the topic.",
        acting_user=world.instructor,
    )


@pytest.mark.parametrize("as_member", [False, True], ids=["logged-out", "member"])
async def test_public_log_page_queries_do_not_grow_with_its_entries(
    as_member: bool,
    world: Course_,
    app: Starlette,
    signed_in: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    thread = await make_thread(world.forum, world.learners[0])
    posts = [await make_reply(thread, world.author(n), anonymous=n % 2 == 0) for n in range(12)]
    await _moderate(world, thread, posts[:1], start=0)
    url = f"/courses/{world.course.slug}/moderation"
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as public:
        client = signed_in if as_member else public
        few = await statements_of(client, url, monkeypatch)

        other = await make_thread(world.forum, world.learners[1])
        await _moderate(world, other, posts[1:] * 5, start=1)
        many = await statements_of(client, url, monkeypatch)
        page = (await client.get(url)).text
    assert page.count('class="panel log-entry') == PAGE_SIZE
    assert many.count == few.count, f"{few.count} with 3 entries, {many.count} with 60:\n{many}"
    assert many.count <= LOG_PAGE_BUDGET, str(many)


async def test_api_thread_list_queries_do_not_grow_with_its_threads(
    world: Course_, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await core_actions.issue_api_token(world.viewer, name="list", acting_user=None)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50002))
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/api/v1/courses/{world.course.slug}/threads"
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as api:
        await make_thread(world.forum, world.author(0))
        few = await statements_of(api, url, monkeypatch)
        for n in range(1, 12):
            await make_thread(world.forum, world.author(n), anonymous=n % 3 == 0)
        many = await statements_of(api, url, monkeypatch)
        listed = (await api.get(url)).json()
    assert len(listed) == 12
    assert sum(t["author"]["name"] == "Anonymous learner" for t in listed) == 3
    assert many.count == few.count, f"{few.count} with 1 thread, {many.count} with 12:\n{many}"
