"""The forum's JSON API as a script sees it: threads, posts, edits, votes, errors, OpenAPI."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from core import actions as core_actions
from core.models import Course, OutboxEvent, Role, User
from forum.markup import MAX_BODY_CHARS
from forum.models import Forum, Post, Revision, Thread, Vote
from tests.factories import (
    add_member,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

pytestmark = pytest.mark.usefixtures("reused_password_hashes")


async def _no_server_errors(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.request.method} {response.request.url}"


Api = Callable[[User], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def api(app: Starlette) -> AsyncIterator[Api]:
    """Opens a client that sends a fresh API token of the given user."""
    opened: list[httpx.AsyncClient] = []

    async def open_as(user: User) -> httpx.AsyncClient:
        token = await core_actions.issue_api_token(user, name="test", acting_user=None)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {token}"},
            event_hooks={"response": [_no_server_errors]},
        )
        opened.append(client)
        return client

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
    outsider: User

    @property
    def base(self) -> str:
        return f"/api/v1/courses/{self.course.slug}"


@pytest.fixture
async def world(app: Starlette) -> World:
    instructor = await make_user("ines")
    course = await make_course(instructor, title="Networks")
    mentor, asker, learner = await make_user("mona"), await make_user("ali"), await make_user("lea")
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, asker)
    await add_member(course, learner)
    outsider = await make_user("otto")
    forum = await make_forum(course, title="Q&A")
    return World(course, forum, instructor, mentor, asker, learner, outsider)


def assert_error(
    response: httpx.Response, status: int, code: str, fields: set[str] | None = None
) -> dict[str, Any]:
    """The API's error shape with this status and code (and exactly these fields)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code and error["message"].strip()
    if fields is not None:
        assert set(error["fields"]) == fields, error
        assert all(isinstance(v, str) and v for v in error["fields"].values())
    return error


# ---------------------------------------------------------------- threads


async def test_create_and_list_threads(world: World, api: Api) -> None:
    asker = await api(world.asker)
    response = await asker.post(
        f"{world.base}/threads",
        json={
            "forum_id": world.forum.id,
            "kind": "question",
            "title": "  What is   a socket? ",
            "body": "Explain *sockets*.",
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    thread = await Thread.get(id=created["id"])
    assert created["title"] == thread.title == "What is a socket?"
    assert created["kind"] == "question" and created["forum_id"] == world.forum.id
    assert created["author"] == {
        "name": world.asker.display_name,
        "username": "ali",
        "anonymous_to_classmates": False,
    }
    assert (created["reply_count"], created["answered"], created["locked"]) == (0, False, False)
    assert created["opening"]["body_markdown"] == "Explain *sockets*."
    assert "<em>sockets</em>" in created["opening"]["body_html"]
    assert created["posts"] == [] and (created["page"], created["pages"]) == (1, 1)

    other_forum = await make_forum(world.course, title="Off-topic")
    await make_thread(other_forum, world.learner, title="Lunch plans")
    learner = await api(world.learner)
    listing = await learner.get(f"{world.base}/threads")
    assert listing.status_code == 200
    assert [t["title"] for t in listing.json()] == ["Lunch plans", "What is a socket?"]
    only = await learner.get(f"{world.base}/threads", params={"forum_id": world.forum.id})
    assert [t["id"] for t in only.json()] == [thread.id]
    assert (await learner.get(f"{world.base}/threads", params={"page": 2})).json() == []
    assert_error(
        await learner.get(f"{world.base}/threads", params={"page": "two"}),
        422,
        "invalid",
        {"page"},
    )


async def test_get_a_thread_with_its_posts_and_replies(world: World, api: Api) -> None:
    thread = await make_thread(world.forum, world.asker, kind="question", title="TCP vs UDP")
    answer = await make_reply(thread, world.learner, body="TCP is reliable.")
    nested = await make_reply(thread, world.asker, parent=answer, body="Thanks!")
    second = await make_reply(thread, world.mentor, body="UDP is fast.")
    client = await api(world.learner)
    response = await client.get(f"{world.base}/threads/{thread.id}")
    assert response.status_code == 200
    detail = response.json()
    assert detail["reply_count"] == 3
    assert [p["id"] for p in detail["posts"]] == [answer.id, second.id]
    first = detail["posts"][0]
    assert first["parent_id"] is None and first["thread_id"] == thread.id
    assert [r["id"] for r in first["replies"]] == [nested.id]
    assert first["replies"][0]["parent_id"] == answer.id
    assert detail["posts"][1]["author"]["username"] == "mona"
    assert {"voted", "votes", "accepted", "endorsed", "deleted"} <= set(first)
    pages = await client.get(f"{world.base}/threads/{thread.id}", params={"page": 5})
    assert pages.json()["page"] == 1


async def test_create_a_post_and_a_reply_to_it(world: World, api: Api) -> None:
    thread = await make_thread(world.forum, world.asker)
    client = await api(world.learner)
    url = f"{world.base}/threads/{thread.id}/posts"
    response = await client.post(url, json={"body": "First **answer**"})
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["thread_id"] == thread.id and answer["parent_id"] is None
    assert "<strong>answer</strong>" in answer["body_html"]
    assert answer["author"]["username"] == "lea"
    stored = await Post.get(id=answer["id"])
    assert stored.author_id == world.learner.id  # type: ignore[attr-defined]

    asker = await api(world.asker)
    nested = await asker.post(url, json={"body": "Follow-up", "parent_id": answer["id"]})
    assert nested.status_code == 201
    deeper = await client.post(url, json={"body": "Deeper", "parent_id": nested.json()["id"]})
    # One level of nesting: a reply to a reply hangs under the answer.
    assert deeper.json()["parent_id"] == answer["id"]
    assert (await Thread.get(id=thread.id)).reply_count == 3
    assert await OutboxEvent.filter(kind="forum.reply").count() == 3


async def test_get_a_post_with_its_revisions_and_edit_it(world: World, api: Api) -> None:
    thread = await make_thread(world.forum, world.asker, title="Routing", body="v1")
    opening = await Post.get(thread_id=thread.id, is_opening=True)
    client = await api(world.asker)
    url = f"{world.base}/posts/{opening.id}"

    response = await client.patch(url, json={"body": "v2", "title": "Routing tables"})
    assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["body_markdown"] == "v2" and edited["revision_count"] == 1
    assert edited["edited_at"] is not None
    assert (await Thread.get(id=thread.id)).title == "Routing tables"
    await client.patch(url, json={"body": "v3"})

    detail = (await (await api(world.learner)).get(url)).json()
    assert detail["body_markdown"] == "v3" and detail["revision_count"] == 2
    revisions = detail["revisions"]
    assert [r["previous_markdown"] for r in revisions] == ["v1", "v2"]
    assert [r["previous_title"] for r in revisions] == ["Routing", "Routing tables"]
    assert all(r["editor"]["username"] == "ali" and not r["by_staff"] for r in revisions)
    assert await Revision.filter(post_id=opening.id).count() == 2


async def test_vote_and_take_it_back(world: World, api: Api) -> None:
    thread = await make_thread(world.forum, world.asker)
    answer = await make_reply(thread, world.learner)
    client = await api(world.asker)
    url = f"{world.base}/posts/{answer.id}/vote"
    for _ in range(2):
        response = await client.post(url, json={})
        assert response.status_code == 200
        assert (response.json()["votes"], response.json()["voted"]) == (1, True)
    response = await client.post(url, json={"up": False})
    assert (response.json()["votes"], response.json()["voted"]) == (0, False)
    assert await Vote.all().count() == 0
    own = await (await api(world.learner)).post(url, json={"up": True})
    assert_error(own, 403, "forbidden")


# ---------------------------------------------------------------- errors


async def test_non_members_are_refused_everywhere(world: World, api: Api) -> None:
    thread = await make_thread(world.forum, world.asker)
    post = await make_reply(thread, world.learner)
    client = await api(world.outsider)
    base = world.base
    requests = [
        ("GET", f"{base}/threads", None),
        ("POST", f"{base}/threads", {"forum_id": world.forum.id, "title": "Hi!", "body": "x"}),
        ("GET", f"{base}/threads/{thread.id}", None),
        ("POST", f"{base}/threads/{thread.id}/posts", {"body": "x"}),
        ("GET", f"{base}/posts/{post.id}", None),
        ("PATCH", f"{base}/posts/{post.id}", {"body": "x"}),
        ("POST", f"{base}/posts/{post.id}/vote", {"up": True}),
    ]
    for method, url, body in requests:
        assert_error(await client.request(method, url, json=body), 403, "forbidden")
        if method == "GET":  # (an unsafe request without a token fails the CSRF check first)
            anonymous = await client.get(url, headers={"Authorization": ""})
            assert_error(anonymous, 401, "not_authenticated")
    assert await Post.all().count() == 2 and await Thread.all().count() == 1


async def test_unknown_ids_are_404(world: World, api: Api) -> None:
    other_instructor = await make_user("olga")
    other = await make_course(other_instructor)
    await add_member(other, world.learner)
    foreign_thread = await make_thread(await make_forum(other), other_instructor)
    foreign_post = await Post.get(thread_id=foreign_thread.id)
    client = await api(world.learner)
    base = world.base
    for method, url, body in [
        ("GET", f"{base}/threads/999999", None),
        ("GET", f"{base}/threads/{foreign_thread.id}", None),
        ("POST", f"{base}/threads/999999/posts", {"body": "x"}),
        ("POST", f"{base}/threads/{foreign_thread.id}/posts", {"body": "x"}),
        ("GET", f"{base}/posts/999999", None),
        ("GET", f"{base}/posts/{foreign_post.id}", None),
        ("PATCH", f"{base}/posts/{foreign_post.id}", {"body": "x"}),
        ("POST", f"{base}/posts/999999/vote", {}),
        ("GET", "/api/v1/courses/no-such-course/threads", None),
    ]:
        assert_error(await client.request(method, url, json=body), 404, "not_found")
    # A non-integer id matches no route at all.
    assert_error(await client.get(f"{base}/threads/abc"), 404, "not_found")
    assert await Post.filter(thread_id=foreign_thread.id).count() == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"title": "No body"}, {"body"}),
        ({"title": "Hello", "body": ""}, {"body"}),
        ({"title": "Hello", "body": "x", "kind": "poll"}, {"kind"}),
        ({"title": "Hello", "body": "x", "extra": 1}, {"extra"}),
        ({"title": "Hello", "body": "x", "anonymous": "maybe"}, {"anonymous"}),
        ({"title": "Hi", "body": "x"}, {"title"}),
        ({"title": "Hello", "body": "b" * (MAX_BODY_CHARS + 1)}, {"body"}),
        ({"title": "", "body": "   "}, {"title"}),
        ({"title": "Hello", "body": "x", "forum_id": 999999}, {"forum_id"}),
        ({"title": "Hello", "body": "x", "forum_id": "first"}, {"forum_id"}),
    ],
)
async def test_bad_thread_bodies_are_422_with_fields(
    world: World, api: Api, body: dict[str, Any], fields: set[str]
) -> None:
    client = await api(world.learner)
    response = await client.post(f"{world.base}/threads", json={"forum_id": world.forum.id} | body)
    assert_error(response, 422, "invalid", fields)
    assert await Thread.all().count() == 0


async def test_bad_post_and_edit_bodies_are_422_with_fields(world: World, api: Api) -> None:
    thread = await make_thread(world.forum, world.asker)
    other_thread = await make_thread(world.forum, world.asker)
    elsewhere = await make_reply(other_thread, world.learner)
    opening = await Post.get(thread_id=thread.id, is_opening=True)
    client = await api(world.asker)
    posts = f"{world.base}/threads/{thread.id}/posts"
    for body, fields in [
        ({}, {"body"}),
        ({"body": "   "}, {"body"}),
        ({"body": "x", "parent_id": 999999}, {"parent_id"}),
        ({"body": "x", "parent_id": elsewhere.id}, {"parent_id"}),
        ({"body": "x", "votes": 3}, {"votes"}),
        ({"body": "nul\x00"}, {"body"}),
    ]:
        assert_error(await client.post(posts, json=body), 422, "invalid", fields)
    # The opening post is no answer to reply to (the action names the field "parent").
    error = assert_error(
        await client.post(posts, json={"body": "x", "parent_id": opening.id}), 422, "invalid"
    )
    assert set(error["fields"]) & {"parent", "parent_id"}
    assert_error(await client.post(posts, content=b"not json"), 422, "invalid")
    assert_error(await client.post(posts, json=["body"]), 422, "invalid")

    edit = f"{world.base}/posts/{opening.id}"
    for body, fields in [
        ({}, {"body"}),
        ({"body": "ok", "title": "no"}, {"title"}),
        ({"body": "z" * (MAX_BODY_CHARS + 1)}, {"body"}),
        ({"body": "ok", "pinned": True}, {"pinned"}),
    ]:
        assert_error(await client.patch(edit, json=body), 422, "invalid", fields)
    vote = f"{world.base}/posts/{elsewhere.id}/vote"
    assert_error(await client.post(vote, json={"up": "sideways"}), 422, "invalid", {"up"})
    assert await Post.filter(thread_id=thread.id).count() == 1
    assert await Revision.all().count() == 0 and await Vote.all().count() == 0


async def test_permission_errors_are_403(world: World, api: Api) -> None:
    thread = await make_thread(world.forum, world.asker)
    opening = await Post.get(thread_id=thread.id, is_opening=True)
    learner = await api(world.learner)
    assert_error(
        await learner.patch(f"{world.base}/posts/{opening.id}", json={"body": "Mine now"}),
        403,
        "forbidden",
    )
    await Thread.filter(id=thread.id).update(is_locked=True)
    assert_error(
        await learner.post(f"{world.base}/threads/{thread.id}/posts", json={"body": "Hi"}),
        403,
        "forbidden",
    )
    closed = await make_forum(world.course, allow_anonymous=False)
    response = await learner.post(
        f"{world.base}/threads",
        json={"forum_id": closed.id, "title": "Hello", "body": "x", "anonymous": True},
    )
    assert_error(response, 422, "invalid", {"anonymous"})
    assert (await Post.get(id=opening.id)).body_markdown == "An opening post."


# ---------------------------------------------------------------- OpenAPI


async def test_the_openapi_document_lists_the_forum_paths(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    paths = (await client.get("/api/v1/openapi.json")).json()["paths"]
    expected = {
        "/api/v1/courses/{slug}/threads": {"get", "post"},
        "/api/v1/courses/{slug}/threads/{thread_id}": {"get"},
        "/api/v1/courses/{slug}/threads/{thread_id}/posts": {"post"},
        "/api/v1/courses/{slug}/posts/{post_id}": {"get", "patch"},
        "/api/v1/courses/{slug}/posts/{post_id}/vote": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert set(paths[path]) >= methods, path
        for method in methods:
            operation = paths[path][method]
            assert operation["tags"] == ["forum"] and operation["summary"]
            types = {p["name"]: p["schema"]["type"] for p in operation["parameters"]}
            ids = {name: "integer" for name in re.findall(r"\{(\w+_id)\}", path)}
            assert types == {"slug": "string", **ids}, (path, method)
            assert all(p["in"] == "path" and p["required"] for p in operation["parameters"])
            assert {"401", "403", "404", "422"} <= set(operation["responses"])
    assert "201" in paths["/api/v1/courses/{slug}/threads"]["post"]["responses"]
    assert "201" in paths["/api/v1/courses/{slug}/threads/{thread_id}/posts"]["post"]["responses"]
