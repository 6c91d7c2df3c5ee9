"""The search engine goes away and comes back: nothing is lost (DESIGN.md invariant 6).

`Outage` wraps the process's real embedded engine: while it is down every call raises
SearchUnavailable, as a backend does when its engine cannot be reached; once healed it passes
every call through to the real engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette

from core import actions as core_actions
from core import jobs
from core.models import Course, OutboxEvent, Role, User
from forum import actions as forum_actions
from forum.models import Forum, Post, PostState
from moderation import actions as moderation
from search import service
from search.backends import (
    PostDocument,
    SearchBackend,
    SearchQuery,
    SearchResults,
    SearchUnavailable,
)
from search.indexing import status
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
MESSAGE = (
    "Search is temporarily unavailable; your posts are safe and will be searchable when it is back"
)


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


class Outage:
    """Fault injection around a real backend: down means every call fails as unreachable."""

    def __init__(self, real: SearchBackend) -> None:
        self.real = real
        self.down = False
        self.refused = 0

    def _gate(self, what: str) -> None:
        if self.down:
            self.refused += 1
            raise SearchUnavailable(f"search engine unreachable during {what} (injected)")

    async def ensure_ready(self) -> None:
        self._gate("setup")
        await self.real.ensure_ready()

    async def upsert(self, docs: Sequence[PostDocument]) -> None:
        self._gate("upsert")
        await self.real.upsert(docs)

    async def delete(self, ids: Sequence[str]) -> None:
        self._gate("delete")
        await self.real.delete(ids)

    async def apply(self, docs: Sequence[PostDocument], delete_ids: Sequence[str]) -> None:
        self._gate("apply")
        await self.real.apply(docs, delete_ids)

    async def delete_course(self, course_id: int) -> None:
        self._gate("delete_course")
        await self.real.delete_course(course_id)

    async def search(self, q: SearchQuery) -> SearchResults:
        self._gate("search")
        return await self.real.search(q)

    async def count(self, course_id: int | None = None) -> int:
        self._gate("count")
        return await self.real.count(course_id)

    async def health(self) -> dict[str, object]:
        if self.down:
            return {"ok": False, "engine": "tantivy", "detail": "unreachable (injected)"}
        return await self.real.health()

    async def close(self) -> None:
        await self.real.close()


@dataclass(slots=True)
class Setting:
    course: Course
    forum: Forum
    mentor: User
    learner: User
    classmate: User
    outage: Outage


@pytest.fixture
async def setting(app: Starlette) -> AsyncIterator[Setting]:
    instructor = await make_user("inge")
    course = await make_course(instructor, title="Glaciology")
    mentor, learner, classmate = (
        await make_user("milo"),
        await make_user("lars"),
        await make_user("cleo"),
    )
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, learner)
    await add_member(course, classmate)
    forum = await make_forum(course, title="Ice")
    await drain_jobs()
    real = service.backend()
    outage = Outage(real)
    service.use(outage)
    try:
        yield Setting(course, forum, mentor, learner, classmate, outage)
    finally:
        outage.down = False
        await drain_jobs()
        service.use(real)


async def found(course: Course, text: str = "") -> list[int]:
    results = await service.backend().search(
        SearchQuery(text=text, course_ids=[course.id], per_page=100)
    )
    return [hit.post_id for hit in results.hits]


async def test_writes_succeed_while_search_is_down_and_the_index_catches_up(
    client: httpx.AsyncClient, setting: Setting
) -> None:
    s = setting
    before = await make_thread(s.forum, s.learner, title="Moraines", body="Terminal moraine.")
    await drain_jobs()
    opening_before = await Post.get(thread_id=before.id, is_opening=True)
    assert await found(s.course, "moraine") == [opening_before.id]

    s.outage.down = True
    # Every kind of write still succeeds: new thread, replies, anonymous reply, edit, hide,
    # delete, and a thread started through the JSON API.
    thread = await make_thread(s.forum, s.learner, title="Crevasses", body="Crevasse depth.")
    reply = await make_reply(thread, s.classmate, body="Seracs are unstable.")
    anonymous = await make_reply(thread, s.learner, anonymous=True, body="Firn compaction.")
    doomed = await make_reply(thread, s.classmate, body="Ablation zone notes.")
    rude = await make_reply(thread, s.classmate, body="Calving front rant.")
    await forum_actions.edit_post(opening_before, body="Lateral moraine.", acting_user=s.learner)
    await moderation.hide_post(rude, rule_code="R2", reason=REASON, acting_user=s.mentor)
    await forum_actions.delete_own_post(doomed, acting_user=s.classmate)
    token = await core_actions.issue_api_token(s.learner, acting_user=None)
    created = await client.post(
        f"/api/v1/courses/{s.course.slug}/threads",
        json={"forum_id": s.forum.id, "title": "Drumlins", "body": "Drumlin fields."},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    await drain_jobs()
    assert s.outage.refused > 0

    pending = await OutboxEvent.filter(kind__startswith="search.", delivered_at=None)
    assert len(pending) >= 8
    for event in pending:
        assert event.attempts >= 1
        assert event.last_error and "SearchUnavailable" in event.last_error
    report = await status()
    assert report["available"] is False and report["total"] is None
    assert report["pending"] == len(pending) and report["failing"] == len(pending)
    assert report["lag_seconds"] is not None and report["lag_seconds"] >= 0

    # The engine comes back; the periodic retry (here called directly) delivers everything.
    s.outage.down = False
    delivered = await jobs.deliver_pending()
    assert delivered == len(pending)
    assert await OutboxEvent.filter(kind__startswith="search.", delivered_at=None).count() == 0
    assert (await status())["lag_seconds"] is None

    visible = await Post.filter(
        thread__course_id=s.course.id, deleted_at=None, state=PostState.VISIBLE
    )
    everything = await found(s.course)
    assert len(everything) == len(set(everything)), "duplicates in the index"
    assert set(everything) == {p.id for p in visible}
    assert await service.backend().count(s.course.id) == len(visible)
    api_opening = await Post.get(thread_id=created.json()["id"], is_opening=True)
    for word, post in (
        ("crevasse", None),
        ("seracs", reply),
        ("firn", anonymous),
        ("lateral", opening_before),
        ("drumlin", api_opening),
    ):
        ids = await found(s.course, word)
        assert ids, word
        if post is not None:
            assert ids == [post.id], word
    assert await found(s.course, "terminal") == []
    assert await found(s.course, "ablation") == []
    assert await found(s.course, "calving") == []


async def test_health_and_pages_while_search_is_down(
    client: httpx.AsyncClient, setting: Setting
) -> None:
    s = setting
    await make_thread(s.forum, s.learner, title="Icebergs", body="Tabular icebergs.")
    await drain_jobs()
    await log_in(client, s.learner.username)
    url = f"/courses/{s.course.slug}/search"

    s.outage.down = True
    health = await client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["search"]["ok"] is False
    assert health.json()["database"]["ok"] is True

    page = await client.get(url, params={"q": "icebergs"})
    assert page.status_code == 503
    assert MESSAGE in page.text
    assert "<form" in page.text  # the page itself still works
    assert page.headers["retry-after"]
    site = await client.get("/search", params={"q": "icebergs"})
    assert site.status_code == 503 and MESSAGE in site.text
    # htmx does not swap 5xx answers in; the fragment carries the message with a 200.
    fragment = await client.get(url, params={"q": "icebergs"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and MESSAGE in fragment.text
    assert "<html" not in fragment.text
    # An empty search page does not need the engine.
    assert (await client.get(url)).status_code == 200

    token = await core_actions.issue_api_token(s.learner, acting_user=None)
    api = await client.get(
        "/api/v1/search", params={"q": "icebergs"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status_code == 503
    assert api.json()["error"]["code"] == "search_unavailable"
    assert api.headers["retry-after"]

    s.outage.down = False
    assert (await client.get("/healthz")).json()["search"]["ok"] is True
    page = await client.get(url, params={"q": "icebergs"})
    assert page.status_code == 200 and "<mark>" in page.text
