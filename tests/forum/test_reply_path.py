"""Replies and edits as their writers meet them: who may write, what a refusal says, where a
new answer is shown, and what stays behind when the flood rule steps in."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette

from core import runtime
from core.errors import InvalidInput, PermissionDenied
from core.models import Course, RateLimitCounter, Role, User
from core.timeutil import utcnow
from forum import actions
from forum.models import Forum, Post, Revision, Thread
from forum.presenters import POSTS_PER_PAGE
from moderation import actions as moderation
from moderation.models import Sanction
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

REASON = "Kept insulting classmates after a warning."


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass(slots=True)
class Place:
    course: Course
    forum: Forum
    thread: Thread
    mentor: User
    ali: User
    lea: User


async def _place() -> Place:
    instructor = await make_user("ines")
    course = await make_course(instructor, title="Ethics")
    mentor, ali, lea = await make_user("mona"), await make_user("ali"), await make_user("lea")
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, ali)
    await add_member(course, lea)
    forum = await make_forum(course, title="Questions")
    thread = await make_thread(forum, lea, title="Is it fair?")
    return Place(course, forum, thread, mentor, ali, lea)


@pytest.fixture
async def place(db: object) -> Place:
    return await _place()


async def _sanction(place: Place, kind: str, *, days: float = 1) -> Sanction:
    entry = await moderation.sanction_user(
        place.course,
        place.ali,
        kind,
        rule_code="R1",
        reason=REASON,
        days=days,
        acting_user=place.mentor,
    )
    return await Sanction.get(entry_seq=entry.seq)


async def _reply(place: Place, body: str = "I think so.", **kwargs: object) -> Post:
    thread = await Thread.get(id=place.thread.id)
    return await actions.reply(thread, body=body, acting_user=place.ali, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- sanctions


async def test_a_silenced_member_cannot_reply_or_edit_and_is_told_until_when(place: Place) -> None:
    own = await _reply(place)
    silence = await _sanction(place, "silence")
    posts = await Post.all().count()
    with pytest.raises(PermissionDenied) as caught:
        await _reply(place, "Still here.")
    assert str(caught.value).startswith("You are silenced in this course until ")
    assert f"{silence.ends_at:%Y-%m-%d %H:%M} UTC" in str(caught.value)
    assert "/me/standing" in str(caught.value)
    with pytest.raises(PermissionDenied, match="You are silenced"):
        await actions.edit_post(own, body="Changed my mind.", acting_user=place.ali)
    assert await Post.all().count() == posts
    assert await Revision.all().count() == 0


async def test_a_suspension_is_named_before_a_silence(place: Place) -> None:
    await _sanction(place, "silence", days=5)
    await _sanction(place, "suspension", days=2)
    with pytest.raises(PermissionDenied, match="You are suspended in this course until"):
        await _reply(place)


@pytest.mark.parametrize("how", ["lifted", "ended", "warning"])
async def test_sanctions_no_longer_in_force_do_not_stop_a_reply(place: Place, how: str) -> None:
    if how == "warning":
        await _sanction(place, "warning")
    else:
        silence = await _sanction(place, "silence")
        if how == "lifted":
            await moderation.lift_sanction(
                silence,
                rule_code="R1",
                reason="Apologised in the thread.",
                acting_user=place.mentor,
            )
        else:
            await Sanction.filter(id=silence.id).update(ends_at=utcnow() - timedelta(minutes=1))
    post = await _reply(place, "Back again.")
    assert (await Post.get(id=post.id)).body_markdown == "Back again."


async def test_staff_still_edit_a_silenced_members_post(place: Place) -> None:
    own = await _reply(place, "Something rude.")
    await _sanction(place, "silence")
    edited = await actions.edit_post(
        own, body="[removed]", acting_user=place.mentor, rule_code="R1", reason=REASON
    )
    assert edited.body_markdown == "[removed]"
    revision = await Revision.get(post_id=own.id)
    assert revision.by_staff and revision.previous_markdown == "Something rude."


# ---------------------------------------------------------------- what the action leaves


async def test_the_returned_reply_is_the_stored_one(place: Place) -> None:
    answer = await _reply(place, "An *answer*.")
    nested = await _reply(place, "A reply to it.", parent=answer, anonymous=True)
    for post in (answer, nested):
        stored = await Post.get(id=post.id)
        assert stored.thread_id == post.thread_id == place.thread.id  # type: ignore[attr-defined]
        assert stored.parent_id == post.parent_id  # type: ignore[attr-defined]
        assert stored.author_id == post.author_id == place.ali.id  # type: ignore[attr-defined]
        assert (stored.is_anonymous, stored.body_html) == (post.is_anonymous, post.body_html)
        assert abs(stored.created_at - post.created_at) < timedelta(seconds=1)
        assert (stored.revision_count, stored.vote_count, stored.state) == (0, 0, "visible")
        assert not stored.is_opening and stored.deleted_at is None
    assert nested.parent_id == answer.id  # type: ignore[attr-defined]
    assert (await Thread.get(id=place.thread.id)).reply_count == 2


async def test_reply_and_count_counts_answers_only(place: Place) -> None:
    thread = await Thread.get(id=place.thread.id)
    first, answers = await actions.reply_and_count(thread, body="One.", acting_user=place.ali)
    assert answers == 1
    _, answers = await actions.reply_and_count(
        thread, body="Under one.", parent=first, acting_user=place.ali
    )
    assert answers is None
    _, answers = await actions.reply_and_count(thread, body="Two.", acting_user=place.lea)
    assert answers == 2


async def test_anonymous_replies_only_where_the_forum_allows_them(place: Place) -> None:
    await Forum.filter(id=place.forum.id).update(allow_anonymous=False)
    with pytest.raises(InvalidInput) as caught:
        await _reply(place, anonymous=True)
    assert set(caught.value.fields) == {"anonymous"}
    assert await Post.filter(author_id=place.ali.id).count() == 0


# ---------------------------------------------------------------- the flood rule


@pytest.fixture
def two_posts_a_minute(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dataclasses.replace(runtime.settings(), post_rate_limit=2)
    monkeypatch.setattr(runtime, "_settings", settings)


async def test_a_flood_is_refused_counted_and_silences_the_writer(
    place: Place, two_posts_a_minute: None
) -> None:
    await _reply(place, "One.")
    await _reply(place, "Two.")
    with pytest.raises(PermissionDenied, match="more than 2 times in a minute"):
        await _reply(place, "Three.")
    assert await Post.filter(author_id=place.ali.id).count() == 2
    counter = await RateLimitCounter.get(key=f"post:{place.course.id}:{place.ali.id}")
    assert counter.count == 3
    silence = await Sanction.get(user_id=place.ali.id)
    assert silence.kind == "silence" and silence.lifted_at is None
    # From now on the silence itself is what the writer is told.
    with pytest.raises(PermissionDenied, match="You are silenced"):
        await _reply(place, "Four.")


async def test_staff_are_not_held_to_the_flood_rule(place: Place, two_posts_a_minute: None) -> None:
    thread = await Thread.get(id=place.thread.id)
    for n in range(4):
        await actions.reply(thread, body=f"Note {n}.", acting_user=place.mentor)
    assert await Post.filter(author_id=place.mentor.id).count() == 4
    assert not await Sanction.filter(user_id=place.mentor.id).exists()


async def test_invalid_replies_do_not_count_towards_the_flood_rule(
    place: Place, two_posts_a_minute: None
) -> None:
    for _ in range(3):
        with pytest.raises(InvalidInput):
            await _reply(place, "   ")
    await _reply(place, "One.")
    await _reply(place, "Two.")
    assert not await Sanction.filter(user_id=place.ali.id).exists()


# ---------------------------------------------------------------- through the form


@pytest.fixture
async def browser_place(app: Starlette) -> AsyncIterator[tuple[Place, httpx.AsyncClient]]:
    place = await _place()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
        base_url="http://testserver",
    )
    assert (await log_in(client, place.ali.username)).status_code == 303
    yield place, client
    await client.aclose()


async def _post_form(client: httpx.AsyncClient, url: str, data: dict[str, str]) -> httpx.Response:
    page = await client.get(url.rsplit("/", 1)[0])
    match = CSRF_RE.search(page.text)
    assert match
    return await client.post(url, data={**data, "csrf_token": match.group(1)})


async def test_a_new_answer_sends_the_writer_to_the_page_it_landed_on(
    browser_place: tuple[Place, httpx.AsyncClient],
) -> None:
    place, client = browser_place
    for n in range(POSTS_PER_PAGE):
        await make_reply(place.thread, place.mentor, body=f"Answer {n}.")
    url = f"/courses/{place.course.slug}/threads/{place.thread.id}"

    response = await _post_form(client, f"{url}/reply", {"body": "Mine.", "page": "1"})
    assert response.status_code == 303
    mine = await Post.get(body_markdown="Mine.")
    assert response.headers["location"] == f"{url}?page=2#post-{mine.id}"

    first = await Post.filter(thread_id=place.thread.id, is_opening=False).order_by("id").first()
    assert first is not None
    response = await _post_form(
        client, f"{url}/reply", {"body": "Under the first.", "parent_id": str(first.id)}
    )
    under = await Post.get(body_markdown="Under the first.")
    assert response.headers["location"] == f"{url}#post-{under.id}"


async def test_a_silenced_writer_sees_why_on_the_thread_page(
    browser_place: tuple[Place, httpx.AsyncClient],
) -> None:
    place, client = browser_place
    await _sanction(place, "silence")
    url = f"/courses/{place.course.slug}/threads/{place.thread.id}"
    response = await _post_form(client, f"{url}/reply", {"body": "Hello?"})
    assert response.status_code == 403
    assert "You are silenced in this course until" in response.text
    assert await Post.filter(author_id=place.ali.id).count() == 0


@pytest.mark.parametrize("thread_id", ["999999", str(2**40), "other course"])
async def test_a_reply_to_a_thread_not_in_the_course_finds_nothing(
    browser_place: tuple[Place, httpx.AsyncClient], thread_id: str
) -> None:
    place, client = browser_place
    if thread_id == "other course":
        elsewhere = await make_course(place.mentor, title="Logic")
        await add_member(elsewhere, place.ali)
        forum = await make_forum(elsewhere, title="Talk")
        thread_id = str((await make_thread(forum, place.ali)).id)
    base = f"/courses/{place.course.slug}/threads"
    page = await client.get(f"{base}/{place.thread.id}")
    match = CSRF_RE.search(page.text)
    assert match
    response = await client.post(
        f"{base}/{thread_id}/reply", data={"body": "Hello?", "csrf_token": match.group(1)}
    )
    assert response.status_code == 404
    assert "There is no such thread in this course." in response.text
    assert await Post.filter(author_id=place.ali.id, is_opening=False).count() == 0
    assert (await client.get(f"{base}/{thread_id}")).status_code == 404
