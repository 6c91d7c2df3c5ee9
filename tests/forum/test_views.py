"""The forum pages as a browser uses them: real sessions, real CSRF tokens, htmx fragments."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette

from core.models import Course, Role, User
from forum import actions
from forum.models import Forum, Post, Revision, Subscription, Thread, ThreadKind, Vote
from forum.presenters import POSTS_PER_PAGE
from tests.conftest import CSRF_RE
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


async def _no_server_errors(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.request.method} {response.request.url}"


class Browser:
    """A signed-in browser: remembers the last CSRF token a page gave it."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.token = ""

    async def get(self, url: str, **kwargs: object) -> httpx.Response:
        response = await self.client.get(url, **kwargs)  # type: ignore[arg-type]
        match = CSRF_RE.search(response.text)
        if match:
            self.token = match.group(1)
        return response

    async def post(
        self,
        url: str,
        data: dict[str, str] | None = None,
        *,
        htmx: bool = False,
        page: str | None = None,
    ) -> httpx.Response:
        """Submit a form as the page `page` (default: the last one seen) would."""
        if page is not None or not self.token:
            await self.get(page or "/courses")
        headers = {"HX-Request": "true"} if htmx else {}
        return await self.client.post(
            url, data={"csrf_token": self.token, **(data or {})}, headers=headers
        )


Open = Callable[[User], Awaitable[Browser]]


@pytest.fixture
async def browser(app: Starlette) -> AsyncIterator[Open]:
    opened: list[httpx.AsyncClient] = []

    async def open_as(user: User) -> Browser:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
            base_url="http://testserver",
            event_hooks={"response": [_no_server_errors]},
        )
        opened.append(client)
        response = await log_in(client, user.username)
        assert response.status_code == 303
        return Browser(client)

    yield open_as
    for client in opened:
        await client.aclose()


@dataclass(slots=True)
class World:
    course: Course
    forum: Forum
    instructor: User
    mentor: User
    asker: User
    learner: User

    @property
    def base(self) -> str:
        return f"/courses/{self.course.slug}"


@pytest.fixture
async def world(app: Starlette) -> World:
    instructor = await make_user("ines")
    course = await make_course(instructor, title="Compilers")
    mentor, asker, learner = await make_user("mona"), await make_user("ali"), await make_user("lea")
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, asker)
    await add_member(course, learner)
    forum = await make_forum(course, title="Help")
    return World(course, forum, instructor, mentor, asker, learner)


def fragment(response: httpx.Response) -> str:
    """An htmx answer: one block of the page, not a page."""
    assert response.status_code == 200, response.text
    assert "<html" not in response.text and "<body" not in response.text
    assert response.headers["vary"].startswith("HX-Request")
    return response.text


# ---------------------------------------------------------------- managing forums


async def test_an_instructor_creates_a_forum(world: World, browser: Open) -> None:
    web = await browser(world.instructor)
    manage = f"{world.base}/staff/forums"
    assert (await web.get(manage)).status_code == 200
    response = await web.post(
        manage, {"title": "Lab sessions", "description": "Ask about labs", "allow_anonymous": "on"}
    )
    assert response.status_code == 200 and "Saved." in response.text
    forum = await Forum.get(course_id=world.course.id, title="Lab sessions")
    assert forum.description == "Ask about labs" and forum.allow_anonymous
    assert forum.position == 1

    # htmx gets the #forums block; an empty title is refused next to the field.
    response = await web.post(manage, {"title": "  "}, htmx=True)
    assert response.status_code == 422
    assert 'id="forums"' in response.text and "<html" not in response.text
    assert re.search(r'id="f-title-error">A forum needs a title', response.text)
    assert await Forum.filter(course_id=world.course.id).count() == 2

    index = await web.get(f"{world.base}/forums")
    assert "Lab sessions" in index.text and f"{world.base}/staff/forums" in index.text


async def test_learners_and_mentors_cannot_manage_forums(world: World, browser: Open) -> None:
    manage = f"{world.base}/staff/forums"
    for user in (world.learner, world.mentor):
        web = await browser(user)
        assert (await web.get(manage)).status_code == 403
        response = await web.post(manage, {"title": "Mine"}, page=f"{world.base}/forums")
        assert response.status_code == 403
        index = await web.get(f"{world.base}/forums")
        assert f"{world.base}/staff/forums" not in index.text
    assert await Forum.filter(course_id=world.course.id).count() == 1


# ---------------------------------------------------------------- new threads


async def test_a_learner_asks_a_question_through_the_form(world: World, browser: Open) -> None:
    web = await browser(world.learner)
    new = f"{world.base}/forums/{world.forum.id}/new"
    page = await web.get(f"{new}?kind=question")
    assert page.status_code == 200
    assert 'value="question" checked' in page.text

    response = await web.post(
        new, {"kind": "question", "title": "Why LR(1)?", "body": "Tables **everywhere**."}
    )
    assert response.status_code == 303
    thread = await Thread.get(course_id=world.course.id)
    assert response.headers["location"] == f"{world.base}/threads/{thread.id}"
    assert thread.kind == ThreadKind.QUESTION and thread.title == "Why LR(1)?"
    shown = await web.get(response.headers["location"])
    assert "Why LR(1)?" in shown.text and "<strong>everywhere</strong>" in shown.text


async def test_the_new_thread_form_keeps_what_was_typed_and_marks_errors(
    world: World, browser: Open
) -> None:
    web = await browser(world.learner)
    new = f"{world.base}/forums/{world.forum.id}/new"
    await web.get(new)
    response = await web.post(
        new, {"kind": "question", "title": "ab", "body": "My carefully typed <b>text</b>"}
    )
    assert response.status_code == 422
    html = response.text
    assert re.search(r'id="f-title-error">Give the thread a title of at least 3', html)
    assert 'aria-invalid="true" aria-describedby="f-title-error"' in html
    assert 'value="ab"' in html
    assert "My carefully typed &lt;b&gt;text&lt;/b&gt;</textarea>" in html
    assert 'value="question" checked' in html

    response = await web.post(new, {"kind": "discussion", "title": "Fine title", "body": " "})
    assert response.status_code == 422
    assert 'id="f-body-error">A post can' in response.text
    assert 'value="Fine title"' in response.text
    assert await Thread.all().count() == 0


async def test_anonymous_posting_is_offered_only_where_allowed(world: World, browser: Open) -> None:
    closed = await make_forum(world.course, title="Named", allow_anonymous=False)
    web = await browser(world.learner)
    assert 'name="anonymous"' in (await web.get(f"{world.base}/forums/{world.forum.id}/new")).text
    form = await web.get(f"{world.base}/forums/{closed.id}/new")
    assert 'name="anonymous"' not in form.text
    response = await web.post(
        f"{world.base}/forums/{closed.id}/new",
        {"kind": "discussion", "title": "Sneaky", "body": "Hi", "anonymous": "on"},
    )
    assert response.status_code == 422
    assert "Please correct the marked fields." in response.text
    assert await Thread.all().count() == 0


# ---------------------------------------------------------------- replies


async def test_replies_with_and_without_htmx(world: World, browser: Open) -> None:
    thread = await make_thread(world.forum, world.asker, kind="question", title="Parsing")
    web = await browser(world.learner)
    url = f"{world.base}/threads/{thread.id}"
    await web.get(url)

    response = await web.post(f"{url}/reply", {"body": "Plain *form* answer", "page": "1"})
    assert response.status_code == 303
    plain = await Post.get(body_markdown="Plain *form* answer")
    assert response.headers["location"] == f"{url}#post-{plain.id}"

    response = await web.post(f"{url}/reply", {"body": "An htmx answer", "page": "1"}, htmx=True)
    html = fragment(response)
    assert html.lstrip().startswith('<div id="thread-posts">')
    assert "An htmx answer" in html and "<em>form</em>" in html
    assert "2 answers" in html

    # A reply to an answer hangs under it.
    response = await web.post(
        f"{url}/reply", {"body": "Nested reply", "parent_id": str(plain.id), "page": "1"}
    )
    assert response.status_code == 303
    nested = await Post.get(body_markdown="Nested reply")
    assert nested.parent_id == plain.id  # type: ignore[attr-defined]
    page = (await web.get(url)).text
    assert page.index(f'id="post-{plain.id}"') < page.index(f'id="post-{nested.id}"')
    assert f'id="post-{nested.id}" class="post post-reply' in page
    assert (await Thread.get(id=thread.id)).reply_count == 3


async def test_a_refused_reply_shows_why_and_keeps_the_text(world: World, browser: Open) -> None:
    thread = await make_thread(world.forum, world.asker)
    web = await browser(world.learner)
    url = f"{world.base}/threads/{thread.id}"
    await web.get(url)
    for htmx in (False, True):
        response = await web.post(f"{url}/reply", {"body": "   "}, htmx=htmx)
        assert response.status_code == 422
        assert "A post can" in response.text
        assert ("<html" in response.text) is not htmx
    await Thread.filter(id=thread.id).update(is_locked=True)
    response = await web.post(f"{url}/reply", {"body": "Let me in"})
    assert response.status_code == 403
    assert "locked" in response.text and "Let me in</textarea>" not in response.text
    assert await Post.filter(thread_id=thread.id).count() == 1


# ---------------------------------------------------------------- edits and history


async def test_a_post_never_edited_has_an_empty_history(world: World, browser: Open) -> None:
    thread = await make_thread(world.forum, world.asker, title="Plain", body="never changed")
    opening = await Post.get(thread_id=thread.id, is_opening=True)
    web = await browser(world.learner)
    history = await web.get(f"{world.base}/posts/{opening.id}/history")
    assert history.status_code == 200
    assert "This post has not been edited." in history.text


async def test_an_edit_through_the_form_shows_in_the_history(world: World, browser: Open) -> None:
    thread = await make_thread(world.forum, world.asker, title="Grammar", body="line one\nline two")
    opening = await Post.get(thread_id=thread.id, is_opening=True)
    web = await browser(world.asker)
    edit = f"{world.base}/posts/{opening.id}/edit"
    form = await web.get(edit)
    assert form.status_code == 200
    assert "line one\nline two</textarea>" in form.text and 'value="Grammar"' in form.text
    assert 'name="rule"' not in form.text  # one's own post: no moderation fields
    assert 'id="edit-' in fragment(await web.get(edit, headers={"HX-Request": "true"}))

    response = await web.post(edit, {"title": "Grammars", "body": "line one\nline 2"})
    assert response.status_code == 303
    assert response.headers["location"] == f"{world.base}/threads/{thread.id}#post-{opening.id}"
    assert (await Thread.get(id=thread.id)).title == "Grammars"

    history = await web.get(f"{world.base}/posts/{opening.id}/history")
    assert history.status_code == 200
    html = history.text
    assert "Edit 1:" in html
    assert '<span class="diff-line diff-del">\u2212 line two</span>' in html
    assert '<span class="diff-line diff-add">+ line 2</span>' in html
    assert '<span class="diff-line diff-same">  line one</span>' in html
    assert "<del>Grammar</del> → <ins>Grammars</ins>" in html
    thread_page = await web.get(f"{world.base}/threads/{thread.id}")
    assert "History (1 edit)" in thread_page.text

    # Bad input re-renders the form with the message; nothing changes.
    response = await web.post(edit, {"title": "ok", "body": "line one"})
    assert response.status_code == 422 and 'id="f-title-error"' in response.text
    assert await Revision.filter(post_id=opening.id).count() == 1


async def test_others_cannot_edit_but_staff_can_with_a_rule(world: World, browser: Open) -> None:
    thread = await make_thread(world.forum, world.asker, body="Original")
    opening = await Post.get(thread_id=thread.id, is_opening=True)
    edit = f"{world.base}/posts/{opening.id}/edit"
    learner = await browser(world.learner)
    assert (await learner.get(edit)).status_code == 403
    response = await learner.post(edit, {"body": "Defaced"}, page=f"{world.base}/forums")
    assert response.status_code == 403

    mentor = await browser(world.mentor)
    form = await mentor.get(edit)
    assert form.status_code == 200 and 'name="rule"' in form.text
    response = await mentor.post(
        edit, {"body": "Tidied", "rule": "R2", "reason": "Off-topic bits."}
    )
    assert response.status_code == 303
    assert (await Post.get(id=opening.id)).body_markdown == "Tidied"
    history = await mentor.get(f"{world.base}/posts/{opening.id}/history")
    assert "staff edit" in history.text


# ---------------------------------------------------------------- votes, answers, endorsements


async def test_vote_accept_endorse_and_delete_through_their_forms(
    world: World, browser: Open
) -> None:
    thread = await make_thread(world.forum, world.asker, kind="question")
    answer = await make_reply(thread, world.learner, body="Use a DFA.")
    url = f"{world.base}/threads/{thread.id}"

    asker = await browser(world.asker)
    await asker.get(url)
    response = await asker.post(f"{world.base}/posts/{answer.id}/vote", {"up": "1"})
    assert response.status_code == 303
    assert response.headers["location"] == f"{url}#post-{answer.id}"
    assert (await Post.get(id=answer.id)).vote_count == 1
    page = await asker.get(url)
    assert 'aria-pressed="true"' in page.text and "▲ 1" in page.text
    html = fragment(
        await asker.post(f"{world.base}/posts/{answer.id}/vote", {"up": "0"}, htmx=True)
    )
    assert "▲ 0" in html and await Vote.all().count() == 0

    response = await asker.post(f"{world.base}/posts/{answer.id}/accept", {})
    assert response.status_code == 303
    assert (await Thread.get(id=thread.id)).accepted_post_id == answer.id
    assert "✓ accepted answer" in (await asker.get(url)).text
    html = fragment(
        await asker.post(f"{world.base}/posts/{answer.id}/accept", {"clear": "1"}, htmx=True)
    )
    assert "✓ accepted answer" not in html
    assert (await Thread.get(id=thread.id)).accepted_post_id is None

    learner = await browser(world.learner)
    await learner.get(url)
    # Own post: the vote button is disabled and the action refuses.
    response = await learner.post(f"{world.base}/posts/{answer.id}/vote", {"up": "1"})
    assert response.status_code == 403
    response = await learner.post(f"{world.base}/posts/{answer.id}/accept", {})
    assert response.status_code == 403
    endorse = f"{world.base}/moderate/posts/{answer.id}/endorse"
    assert (await learner.post(endorse, {"endorsed": "1"})).status_code == 403

    mentor = await browser(world.mentor)
    await mentor.get(url)
    response = await mentor.post(endorse, {"endorsed": "1"})
    assert response.status_code == 303
    assert (await Post.get(id=answer.id)).is_endorsed
    assert "endorsed by staff" in (await learner.get(url)).text

    response = await learner.post(f"{world.base}/posts/{answer.id}/delete", {})
    assert response.status_code == 303
    assert (await Post.get(id=answer.id)).is_deleted
    page = await learner.get(url)
    assert "Deleted by its author." in page.text and "Use a DFA." not in page.text
    assert (await Thread.get(id=thread.id)).reply_count == 0


# ---------------------------------------------------------------- new markers, following


async def test_posts_since_the_last_visit_are_marked_new_once(world: World, browser: Open) -> None:
    thread = await make_thread(world.forum, world.asker, title="Marked")
    old = await make_reply(thread, world.mentor, body="Before the visit")
    web = await browser(world.learner)
    url = f"{world.base}/threads/{thread.id}"
    forum_url = f"{world.base}/forums/{world.forum.id}"

    def new_posts(html: str) -> set[int]:
        return {int(n) for n in re.findall(r'id="post-(\d+)" class="[^"]*\bnew\b', html)}

    assert "new activity" in (await web.get(forum_url)).text  # never visited
    assert new_posts((await web.get(url)).text) == set()  # first visit: nothing is "new"
    assert "new activity" not in (await web.get(forum_url)).text

    fresh = await make_reply(thread, world.mentor, body="After the visit")
    assert "new activity" in (await web.get(forum_url)).text
    # An htmx refresh does not count as reading the thread.
    assert new_posts(fragment(await web.get(url, headers={"HX-Request": "true"}))) == {fresh.id}
    page = (await web.get(url)).text
    assert new_posts(page) == {fresh.id} and old.id not in new_posts(page)
    assert '<span class="tag tag-new">new</span>' in page
    assert new_posts((await web.get(url)).text) == set()
    assert "new activity" not in (await web.get(forum_url)).text

    # One's own new posts are never "new" to oneself.
    await make_reply(thread, world.learner, body="Mine")
    assert new_posts((await web.get(url)).text) == set()


async def test_following_a_thread_toggles(world: World, browser: Open) -> None:
    thread = await make_thread(world.forum, world.asker)
    url = f"{world.base}/threads/{thread.id}"
    web = await browser(world.learner)
    assert "Follow replies" in (await web.get(url)).text

    response = await web.post(f"{url}/subscription", {"subscribed": "1"})
    assert response.status_code == 303 and response.headers["location"] == url
    assert await Subscription.filter(thread_id=thread.id, user_id=world.learner.id).exists()
    assert "Stop following" in (await web.get(url)).text

    html = fragment(await web.post(f"{url}/subscription", {"subscribed": "0"}, htmx=True))
    assert html.lstrip().startswith('<form id="subscription"')
    assert "Follow replies" in html and 'name="subscribed" value="1"' in html
    assert not await Subscription.filter(thread_id=thread.id, user_id=world.learner.id).exists()


# ---------------------------------------------------------------- pagination


async def test_answers_past_the_first_page_are_on_page_two(world: World, browser: Open) -> None:
    thread = await make_thread(world.forum, world.asker, title="Popular")
    answers = [
        await actions.reply(thread, body=f"Answer number {n:02d}", acting_user=world.mentor)
        for n in range(1, POSTS_PER_PAGE + 2)
    ]
    web = await browser(world.learner)
    url = f"{world.base}/threads/{thread.id}"
    first = (await web.get(url)).text
    assert "Page 1 of 2" in first and 'href="?page=2"' in first
    assert "Answer number 01" in first and f"Answer number {POSTS_PER_PAGE:02d}" in first
    assert f"Answer number {POSTS_PER_PAGE + 1:02d}" not in first

    second = (await web.get(f"{url}?page=2")).text
    assert "Page 2 of 2" in second and 'href="?page=1"' in second
    assert f'id="post-{answers[-1].id}"' in second
    assert "Answer number 01" not in second
    # Out-of-range pages show the nearest one rather than failing.
    assert "Page 2 of 2" in (await web.get(f"{url}?page=99")).text
    assert "Page 1 of 2" in (await web.get(f"{url}?page=0")).text
    assert "Page 1 of 2" in (await web.get(f"{url}?page=two")).text


async def test_a_new_answer_on_a_new_page_is_where_the_redirect_points(
    world: World, browser: Open
) -> None:
    thread = await make_thread(world.forum, world.asker, title="Full page")
    for n in range(POSTS_PER_PAGE):
        await actions.reply(thread, body=f"Answer {n}", acting_user=world.mentor)
    web = await browser(world.learner)
    url = f"{world.base}/threads/{thread.id}"
    form_page = (await web.get(url)).text
    assert "Page 1 of" not in form_page  # exactly one full page
    response = await web.post(f"{url}/reply", {"body": "The thirty-first", "page": "1"})
    post = await Post.get(body_markdown="The thirty-first")
    assert response.status_code == 303
    target = response.headers["location"]
    assert target == f"{url}?page=2#post-{post.id}"
    assert f'id="post-{post.id}"' in (await web.get(target.split("#")[0])).text


# ---------------------------------------------------------------- not found, not allowed


async def test_unknown_or_foreign_ids_are_404_pages(world: World, browser: Open) -> None:
    other_instructor = await make_user("olga")
    other = await make_course(other_instructor, title="Databases")
    await add_member(other, world.learner)
    other_forum = await make_forum(other)
    other_thread = await make_thread(other_forum, other_instructor)
    other_post = await Post.get(thread_id=other_thread.id)
    thread = await make_thread(world.forum, world.asker)
    web = await browser(world.learner)
    base = world.base

    missing = [
        f"{base}/forums/999999",
        f"{base}/forums/999999/new",
        f"{base}/threads/999999",
        f"{base}/posts/999999/edit",
        f"{base}/posts/999999/history",
        f"{base}/forums/{other_forum.id}",
        f"{base}/forums/{other_forum.id}/new",
        f"{base}/threads/{other_thread.id}",
        f"{base}/posts/{other_post.id}/history",
        f"{base}/posts/{other_post.id}/edit",
        "/courses/no-such-course/forums",
        "/courses/no-such-course/threads/1",
    ]
    for url in missing:
        response = await web.get(url)
        assert response.status_code == 404, url
        assert "<h1>Not found</h1>" in response.text, url
    await web.get(f"{base}/threads/{thread.id}")
    for url, data in (
        (f"{base}/threads/{other_thread.id}/reply", {"body": "Hi"}),
        (f"{base}/threads/999999/subscription", {"subscribed": "1"}),
        (f"{base}/threads/{thread.id}/reply", {"body": "Hi", "parent_id": str(other_post.id)}),
        (f"{base}/threads/{thread.id}/reply", {"body": "Hi", "parent_id": "abc"}),
        (f"{base}/posts/{other_post.id}/vote", {"up": "1"}),
        (f"{base}/posts/999999/accept", {}),
        (f"{base}/posts/999999/delete", {}),
        (f"{base}/moderate/posts/999999/endorse", {"endorsed": "1"}),
    ):
        response = await web.post(url, data)
        assert response.status_code in {403, 404}, url
        if "/moderate/" not in url:
            assert response.status_code == 404, url
    assert await Post.filter(thread_id=thread.id).count() == 1
    assert (await web.get(f"{base}/threads/abc")).status_code == 404


async def test_non_members_and_visitors_are_kept_out(
    world: World, browser: Open, client: httpx.AsyncClient
) -> None:
    thread = await make_thread(world.forum, world.asker)
    stranger = await browser(await make_user("sam"))
    pages = [
        f"{world.base}/forums",
        f"{world.base}/forums/{world.forum.id}",
        f"{world.base}/forums/{world.forum.id}/new",
        f"{world.base}/threads/{thread.id}",
    ]
    for url in pages:
        assert (await stranger.get(url)).status_code == 403, url
        response = await client.get(url)
        assert response.status_code == 303, url
        assert response.headers["location"].startswith("/login?next=")
    response = await stranger.post(
        f"{world.base}/threads/{thread.id}/reply", {"body": "Hi"}, page="/courses"
    )
    assert response.status_code == 403
    assert await Post.filter(thread_id=thread.id).count() == 1


async def test_forms_without_a_csrf_token_are_refused(world: World, browser: Open) -> None:
    thread = await make_thread(world.forum, world.asker)
    web = await browser(world.learner)
    response = await web.client.post(
        f"{world.base}/threads/{thread.id}/reply", data={"body": "No token"}
    )
    assert response.status_code == 403
    assert await Post.filter(thread_id=thread.id).count() == 1
