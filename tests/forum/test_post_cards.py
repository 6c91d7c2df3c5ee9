"""Post cards are reused between page views (forum/cards.py): each viewer must still get a
page that is right for them and never an old version of a post."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette

from core.models import Role
from forum import actions, cards
from forum.models import Post
from tests.factories import (
    add_member,
    log_in,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]*)"')


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


async def _signed_in(app: Starlette, username: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
        base_url="http://testserver",
    )
    assert (await log_in(client, username)).status_code == 303
    return client


def _post_html(page: str, post_id: int) -> str:
    start = page.index(f'<article id="post-{post_id}"')
    return page[start : page.index("</article>", start)]


async def test_each_viewer_gets_their_own_forms_and_buttons(app: Starlette) -> None:
    cards.clear()
    teacher = await make_user("tess")
    course = await make_course(teacher, title="Optics")
    ana, ben = await make_user("ana"), await make_user("ben")
    await add_member(course, ana)
    await add_member(course, ben)
    thread = await make_thread(await make_forum(course), ana, title="Lenses", body="Why convex?")
    reply = await make_reply(thread, ben, body="Because they converge.")
    url = f"/courses/{course.slug}/threads/{thread.id}"
    ana_web, ben_web = await _signed_in(app, "ana"), await _signed_in(app, "ben")
    try:
        for _ in range(2):  # the second round is served from reused cards
            ana_page, ben_page = (await ana_web.get(url)).text, (await ben_web.get(url)).text
            ana_tokens, ben_tokens = (
                set(TOKEN_RE.findall(ana_page)),
                set(TOKEN_RE.findall(ben_page)),
            )
            # Every form on a page carries that browser's own token, and only that one.
            assert len(ana_tokens) == 1 and len(ben_tokens) == 1 and ana_tokens != ben_tokens
            # Each may edit their own post only.
            assert f"/posts/{reply.id}/edit" in ben_page
            assert f"/posts/{reply.id}/edit" not in ana_page
            assert "Because they converge." in ana_page and "Because they converge." in ben_page
            # Authors' names lead to their profiles.
            assert '<a class="author" href="/users/ben">' in _post_html(ana_page, reply.id)

        # Ana upvotes Ben's reply: her button says so, Ben's page shows the count.
        response = await ana_web.post(
            f"/courses/{course.slug}/posts/{reply.id}/vote",
            data={"csrf_token": ana_tokens.pop(), "up": "1", "page": "1"},
        )
        assert response.status_code in (200, 303)
        ana_card = _post_html((await ana_web.get(url)).text, reply.id)
        ben_card = _post_html((await ben_web.get(url)).text, reply.id)
        assert 'aria-pressed="true"' in ana_card and "▲ 1" in ana_card
        assert 'aria-pressed="true"' not in ben_card and "▲ 1" in ben_card
    finally:
        await ana_web.aclose()
        await ben_web.aclose()


async def test_a_changed_post_is_never_shown_as_it_was(app: Starlette) -> None:
    teacher = await make_user("tara")
    course = await make_course(teacher, title="Acoustics")
    author, mentor, reader = await make_user("ida"), await make_user("max"), await make_user("rui")
    await add_member(course, author)
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, reader)
    thread = await make_thread(await make_forum(course), author, title="Echoes", body="First text")
    opening = await Post.get(thread_id=thread.id, is_opening=True)
    url = f"/courses/{course.slug}/threads/{thread.id}"
    web = await _signed_in(app, "rui")
    try:
        assert "First text" in (await web.get(url)).text
        await actions.edit_post(opening, body="Second text", acting_user=author)
        page = (await web.get(url)).text
        assert "Second text" in page and "First text" not in page
        assert "History (1 edit)" in page

        await actions.delete_own_post(await Post.get(id=opening.id), acting_user=author)
        page = (await web.get(url)).text
        assert "Second text" not in page and "Deleted by its author." in page
    finally:
        await web.aclose()
