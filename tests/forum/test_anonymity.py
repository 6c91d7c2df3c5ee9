"""DESIGN.md invariant 5: an anonymous post never reveals its author to classmates.

One learner, Zebulon Quixote (@zquixote), posts anonymously; another learner of the course
then looks everywhere a learner can look. The same places show the name to the author, to
the course's staff, and to everyone when the same learner posts under their name, so each
check can fail.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from core import actions as core_actions
from core.errors import InvalidInput
from core.models import Course, Notification, Role, User
from forum import actions
from forum.models import ANONYMOUS_LABEL, Forum, Post, Thread
from search import service
from search.backends import SearchQuery
from search.tasks import to_document
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

NAME, HANDLE = "Zebulon Quixote", "zquixote"


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass(slots=True)
class Scene:
    course: Course
    open_forum: Forum
    named_forum: Forum
    instructor: User
    mentor: User
    author: User
    classmate: User
    anon_thread: Thread
    anon_opening: Post
    classmate_thread: Thread
    classmate_answer: Post
    anon_reply: Post
    anon_nested: Post
    named_thread: Thread
    named_opening: Post

    @property
    def anonymous_posts(self) -> set[int]:
        return {self.anon_opening.id, self.anon_reply.id, self.anon_nested.id}


@pytest.fixture
async def scene(app: Starlette) -> Scene:
    instructor = await make_user("ines", display_name="Ines Teacher")
    course = await make_course(instructor, title="Data Structures")
    mentor = await make_user("mona", display_name="Mona Mentor")
    author = await make_user(HANDLE, display_name=NAME)
    classmate = await make_user("lea", display_name="Lea Classmate")
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, author)
    await add_member(course, classmate)
    open_forum = await make_forum(course, title="Questions")
    named_forum = await make_forum(course, title="Show and tell")

    anon_thread = await make_thread(
        open_forum,
        author,
        kind="question",
        title="How do binary heaps stay balanced",
        body="Sift-down confuses me.",
        anonymous=True,
    )
    anon_opening = await Post.get(thread_id=anon_thread.id, is_opening=True)
    await actions.set_subscription(anon_thread, subscribed=True, acting_user=mentor)
    classmate_answer = await make_reply(anon_thread, classmate, body="Compare with the children.")
    anon_nested = await make_reply(
        anon_thread, author, parent=classmate_answer, body="Thanks, that helps.", anonymous=True
    )
    classmate_thread = await make_thread(
        open_forum, classmate, title="Priority queue homework", body="Where to start?"
    )
    anon_reply = await make_reply(
        classmate_thread, author, body="Try drawing the heap array.", anonymous=True
    )
    # The anonymous author edits: the history must not name them either.
    await actions.edit_post(
        anon_reply, body="Try drawing the heap as an array.", acting_user=author
    )
    await actions.edit_post(
        anon_opening,
        body="Sift-down confuses me a lot.",
        title="How do binary heaps stay balanced?",
        acting_user=author,
    )
    named_thread = await make_thread(
        named_forum, author, title="Tries are wonderful", body="Prefix trees, signed by me."
    )
    named_opening = await Post.get(thread_id=named_thread.id, is_opening=True)
    await drain_jobs()
    return Scene(
        course,
        open_forum,
        named_forum,
        instructor,
        mentor,
        author,
        classmate,
        anon_thread,
        anon_opening,
        classmate_thread,
        classmate_answer,
        anon_reply,
        anon_nested,
        named_thread,
        named_opening,
    )


Browser = Callable[[User], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def browser(app: Starlette) -> AsyncIterator[Browser]:
    """Opens a client signed in (through the login form) as the given user."""
    opened: list[httpx.AsyncClient] = []

    async def open_as(user: User) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        opened.append(client)
        response = await log_in(client, user.username)
        assert response.status_code == 303, response.text
        return client

    yield open_as
    for client in opened:
        await client.aclose()


async def api_client(app: Starlette, user: User) -> httpx.AsyncClient:
    token = await core_actions.issue_api_token(user, name="test", acting_user=None)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    )


def leaks(text: str, user: User) -> list[str]:
    """Every trace of `user` in `text`: names, handle, or their id where an id would go."""
    found = [
        word
        for word in (*user.display_name.split(), user.display_name, user.username)
        if word.lower() in text.lower()
    ]
    uid = user.id
    for pattern in (
        rf"(?:user|author|editor|owner|actor)[_-]?id[\"']?\s*[:=]\s*[\"']?{uid}\b",
        rf"/users?/{uid}\b",
        rf"data-(?:user|author)[\w-]*=[\"']{uid}[\"']",
    ):
        if re.search(pattern, text, re.IGNORECASE):
            found.append(pattern)
    return found


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair at any depth of a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def authors_of(document: Any, ids: set[int], *, key: str = "thread_id") -> list[dict[str, Any]]:
    """Authors of the posts (objects with `key`; "forum_id" for threads) with these ids."""
    found = []
    if isinstance(document, dict):
        if key in document and document.get("id") in ids:
            found.append(document["author"])
        for value in document.values():
            found.extend(authors_of(value, ids, key=key))
    elif isinstance(document, list):
        for item in document:
            found.extend(authors_of(item, ids, key=key))
    return found


def hidden_author(author: dict[str, Any]) -> bool:
    return author == {"name": ANONYMOUS_LABEL, "username": None, "anonymous_to_classmates": False}


def shown_author(author: dict[str, Any], *, anonymous: bool) -> bool:
    return author == {"name": NAME, "username": HANDLE, "anonymous_to_classmates": anonymous}


def htmx(headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"HX-Request": "true", **(headers or {})}


# ---------------------------------------------------------------- a classmate looks


async def test_a_classmate_sees_no_trace_of_the_author_in_pages(
    scene: Scene, browser: Browser
) -> None:
    web = await browser(scene.classmate)
    slug = scene.course.slug
    pages = {
        "forums": f"/courses/{slug}/forums",
        "forum": f"/courses/{slug}/forums/{scene.open_forum.id}",
        "anonymous thread": f"/courses/{slug}/threads/{scene.anon_thread.id}",
        "classmate's thread": f"/courses/{slug}/threads/{scene.classmate_thread.id}",
        "reply history": f"/courses/{slug}/posts/{scene.anon_reply.id}/history",
        "opening history": f"/courses/{slug}/posts/{scene.anon_opening.id}/history",
        "search by words": f"/courses/{slug}/search?q=heap",
        "site search": "/search?q=heap",
        "notifications": "/notifications",
    }
    for what, url in pages.items():
        for headers in ({}, htmx()):
            response = await web.get(url, headers=headers)
            assert response.status_code == 200, (what, response.status_code)
            assert leaks(response.text, scene.author) == [], (what, headers)

    # Searching for the author (the form echoes the query) finds none of their anonymous posts.
    anonymous_links = [f"#post-{post_id}" for post_id in scene.anonymous_posts]
    for query in ({"q": NAME}, {"q": HANDLE}, {"q": f"@{HANDLE}"}, {"author": HANDLE}):
        for url in (f"/courses/{slug}/search", "/search"):
            response = await web.get(url, params=query)
            assert response.status_code == 200
            assert not [link for link in anonymous_links if link in response.text], query
            assert ANONYMOUS_LABEL not in response.text

    # The checks above looked at the anonymous posts, not at pages without them.
    thread_page = (await web.get(pages["anonymous thread"])).text
    assert f'aria-label="Post by {ANONYMOUS_LABEL}"' in thread_page
    assert "Sift-down confuses me a lot." in thread_page and "Thanks, that helps." in thread_page
    fragment = (await web.get(pages["classmate's thread"], headers=htmx())).text
    assert "<html" not in fragment and "Try drawing the heap as an array." in fragment
    assert ANONYMOUS_LABEL in fragment
    history = (await web.get(pages["reply history"])).text
    assert f"Post by {ANONYMOUS_LABEL}" in history and "Edit 1: " + ANONYMOUS_LABEL in history
    forum_page = (await web.get(pages["forum"])).text
    assert "How do binary heaps stay balanced?" in forum_page and ANONYMOUS_LABEL in forum_page
    search_page = (await web.get(pages["search by words"])).text
    assert f"/threads/{scene.anon_thread.id}" in search_page
    notifications = (await web.get(pages["notifications"])).text
    assert f"{ANONYMOUS_LABEL} replied" in notifications


async def test_a_classmate_cannot_open_the_edit_page(scene: Scene, browser: Browser) -> None:
    web = await browser(scene.classmate)
    for post in (scene.anon_reply, scene.anon_opening):
        for headers in ({}, htmx()):
            response = await web.get(
                f"/courses/{scene.course.slug}/posts/{post.id}/edit", headers=headers
            )
            assert response.status_code == 403
            assert leaks(response.text, scene.author) == []


async def test_a_classmates_notifications_name_nobody(scene: Scene) -> None:
    notices = await Notification.filter(user_id=scene.classmate.id, kind="reply")
    assert {n.link.rsplit("#post-", 1)[1] for n in notices} == {
        str(scene.anon_nested.id),
        str(scene.anon_reply.id),
    }
    for notice in notices:
        assert notice.message.startswith(f"{ANONYMOUS_LABEL} replied in “")
        assert leaks(notice.message, scene.author) == []
        assert leaks(notice.link, scene.author) == []
    # Staff are told the same words: a notice is no place to unmask anyone.
    mentor_notices = await Notification.filter(user_id=scene.mentor.id, kind="reply")
    assert any(n.message.startswith(ANONYMOUS_LABEL) for n in mentor_notices)


async def test_the_api_shows_a_classmate_no_trace_of_the_author(
    app: Starlette, scene: Scene
) -> None:
    slug = scene.course.slug
    anon_threads = {scene.anon_thread.id}
    async with await api_client(app, scene.classmate) as api:
        listing = await api.get(
            f"/api/v1/courses/{slug}/threads", params={"forum_id": scene.open_forum.id}
        )
        anon_detail = await api.get(f"/api/v1/courses/{slug}/threads/{scene.anon_thread.id}")
        other_detail = await api.get(f"/api/v1/courses/{slug}/threads/{scene.classmate_thread.id}")
        posts = {
            post_id: await api.get(f"/api/v1/courses/{slug}/posts/{post_id}")
            for post_id in scene.anonymous_posts
        }
        searches = [
            await api.get("/api/v1/search", params={"q": "heap", "course": slug}),
            await api.get("/api/v1/search", params={"q": NAME, "course": slug}),
            await api.get("/api/v1/search", params={"author": HANDLE, "course": slug}),
        ]
        everything = await api.get(f"/api/v1/courses/{slug}/threads")

    for response in searches:
        assert response.status_code == 200, response.text
        for hit in response.json()["hits"]:
            if hit["author"]["username"] == HANDLE:
                assert hit["post_id"] == scene.named_opening.id
    for response in (listing, anon_detail, other_detail, *posts.values(), searches[0]):
        assert response.status_code == 200, response.text
        assert leaks(response.text, scene.author) == [], response.request.url
        assert not {key for key, _ in walk(response.json())} & {"user_id", "author_id"}

    listed = authors_of(listing.json(), anon_threads, key="forum_id")
    assert [hidden_author(a) for a in listed] == [True]
    assert hidden_author(anon_detail.json()["author"])
    for detail, count in ((anon_detail, 2), (other_detail, 1)):
        found = authors_of(detail.json(), scene.anonymous_posts)
        assert len(found) == count and all(hidden_author(a) for a in found)
    for post_id, response in posts.items():
        body = response.json()
        assert body["id"] == post_id and hidden_author(body["author"])
        for revision in body["revisions"]:
            assert hidden_author(revision["editor"])
    assert len(posts[scene.anon_reply.id].json()["revisions"]) == 1
    assert len(posts[scene.anon_opening.id].json()["revisions"]) == 1
    heap_hits = {hit["post_id"] for hit in searches[0].json()["hits"]}
    assert scene.anonymous_posts & heap_hits
    assert not scene.anonymous_posts & {hit["post_id"] for hit in searches[1].json()["hits"]}
    assert not scene.anonymous_posts & {hit["post_id"] for hit in searches[2].json()["hits"]}

    # Across the whole course only the named thread carries the name.
    named = [t for t in everything.json() if t["author"]["username"] == HANDLE]
    assert [t["id"] for t in named] == [scene.named_thread.id]


async def test_the_search_index_holds_no_trace_of_the_author(scene: Scene) -> None:
    backend = service.backend()

    async def hits(text: str = "", **filters: Any) -> set[int]:
        query = SearchQuery(text=text, course_ids=[scene.course.id], **filters)
        return {hit.post_id for hit in (await backend.search(query)).hits}

    # The anonymous posts are in the index...
    assert scene.anonymous_posts <= await hits()
    assert scene.anon_opening.id in await hits("heaps balanced")
    # ...but nothing about them leads back to their author.
    for text in ("Zebulon", "Quixote", NAME, HANDLE, f"@{HANDLE}"):
        assert not scene.anonymous_posts & await hits(text), text
    by_handle = await hits(author_handle=HANDLE)
    assert by_handle == {scene.named_opening.id}
    assert await hits(author_handle=HANDLE.upper()) == {scene.named_opening.id}
    assert not scene.anonymous_posts & await hits("heap", author_handle=HANDLE)

    for post_id in scene.anonymous_posts:
        post = await Post.get(id=post_id).select_related("author")
        thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
        document = to_document(post, thread, scene.course)
        assert document.author_handle is None
        assert leaks(repr(document), scene.author) == []
    named = await Post.get(id=scene.named_opening.id).select_related("author")
    named_document = to_document(named, scene.named_thread, scene.course)
    assert named_document.author_handle == HANDLE


# ---------------------------------------------------------------- who may see the name


@pytest.mark.parametrize("who", ["author", "mentor", "instructor"])
async def test_the_author_and_the_course_staff_see_the_name(
    app: Starlette, scene: Scene, browser: Browser, who: str
) -> None:
    viewer: User = getattr(scene, who)
    web = await browser(viewer)
    slug = scene.course.slug
    card = f'aria-label="Post by {NAME}"'
    # htmx fragments: no navigation bar that would name the signed-in author anyway.
    for thread in (scene.anon_thread, scene.classmate_thread):
        fragment = (await web.get(f"/courses/{slug}/threads/{thread.id}", headers=htmx())).text
        assert card in fragment and f"@{HANDLE}" in fragment
        assert "anonymous to classmates" in fragment
    threads = (await web.get(f"/courses/{slug}/forums/{scene.open_forum.id}", headers=htmx())).text
    assert NAME in threads
    history = (await web.get(f"/courses/{slug}/posts/{scene.anon_reply.id}/history")).text
    assert f"Post by {NAME} (@{HANDLE})" in history
    assert f'{NAME} <span class="muted">@{HANDLE}</span>' in history

    async with await api_client(app, viewer) as api:
        detail = (await api.get(f"/api/v1/courses/{slug}/threads/{scene.anon_thread.id}")).json()
        post = (await api.get(f"/api/v1/courses/{slug}/posts/{scene.anon_reply.id}")).json()
    assert shown_author(detail["author"], anonymous=True)
    assert shown_author(detail["opening"]["author"], anonymous=True)
    assert shown_author(post["author"], anonymous=True)
    assert shown_author(post["revisions"][0]["editor"], anonymous=True)


async def test_a_named_post_by_the_same_learner_shows_the_name_to_everyone(
    app: Starlette, scene: Scene, browser: Browser
) -> None:
    web = await browser(scene.classmate)
    slug = scene.course.slug
    page = await web.get(f"/courses/{slug}/threads/{scene.named_thread.id}", headers=htmx())
    assert f'aria-label="Post by {NAME}"' in page.text and f"@{HANDLE}" in page.text
    assert "anonymous to classmates" not in page.text
    listing = await web.get(f"/courses/{slug}/forums/{scene.named_forum.id}", headers=htmx())
    assert NAME in listing.text
    found = await web.get(f"/courses/{slug}/search?author={HANDLE}")
    assert f"/threads/{scene.named_thread.id}" in found.text

    async with await api_client(app, scene.classmate) as api:
        detail = (await api.get(f"/api/v1/courses/{slug}/threads/{scene.named_thread.id}")).json()
    assert shown_author(detail["author"], anonymous=False)
    assert shown_author(detail["opening"]["author"], anonymous=False)

    # A named reply tells subscribers who wrote it.
    await actions.set_subscription(scene.named_thread, subscribed=True, acting_user=scene.classmate)
    await make_reply(scene.named_thread, scene.author, body="And a named follow-up.")
    await drain_jobs()
    notice = await Notification.filter(user_id=scene.classmate.id, kind="reply").first()
    assert notice is not None and notice.message.startswith(f"{NAME} replied")
    assert NAME in (await web.get("/notifications")).text


async def test_an_author_can_write_anonymously_only_where_the_forum_allows(
    scene: Scene,
) -> None:
    await actions.update_forum(
        scene.open_forum,
        title="Questions",
        description="",
        allow_anonymous=False,
        acting_user=scene.instructor,
    )
    forum = await Forum.get(id=scene.open_forum.id)
    with pytest.raises(InvalidInput) as caught:
        await make_thread(forum, scene.author, anonymous=True)
    assert set(caught.value.fields) == {"anonymous"}
    with pytest.raises(InvalidInput) as caught:
        await make_reply(scene.classmate_thread, scene.author, anonymous=True)
    assert set(caught.value.fields) == {"anonymous"}
    # What was posted anonymously before stays anonymous.
    assert (await Post.get(id=scene.anon_reply.id)).is_anonymous
