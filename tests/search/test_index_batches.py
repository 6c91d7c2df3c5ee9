"""Index jobs delivered in batches: one index commit for many events, a bad event does not
hold up the others, and jobs for the same post take turns so the newest text wins."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from tortoise.transactions import in_transaction

from core import jobs
from core.models import Course, OutboxEvent, Role, User
from core.settings import Settings
from forum import actions
from forum.models import Forum, Post, PostState
from moderation import actions as moderation
from search import service, tasks
from search.backends import PostDocument, SearchQuery
from search.embedded import EmbeddedBackend
from tests.conftest import drain_jobs
from tests.factories import (
    add_member,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass(slots=True)
class Cast:
    course: Course
    forum: Forum
    mentor: User
    learner: User
    classmate: User


@pytest.fixture
async def cast(db: Settings) -> Cast:
    instructor = await make_user("irma")
    course = await make_course(instructor, title="Volcanology")
    mentor, learner, classmate = (
        await make_user("mato"),
        await make_user("lena"),
        await make_user("cyd"),
    )
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, learner)
    await add_member(course, classmate)
    forum = await make_forum(course, title="Eruptions")
    await drain_jobs()
    return Cast(course, forum, mentor, learner, classmate)


def hold_deliveries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave events in the outbox until the test delivers them (a slow worker)."""

    async def later() -> None:
        return None

    monkeypatch.setattr(jobs, "wake", later)


class CountingWrites:
    """Counts index writes of the process's embedded backend."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        backend = service.backend()
        assert isinstance(backend, EmbeddedBackend)
        self.calls: list[tuple[int, int]] = []
        real = backend.apply

        async def apply(docs: Sequence[PostDocument], delete_ids: Sequence[str]) -> None:
            self.calls.append((len(docs), len(delete_ids)))
            await real(docs, delete_ids)

        monkeypatch.setattr(backend, "apply", apply)


async def found(course: Course, text: str = "") -> list[int]:
    results = await service.backend().search(
        SearchQuery(text=text, course_ids=[course.id], per_page=100)
    )
    return sorted(hit.post_id for hit in results.hits)


async def visible_posts(course: Course) -> list[int]:
    posts = await Post.filter(
        thread__course_id=course.id, deleted_at=None, state=PostState.VISIBLE
    ).values_list("id", flat=True)
    return sorted(int(p) for p in posts)  # type: ignore[call-overload]


async def test_a_batch_of_index_events_is_one_commit_and_everything_is_searchable(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_deliveries(monkeypatch)
    question = await make_thread(
        cast.forum, cast.learner, kind="question", title="Lava domes", body="How do domes grow?"
    )
    answers = [
        await make_reply(question, cast.classmate, body=f"Extrusion answer number {n}.")
        for n in range(5)
    ]
    hidden = await make_reply(question, cast.classmate, body="Pyroclastic off-topic rant.")
    withdrawn = await make_reply(question, cast.learner, body="Tephra second thoughts.")
    anonymous = await make_reply(question, cast.learner, anonymous=True, body="Secret fumaroles.")
    await actions.edit_post(
        answers[0], body="Endogenous growth, edited.", acting_user=cast.classmate
    )
    await moderation.hide_post(
        hidden, rule_code="R2", reason="Please stay on topic.", acting_user=cast.mentor
    )
    await actions.delete_own_post(withdrawn, acting_user=cast.learner)
    await actions.accept_answer(question, answers[1], acting_user=cast.learner)
    pending = await OutboxEvent.filter(kind__startswith="search.", delivered_at=None).count()
    assert pending >= 12
    assert await found(cast.course) == []

    writes = CountingWrites(monkeypatch)
    await jobs.deliver_pending()
    assert len(writes.calls) == 1, writes.calls
    assert await OutboxEvent.filter(delivered_at=None).count() == 0

    assert await found(cast.course) == await visible_posts(cast.course)
    assert hidden.id not in await found(cast.course) and withdrawn.id not in await found(
        cast.course
    )
    assert await found(cast.course, "endogenous") == [answers[0].id]
    assert await found(cast.course, "extrusion") == sorted(a.id for a in answers[1:])
    assert await found(cast.course, "fumaroles") == [anonymous.id]
    assert await found(cast.course, "pyroclastic") == []
    assert await found(cast.course, "tephra") == []
    # The accepted answer (an index_thread event in the same batch) took effect.
    answered = await service.backend().search(
        SearchQuery(text="", course_ids=[cast.course.id], unanswered_only=True)
    )
    assert answered.total == 0


async def test_a_bad_index_event_does_not_hold_up_the_others(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_deliveries(monkeypatch)
    thread = await make_thread(cast.forum, cast.learner, title="Calderas", body="Caldera rims.")
    broken = await jobs.enqueue("search.index_post", {"post_id": "not-a-number"})
    reply = await make_reply(thread, cast.classmate, body="Resurgent domes inside.")

    await jobs.deliver_pending()
    failed = await OutboxEvent.get(id=broken.id)
    assert failed.delivered_at is None and failed.attempts == 1
    assert failed.last_error is not None and failed.last_error.startswith("ValueError")
    assert await OutboxEvent.filter(delivered_at=None).count() == 1
    assert await found(cast.course, "caldera") != []
    assert await found(cast.course, "resurgent") == [reply.id]


async def test_index_jobs_for_one_post_take_turns_and_the_newest_text_wins(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = await make_thread(cast.forum, cast.learner, title="Geysers", body="Old Faithful.")
    post = await make_reply(thread, cast.classmate, body="Original text.")
    await drain_jobs()
    hold_deliveries(monkeypatch)

    backend = service.backend()
    assert isinstance(backend, EmbeddedBackend)
    real = backend.apply
    reached = asyncio.Event()
    release = asyncio.Event()

    async def slow_first(docs: Sequence[PostDocument], delete_ids: Sequence[str]) -> None:
        if not reached.is_set():
            reached.set()
            await release.wait()  # read "bravo", not written yet
        await real(docs, delete_ids)

    monkeypatch.setattr(backend, "apply", slow_first)
    post = await actions.edit_post(post, body="Bravo geyserite.", acting_user=cast.classmate)
    first = await OutboxEvent.filter(kind="search.index_post").order_by("-id").first()
    assert first is not None
    older = asyncio.create_task(jobs.deliver(first.id))
    await asyncio.wait_for(reached.wait(), timeout=30)

    await actions.edit_post(post, body="Charlie sinter.", acting_user=cast.classmate)
    second = await OutboxEvent.filter(kind="search.index_post").order_by("-id").first()
    assert second is not None and second.id != first.id
    newer = asyncio.create_task(jobs.deliver(second.id))
    done, _ = await asyncio.wait({newer}, timeout=0.5)
    assert not done, "the second job wrote while the first was between its read and write"
    release.set()
    assert await asyncio.gather(older, newer) == [True, True]

    assert await found(cast.course, "sinter") == [post.id]
    assert await found(cast.course, "geyserite") == []


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_index_jobs_wait_for_another_process_on_postgres(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_deliveries(monkeypatch)
    thread = await make_thread(cast.forum, cast.learner, title="Fissures", body="Fissure vents.")
    event = await OutboxEvent.filter(kind="search.index_post").order_by("-id").first()
    assert event is not None
    taken = asyncio.Event()
    release = asyncio.Event()

    async def other_process() -> None:
        # What another process's index job holds while it reads and writes.
        async with in_transaction() as connection:
            await connection.execute_query(
                "SELECT pg_advisory_xact_lock($1)", [tasks.INDEX_LOCK_KEY]
            )
            taken.set()
            await release.wait()

    holder = asyncio.create_task(other_process())
    await asyncio.wait_for(taken.wait(), timeout=30)
    waiting = asyncio.create_task(jobs.deliver(event.id))
    done, _ = await asyncio.wait({waiting}, timeout=0.5)
    assert not done
    assert await found(cast.course, "fissure") == []
    release.set()
    await holder
    assert await waiting is True
    opening = await Post.get(thread_id=thread.id, is_opening=True)
    assert await found(cast.course, "fissure") == [opening.id]
