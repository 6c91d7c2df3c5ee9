"""No shadow bans (DESIGN.md invariant 4): every restriction is visible to the person restricted.

After each act, the affected member's standing page lists it with the rule and the reason, and
trying to do what is now restricted gets an explicit message, never a silent success or a
generic error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape

import httpx
import pytest
from starlette.applications import Starlette

from core.models import Course, Notification, Role, User
from forum.models import Post, Thread
from moderation import actions
from moderation.models import DEFAULT_RULES
from tests.conftest import CSRF_RE, drain_jobs
from tests.factories import (
    add_member,
    log_in,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

RULES = dict(DEFAULT_RULES)


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass
class World:
    course: Course
    thread: Thread  # by ali
    post: Post  # ali's reply
    mona: User  # mentor
    ali: User  # the member who is restricted
    ali_browser: httpx.AsyncClient
    lea_browser: httpx.AsyncClient

    @property
    def thread_url(self) -> str:
        return f"/courses/{self.course.slug}/threads/{self.thread.id}"


@pytest.fixture
async def world(app: Starlette) -> AsyncIterator[World]:
    ines = await make_user("ines")
    course = await make_course(ines, title="Ethics")
    mona, ali, lea = await make_user("mona"), await make_user("ali"), await make_user("lea")
    await add_member(course, mona, Role.MENTOR)
    await add_member(course, ali)
    await add_member(course, lea)
    forum = await make_forum(course, title="General")
    thread = await make_thread(forum, ali, title="Is lying ever right?")
    post = await make_reply(thread, ali, body="Only fools think so, says the reading.")
    await drain_jobs()
    browsers = []
    for name in ("ali", "lea"):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        browser = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        await log_in(browser, name)
        browsers.append(browser)
    try:
        yield World(course, await Thread.get(id=thread.id), post, mona, ali, *browsers)
    finally:
        for browser in browsers:
            await browser.aclose()


async def post_form(browser: httpx.AsyncClient, url: str, data: dict[str, str]) -> httpx.Response:
    page = await browser.get("/me/standing")
    match = CSRF_RE.search(page.text)
    assert match
    return await browser.post(url, data={**data, "csrf_token": match.group(1)})


REASONS = {
    "hide": "Calls classmates fools in a thread about the reading.",
    "remove": "Posts a classmate's phone number in the thread.",
    "warning": "Repeatedly mocks other answers; please keep it civil.",
    "silence": "Kept insulting classmates after a warning.",
    "suspension": "Shared the graded solutions a second time.",
    "lock": "The discussion turned into personal attacks.",
}


async def restrict(world: World, what: str) -> str:
    """Take the act on ali (or his post or thread); returns the rule code cited."""
    cite = {"reason": REASONS[what], "acting_user": world.mona}
    if what == "hide":
        await actions.hide_post(world.post, rule_code="R1", **cite)
        return "R1"
    if what == "remove":
        await actions.remove_post(world.post, rule_code="R5", **cite)
        return "R5"
    if what == "lock":
        await actions.lock_thread(world.thread, locked=True, rule_code="R1", **cite)
        return "R1"
    rule = "R4" if what == "suspension" else "R1"
    await actions.sanction_user(world.course, world.ali, what, rule_code=rule, days=3, **cite)
    return rule


@pytest.mark.parametrize("what", list(REASONS))
async def test_the_restricted_member_sees_it_on_their_standing_page(
    world: World, what: str
) -> None:
    rule = await restrict(world, what)
    await drain_jobs()
    page = await world.ali_browser.get("/me/standing")
    assert page.status_code == 200
    text = unescape(page.text)
    assert REASONS[what] in text
    assert f"{rule}: {RULES[rule]}" in text
    assert "Appeal this decision" in text
    if what in {"silence", "suspension"}:
        current = text.split('id="current-heading"')[1].split('id="notices-heading"')[0]
        assert ("Silenced" if what == "silence" else "Suspended") in current
        assert REASONS[what] in current
    # ... and is told at once, with a link to that page.
    assert await Notification.filter(
        user_id=world.ali.id, kind="moderation", link="/me/standing"
    ).exists()


async def test_a_hidden_post_shows_its_author_why(world: World) -> None:
    await restrict(world, "hide")
    own = (await world.ali_browser.get(world.thread_url)).text
    assert "Hidden by a moderator" in own and REASONS["hide"] in own
    assert "Only fools think so" in own  # the author still reads it
    other = (await world.lea_browser.get(world.thread_url)).text
    assert "Hidden by a moderator" in other and "Only fools think so" not in other


async def test_a_removed_post_shows_its_author_why(world: World) -> None:
    await restrict(world, "remove")
    own = unescape((await world.ali_browser.get(world.thread_url)).text)
    assert "Removed by a moderator" in own and REASONS["remove"] in own
    assert "Only fools think so" not in own  # only staff still read a removed post


async def test_a_silenced_member_is_told_when_trying_to_post(world: World) -> None:
    await restrict(world, "silence")
    before = await Post.all().count()
    response = await post_form(
        world.ali_browser, f"{world.thread_url}/reply", {"body": "Still here!"}
    )
    assert response.status_code == 403
    assert "You are silenced in this course until" in response.text
    assert "/me/standing" in response.text
    assert await Post.all().count() == before
    # Reading still works.
    assert (await world.ali_browser.get(world.thread_url)).status_code == 200


@pytest.mark.parametrize("page", ["course", "forums", "thread"])
async def test_a_suspended_member_is_told_when_opening_the_course(world: World, page: str) -> None:
    await restrict(world, "suspension")
    url = {
        "course": f"/courses/{world.course.slug}",
        "forums": f"/courses/{world.course.slug}/forums",
        "thread": world.thread_url,
    }[page]
    response = await world.ali_browser.get(url)
    assert response.status_code == 403
    assert "You are suspended from Ethics until" in response.text
    assert "/me/standing" in response.text


async def test_a_suspended_member_cannot_post_and_still_reads_their_standing(
    world: World,
) -> None:
    await restrict(world, "suspension")
    response = await post_form(
        world.ali_browser, f"{world.thread_url}/reply", {"body": "Let me in."}
    )
    assert response.status_code == 403 and "suspended" in response.text
    # The standing page itself stays open to them.
    assert (await world.ali_browser.get("/me/standing")).status_code == 200


async def test_replying_in_a_locked_thread_is_refused_with_a_reason(world: World) -> None:
    await restrict(world, "lock")
    page = (await world.lea_browser.get(world.thread_url)).text
    assert "This thread is locked: no new replies." in page
    for browser in (world.ali_browser, world.lea_browser):
        response = await post_form(browser, f"{world.thread_url}/reply", {"body": "One more."})
        assert response.status_code == 403
        assert "This thread is locked: no new replies." in response.text


async def test_a_warning_restricts_nothing_but_is_on_the_record(world: World) -> None:
    await restrict(world, "warning")
    response = await post_form(
        world.ali_browser, f"{world.thread_url}/reply", {"body": "Sorry, everyone."}
    )
    assert response.status_code == 303
    current = (await world.ali_browser.get("/me/standing")).text
    assert "None: you can take part everywhere you are a member." in current


async def test_a_post_moderated_again_shows_the_latest_reason(world: World) -> None:
    """Each act on a post is in the log; the page shows the one behind its current state."""
    post = await Post.get(id=world.post.id)
    await actions.remove_post(
        post, rule_code="R1", reason="First: an insult.", acting_user=world.mona
    )
    post = await Post.get(id=world.post.id)
    await actions.restore_post(
        post, rule_code="R1", reason="Restored on appeal.", acting_user=world.mona
    )
    post = await Post.get(id=world.post.id)
    await actions.hide_post(
        post, rule_code="R2", reason="Second: off topic now.", acting_user=world.mona
    )
    await drain_jobs()
    own = unescape((await world.ali_browser.get(world.thread_url)).text)
    assert "Hidden by a moderator" in own and "Second: off topic now." in own
    assert "First: an insult." not in own and "Restored on appeal." not in own
    assert RULES["R2"] in own
