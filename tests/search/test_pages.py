"""The search pages and the JSON search, through the whole application."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette

from core import actions as core_actions
from core.models import Course, Role, User
from core.timeutil import utcnow
from forum import actions as forum_actions
from forum.models import Forum, Post, Thread
from moderation import actions as moderation
from moderation.models import SanctionKind
from search.backends import MAX_QUERY_CHARS
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

REASON = "Please keep this forum on topic."
HX = {"HX-Request": "true"}


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass(slots=True)
class World:
    course: Course
    general: Forum
    questions: Forum
    mentor: User
    asker: User
    classmate: User
    other_course: Course
    other_forum: Forum
    stranger: User
    walrus_opening: Post
    walrus_reply: Post
    question: Thread
    answer: Post
    secret: Post


@pytest.fixture
async def world(app: Starlette) -> World:
    """Two courses with posts that all mention walruses; the asker is in the first only."""
    instructor = await make_user("irene")
    course = await make_course(instructor, title="Polar ecology")
    mentor, asker, classmate = (
        await make_user("mika"),
        await make_user("asha"),
        await make_user("carl"),
    )
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, asker)
    await add_member(course, classmate)
    general = await make_forum(course, title="General")
    questions = await make_forum(course, title="Questions")
    thread = await make_thread(
        general, classmate, title="Walrus haul-outs", body="Walruses gather on the ice floes."
    )
    walrus_reply = await make_reply(thread, asker, body="Walruses also use beaches.")
    question = await make_thread(
        questions, asker, kind="question", title="Walrus tusks?", body="What are walrus tusks for?"
    )
    answer = await make_reply(question, classmate, body="Tusks help walruses climb out.")
    stranger = await make_user("sven")
    other_course = await make_course(stranger, title="Secret course")
    other_forum = await make_forum(other_course, title="Hidden")
    secret_thread = await make_thread(
        other_forum, stranger, title="Walrus secret", body="Walruses in the secret course."
    )
    await drain_jobs()
    return World(
        course,
        general,
        questions,
        mentor,
        asker,
        classmate,
        other_course,
        other_forum,
        stranger,
        await Post.get(thread_id=thread.id, is_opening=True),
        walrus_reply,
        question,
        answer,
        await Post.get(thread_id=secret_thread.id, is_opening=True),
    )


def post_ids(html: str) -> set[int]:
    return {int(n) for n in re.findall(r'href="/courses/[^"/]+/threads/\d+#post-(\d+)"', html)}


async def logged_in(client: httpx.AsyncClient, user: User) -> httpx.AsyncClient:
    response = await log_in(client, user.username)
    assert response.status_code in (302, 303), response.text
    return client


# --- the page, its fragment, the plain form --------------------------------------------------


async def test_page_fragment_and_plain_form(client: httpx.AsyncClient, world: World) -> None:
    await logged_in(client, world.asker)
    url = f"/courses/{world.course.slug}/search"
    empty = await client.get(url)
    assert empty.status_code == 200
    page = empty.text
    # A plain GET form that works without JavaScript ...
    assert f'<form method="get" action="{url}" role="search"' in page
    assert 'type="submit"' in page
    # ... and searches as one types, when htmx is there.
    assert 'hx-trigger="input changed delay:300ms, search"' in page
    assert f'hx-get="{url}"' in page and 'hx-target="#search-results"' in page
    assert 'hx-push-url="true"' in page
    assert 'id="search-results"' in page and post_ids(page) == set()

    full = await client.get(url, params={"q": "walruses"})
    assert full.status_code == 200
    assert "<html" in full.text and "<form" in full.text
    expected = {
        world.walrus_opening.id,
        world.walrus_reply.id,
        world.answer.id,
        (await Post.get(thread_id=world.question.id, is_opening=True)).id,
    }
    assert post_ids(full.text) == expected
    assert "<mark>" in full.text
    assert "HX-Request" in full.headers["vary"]

    fragment = await client.get(url, params={"q": "walruses"}, headers=HX)
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="search-results"')
    assert "<html" not in fragment.text and "<form" not in fragment.text
    assert post_ids(fragment.text) == expected

    # A result links to the post in its thread.
    href = f"/courses/{world.course.slug}/threads/{world.question.id}#post-{world.answer.id}"
    assert f'href="{href}"' in full.text


async def test_site_wide_search_covers_my_courses(client: httpx.AsyncClient, world: World) -> None:
    second = await make_course(
        await make_user("tom"),
        title="Tundra",
    )
    await add_member(second, world.asker)
    tundra = await make_forum(second, title="Tundra talk")
    tundra_thread = await make_thread(
        tundra, world.asker, title="Lemmings", body="Walruses never visit the tundra."
    )
    await drain_jobs()
    await logged_in(client, world.asker)
    response = await client.get("/search", params={"q": "walruses"})
    assert response.status_code == 200
    ids = post_ids(response.text)
    assert (await Post.get(thread_id=tundra_thread.id, is_opening=True)).id in ids
    assert world.walrus_opening.id in ids
    assert world.secret.id not in ids
    assert "Tundra" in response.text and "Polar ecology" in response.text


async def test_pages_need_a_member(client: httpx.AsyncClient, world: World) -> None:
    for url in ("/search", f"/courses/{world.course.slug}/search"):
        response = await client.get(url, params={"q": "walruses"})
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
    await logged_in(client, world.asker)
    response = await client.get(
        f"/courses/{world.other_course.slug}/search", params={"q": "walruses"}
    )
    assert response.status_code == 403
    assert post_ids(response.text) == set()
    response = await client.get("/courses/no-such-course/search", params={"q": "walruses"})
    assert response.status_code == 404


# --- filters ----------------------------------------------------------------------------------


async def test_filters(client: httpx.AsyncClient, world: World) -> None:
    await logged_in(client, world.asker)
    url = f"/courses/{world.course.slug}/search"
    question_opening = (await Post.get(thread_id=world.question.id, is_opening=True)).id

    async def ids(**params: str) -> set[int]:
        response = await client.get(url, params={"q": "walruses", **params})
        assert response.status_code == 200, response.text
        return post_ids(response.text)

    in_general = {world.walrus_opening.id, world.walrus_reply.id}
    in_questions = {question_opening, world.answer.id}
    assert await ids(forum_id=str(world.general.id)) == in_general
    assert await ids(forum_id=str(world.questions.id)) == in_questions
    assert await ids(kind="question") == in_questions
    assert await ids(kind="discussion") == in_general
    assert await ids(unanswered="1") == in_questions
    assert await ids(author="asha") == {world.walrus_reply.id, question_opening}
    assert await ids(author="@ASHA") == {world.walrus_reply.id, question_opening}
    assert await ids(author="nobody") == set()
    today = utcnow().date()
    assert await ids(**{"from": today.isoformat()}) == in_general | in_questions
    assert await ids(to=today.isoformat()) == in_general | in_questions
    assert await ids(to=(today - timedelta(days=1)).isoformat()) == set()
    assert await ids(**{"from": (today + timedelta(days=1)).isoformat()}) == set()
    # Filters alone, without words, list the newest matching posts.
    response = await client.get(url, params={"kind": "question"})
    assert post_ids(response.text) == in_questions

    await forum_actions.accept_answer(
        await Thread.get(id=world.question.id), world.answer, acting_user=world.asker
    )
    await drain_jobs()
    assert await ids(unanswered="1") == set()
    assert "answered" in (await client.get(url, params={"q": "tusks"})).text


async def test_pagination(client: httpx.AsyncClient, world: World) -> None:
    thread = await Thread.get(id=world.question.id)
    made = []
    for n in range(23):
        made.append(
            await forum_actions.reply(
                thread, body=f"Narwhal note number {n}.", acting_user=world.mentor
            )
        )
        thread = await Thread.get(id=world.question.id)
    await drain_jobs()
    await logged_in(client, world.asker)
    url = f"/courses/{world.course.slug}/search"
    first = await client.get(url, params={"q": "narwhal"})
    second = await client.get(url, params={"q": "narwhal", "page": "2"}, headers=HX)
    assert first.status_code == second.status_code == 200
    one, two = post_ids(first.text), post_ids(second.text)
    assert len(one) == 20 and len(two) == 3 and one.isdisjoint(two)
    assert one | two == {p.id for p in made}
    assert "page=2" in first.text and "Page 1 of 2" in first.text
    assert "Page 2 of 2" in second.text
    beyond = await client.get(url, params={"q": "narwhal", "page": "7"})
    assert beyond.status_code == 200 and post_ids(beyond.text) == set()


# --- what the asker may see -------------------------------------------------------------------


async def test_courses_come_from_memberships_not_the_query(
    client: httpx.AsyncClient, world: World
) -> None:
    await logged_in(client, world.asker)
    other = world.other_course
    smuggled = {
        "q": "walruses",
        "course": other.slug,
        "course_id": str(other.id),
        "course_ids": str(other.id),
        "slug": other.slug,
    }
    for url in ("/search", f"/courses/{world.course.slug}/search"):
        for headers in ({}, HX):
            response = await client.get(url, params=smuggled, headers=headers)
            assert response.status_code == 200
            ids = post_ids(response.text)
            assert ids and world.secret.id not in ids
            assert "Walrus secret" not in response.text
    # Naming the other course's forum does not reach into it either.
    response = await client.get(
        "/search", params={"q": "walruses", "forum_id": str(world.other_forum.id)}
    )
    assert response.status_code == 422
    assert world.secret.id not in post_ids(response.text)


async def test_hidden_and_removed_posts_never_appear(
    client: httpx.AsyncClient, world: World
) -> None:
    await moderation.hide_post(
        world.walrus_reply, rule_code="R2", reason=REASON, acting_user=world.mentor
    )
    await moderation.remove_post(
        world.answer, rule_code="R2", reason=REASON, acting_user=world.mentor
    )
    await drain_jobs()
    # Not even their author, nor the staff: the index holds what every member may read.
    for user in (world.asker, world.classmate, world.mentor):
        client.cookies.clear()
        await logged_in(client, user)
        response = await client.get(
            f"/courses/{world.course.slug}/search", params={"q": "walruses"}
        )
        ids = post_ids(response.text)
        assert world.walrus_opening.id in ids
        assert world.walrus_reply.id not in ids and world.answer.id not in ids
        assert "beaches" not in response.text and "climb out" not in response.text


async def test_anonymous_author_is_shown_only_to_staff(
    client: httpx.AsyncClient, world: World
) -> None:
    await make_reply(
        await Thread.get(id=world.question.id),
        world.classmate,
        anonymous=True,
        body="Walruses sleep in water, anonymously noted.",
    )
    await drain_jobs()
    await logged_in(client, world.asker)
    url = f"/courses/{world.course.slug}/search"
    response = await client.get(url, params={"q": "anonymously"})
    assert "Anonymous learner" in response.text
    assert "Carl" not in response.text and "carl" not in response.text
    assert (
        post_ids((await client.get(url, params={"q": "anonymously", "author": "carl"})).text)
        == set()
    )
    client.cookies.clear()
    await logged_in(client, world.mentor)
    response = await client.get(url, params={"q": "anonymously"})
    assert "Carl" in response.text and "anonymous to classmates" in response.text


async def test_highlights_are_escaped(client: httpx.AsyncClient, world: World) -> None:
    thread = await make_thread(
        world.general,
        world.asker,
        title="About <script>alert(1)</script> seals",
        body='Seals & walruses: <script>alert("seal")</script> <b>bold</b> seal',
    )
    await drain_jobs()
    await logged_in(client, world.asker)
    response = await client.get(f"/courses/{world.course.slug}/search", params={"q": "seal"})
    assert response.status_code == 200
    assert post_ids(response.text) == {(await Post.get(thread_id=thread.id, is_opening=True)).id}
    assert "&lt;script&gt;" in response.text
    assert "<script>alert" not in response.text
    assert "<b>bold" not in response.text
    assert "<mark>" in response.text


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from": "2025-13-01"}, "must be a date"),
        ({"to": "yesterday"}, "must be a date"),
        ({"from": "2025-03-02", "to": "2025-03-01"}, "same day"),
        ({"page": "0"}, "numbered from 1"),
        ({"page": "two"}, "whole number"),
        ({"page": "51"}, "first 1000 results"),
        ({"q": "w" * (MAX_QUERY_CHARS + 1)}, "limited to"),
        ({"kind": "poem"}, "discussion or question"),
        ({"author": "two words"}, "username"),
        ({"forum_id": "x"}, "forums"),
        ({"unanswered": "maybe"}, "true or false"),
        ({"q": "wal\x00rus"}, "NUL"),
    ],
)
async def test_bad_input_is_a_422_with_a_message(
    client: httpx.AsyncClient, world: World, params: dict[str, str], words: str
) -> None:
    await logged_in(client, world.asker)
    for headers in ({}, HX):
        response = await client.get(
            f"/courses/{world.course.slug}/search",
            params={"q": "walruses", **params},
            headers=headers,
        )
        assert response.status_code == 422
        assert words in response.text
        assert 'role="alert"' in response.text


# --- who counts as a member -------------------------------------------------------------------


async def test_admins_search_their_courses_site_wide_and_any_course_by_name(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = await make_user("ada", is_admin=True)
    await logged_in(client, admin)
    response = await client.get("/search", params={"q": "walruses"})
    assert response.status_code == 200 and post_ids(response.text) == set()
    assert "not a member of any course" in response.text
    response = await client.get(
        f"/courses/{world.other_course.slug}/search", params={"q": "walruses"}
    )
    assert response.status_code == 200
    assert post_ids(response.text) == {world.secret.id}


async def test_a_suspended_member_cannot_search_that_course(
    client: httpx.AsyncClient, world: World
) -> None:
    await moderation.sanction_user(
        world.course,
        world.asker,
        SanctionKind.SUSPENSION,
        rule_code="R1",
        reason=REASON,
        days=1,
        acting_user=world.mentor,
    )
    await logged_in(client, world.asker)
    response = await client.get(f"/courses/{world.course.slug}/search", params={"q": "walruses"})
    assert response.status_code == 403
    response = await client.get("/search", params={"q": "walruses"})
    assert response.status_code == 200 and post_ids(response.text) == set()


# --- the JSON API -----------------------------------------------------------------------------


async def test_api_search(client: httpx.AsyncClient, world: World) -> None:
    token = await core_actions.issue_api_token(world.asker, acting_user=None)
    auth = {"Authorization": f"Bearer {token}"}
    response = await client.get("/api/v1/search", params={"q": "tusks"}, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {hit["post_id"] for hit in body["hits"]} == {
        (await Post.get(thread_id=world.question.id, is_opening=True)).id,
        world.answer.id,
    }
    assert body["page"] == 1 and body["pages"] == 1 and body["total"] == 2
    hit = next(h for h in body["hits"] if h["post_id"] == world.answer.id)
    assert hit["course"] == world.course.slug and hit["forum_id"] == world.questions.id
    assert hit["kind"] == "question" and hit["answered"] is False
    assert "<mark>" in hit["snippet_html"]
    assert hit["author"] == {"name": "Carl", "username": "carl", "anonymous_to_classmates": False}

    mine = await client.get(
        "/api/v1/search", params={"q": "walruses", "course": world.course.slug}, headers=auth
    )
    assert mine.status_code == 200
    assert world.secret.id not in {h["post_id"] for h in mine.json()["hits"]}
    filtered = await client.get(
        "/api/v1/search",
        params={"q": "walruses", "forum_id": world.general.id, "author": "asha"},
        headers=auth,
    )
    assert [h["post_id"] for h in filtered.json()["hits"]] == [world.walrus_reply.id]

    for slug in (world.other_course.slug, "no-such-course"):
        refused = await client.get(
            "/api/v1/search", params={"q": "walruses", "course": slug}, headers=auth
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
    bad = await client.get("/api/v1/search", params={"q": "walruses", "page": "0"}, headers=auth)
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"] == {"page": "Pages are numbered from 1."}
    assert (await client.get("/api/v1/search", params={"q": "walruses"})).status_code == 401


async def test_api_search_is_in_the_openapi_document(
    client: httpx.AsyncClient, world: World
) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()
    operation = document["paths"]["/api/v1/search"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SearchOut"
    }
    assert "SearchHitOut" in document["components"]["schemas"]


async def test_search_box_partial_is_a_plain_form(client: httpx.AsyncClient, world: World) -> None:
    from core.templating import environment

    html = environment.get_template("search/_box.html").render(course=world.course)
    assert f'<form method="get" action="/courses/{world.course.slug}/search"' in html
    assert 'name="q"' in html and "<script" not in html
    await logged_in(client, world.asker)
    response = await client.get(f"/courses/{world.course.slug}/search", params={"q": "walrus"})
    assert response.status_code == 200 and post_ids(response.text)
