"""The outbox (core.jobs) and the core handlers (core.tasks)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from core import jobs, tasks
from core.models import Notification, OutboxEvent, User
from core.settings import Settings
from core.timeutil import utcnow
from tests.conftest import drain_jobs
from tests.factories import make_user


def payload(user: User, message: str = "Hello") -> dict[str, Any]:
    return {"user_id": user.id, "kind": "test", "message": message, "link": "/x"}


def replace_handler(monkeypatch: pytest.MonkeyPatch, kind: str, handler: jobs.Handler) -> None:
    """Swap one handler for this test only (the handler table is built once and cached)."""
    monkeypatch.setitem(tasks.HANDLERS, kind, handler)
    monkeypatch.setattr(jobs, "_handlers", None)


# ---------------------------------------------------------------- enqueue


async def test_enqueue_is_part_of_the_transaction(db: Settings) -> None:
    user = await make_user()
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await jobs.enqueue("core.notify", payload(user))
            raise RuntimeError("the change failed")
    assert not await OutboxEvent.exists()

    async with in_transaction():
        event = await jobs.enqueue("core.notify", payload(user))
    stored = await OutboxEvent.get(id=event.id)
    assert stored.kind == "core.notify"
    assert stored.payload == payload(user)
    assert stored.delivered_at is None and stored.attempts == 0


async def test_enqueue_refuses_unknown_kinds(db: Settings) -> None:
    with pytest.raises(ValueError, match=r"core\.nonsense"):
        await jobs.enqueue("core.nonsense", {})
    assert not await OutboxEvent.exists()


# ---------------------------------------------------------------- deliver


async def test_deliver_is_idempotent(db: Settings) -> None:
    user = await make_user()
    event = await jobs.enqueue("core.notify", payload(user, "Once"))
    assert await jobs.deliver(event.id) is True
    assert await jobs.deliver(event.id) is False
    notes = await Notification.filter(user_id=user.id)
    assert [(n.kind, n.message, n.link) for n in notes] == [("test", "Once", "/x")]
    stored = await OutboxEvent.get(id=event.id)
    assert stored.delivered_at is not None
    assert stored.attempts == 1


async def test_handler_running_again_after_a_crash_makes_one_notification(db: Settings) -> None:
    # A crash between the handler and the "delivered" mark runs the handler a second time.
    user = await make_user()
    event = await jobs.enqueue("core.notify", payload(user))
    await tasks.notify(await OutboxEvent.get(id=event.id))
    assert await jobs.deliver(event.id) is True
    assert await Notification.filter(user_id=user.id).count() == 1


async def test_delivered_event_is_not_delivered_again(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    async def counting(event: OutboxEvent) -> None:
        calls.append(event.id)
        await tasks.notify(event)

    replace_handler(monkeypatch, "core.notify", counting)
    user = await make_user()
    event = await jobs.enqueue("core.notify", payload(user))
    assert await jobs.deliver_pending() == 1
    assert await jobs.deliver_pending() == 0
    assert await jobs.pending_ids() == []
    assert calls == [event.id]
    assert await Notification.filter(user_id=user.id).count() == 1


async def test_deliver_of_a_missing_event_does_nothing(db: Settings) -> None:
    assert await jobs.deliver(987654) is False


async def test_failing_handler_is_retried(db: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    failures = ["the mail server is down"]

    async def flaky(event: OutboxEvent) -> None:
        if failures:
            raise RuntimeError(failures.pop())
        await tasks.notify(event)

    replace_handler(monkeypatch, "core.notify", flaky)
    user = await make_user()
    event = await jobs.enqueue("core.notify", payload(user))

    assert await jobs.deliver_pending() == 0
    failed = await OutboxEvent.get(id=event.id)
    assert failed.delivered_at is None
    assert failed.attempts == 1
    assert failed.last_error is not None
    assert "RuntimeError" in failed.last_error and "the mail server is down" in failed.last_error
    assert await jobs.pending_ids() == [event.id]
    assert not await Notification.exists()

    assert await jobs.deliver_pending() == 1
    delivered = await OutboxEvent.get(id=event.id)
    assert delivered.delivered_at is not None
    assert delivered.attempts == 2
    assert delivered.last_error is None
    assert await Notification.filter(user_id=user.id).count() == 1


async def test_one_failing_event_does_not_hold_up_the_others(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def picky(event: OutboxEvent) -> None:
        if event.payload["message"] == "bad":
            raise ValueError("cannot deliver this one")
        await tasks.notify(event)

    replace_handler(monkeypatch, "core.notify", picky)
    user = await make_user()
    bad = await jobs.enqueue("core.notify", payload(user, "bad"))
    good = await jobs.enqueue("core.notify", payload(user, "good"))
    assert await jobs.deliver_pending() == 1
    assert (await OutboxEvent.get(id=good.id)).delivered_at is not None
    assert (await OutboxEvent.get(id=bad.id)).attempts == 1
    assert await jobs.pending_ids() == [bad.id]


async def test_event_without_a_handler_stays_pending(db: Settings) -> None:
    # Written by a newer version whose handler this process does not know.
    event = await OutboxEvent.create(kind="future.thing", payload={})
    assert await jobs.deliver(event.id) is False
    stored = await OutboxEvent.get(id=event.id)
    assert stored.delivered_at is None
    assert stored.attempts == 1
    assert stored.last_error is not None and "future.thing" in stored.last_error


async def test_events_past_max_attempts_are_given_up(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    async def counting(event: OutboxEvent) -> None:
        calls.append(event.id)
        await tasks.notify(event)

    replace_handler(monkeypatch, "core.notify", counting)
    user = await make_user()
    dead = await jobs.enqueue("core.notify", payload(user, "dead"))
    last_chance = await jobs.enqueue("core.notify", payload(user, "last chance"))
    await OutboxEvent.filter(id=dead.id).update(attempts=jobs.MAX_ATTEMPTS)
    await OutboxEvent.filter(id=last_chance.id).update(attempts=jobs.MAX_ATTEMPTS - 1)

    assert await jobs.pending_ids() == [last_chance.id]
    assert await jobs.deliver_pending() == 1
    assert calls == [last_chance.id]
    assert await jobs.deliver_pending() == 0
    assert (await OutboxEvent.get(id=dead.id)).delivered_at is None
    assert [n.message for n in await Notification.filter(user_id=user.id)] == ["last chance"]


# ---------------------------------------------------------------- InProcessDispatcher


async def test_wake_then_drain_delivers(db: Settings) -> None:
    dispatcher = jobs.dispatcher()
    assert isinstance(dispatcher, jobs.InProcessDispatcher)
    user = await make_user()
    event = await jobs.enqueue("core.notify", payload(user))
    assert not await Notification.exists()
    await jobs.wake()
    await dispatcher.drain()
    assert (await OutboxEvent.get(id=event.id)).delivered_at is not None
    assert await Notification.filter(user_id=user.id).count() == 1
    assert await dispatcher.health() == {"ok": True, "mode": "in-process"}


async def test_wakes_while_running_coalesce_and_deliver_everything(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    running = 0
    most_at_once = 0
    handled: list[str] = []

    async def slow(event: OutboxEvent) -> None:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        try:
            started.set()
            await release.wait()
            handled.append(event.payload["message"])
            await tasks.notify(event)
        finally:
            running -= 1

    replace_handler(monkeypatch, "core.notify", slow)
    user = await make_user()
    await jobs.enqueue("core.notify", payload(user, "first"))
    await jobs.wake()
    await asyncio.wait_for(started.wait(), timeout=30)

    # The first delivery is under way: these arrive meanwhile.
    await jobs.enqueue("core.notify", payload(user, "second"))
    await jobs.wake()
    await jobs.enqueue("core.notify", payload(user, "third"))
    await jobs.wake()
    await jobs.wake()
    release.set()
    await drain_jobs()

    assert most_at_once == 1
    assert handled == ["first", "second", "third"]
    assert await jobs.pending_ids() == []
    assert await Notification.filter(user_id=user.id).count() == 3


async def test_delivery_is_oldest_first(db: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    handled: list[int] = []

    async def recording(event: OutboxEvent) -> None:
        handled.append(event.id)

    replace_handler(monkeypatch, "core.notify", recording)
    user = await make_user()
    ids = [(await jobs.enqueue("core.notify", payload(user, str(n)))).id for n in range(5)]
    await jobs.wake()
    await drain_jobs()
    assert handled == ids


async def test_drain_without_any_wake_returns(db: Settings) -> None:
    dispatcher = jobs.InProcessDispatcher()
    await dispatcher.drain()
    await dispatcher.close()


# ---------------------------------------------------------------- oldest_pending_age_seconds


async def test_oldest_pending_age(db: Settings) -> None:
    assert await jobs.oldest_pending_age_seconds() is None
    user = await make_user()
    old = await jobs.enqueue("core.notify", payload(user, "old"))
    await jobs.enqueue("core.notify", payload(user, "new"))
    await OutboxEvent.filter(id=old.id).update(created_at=utcnow() - timedelta(hours=1))
    age = await jobs.oldest_pending_age_seconds()
    assert age is not None
    assert 3600 <= age < 7200

    await jobs.deliver(old.id)
    age = await jobs.oldest_pending_age_seconds()
    assert age is not None and age < 3600

    await jobs.deliver_pending()
    assert await jobs.oldest_pending_age_seconds() is None


# ---------------------------------------------------------------- core.tasks


async def test_notify_for_a_deleted_user_does_nothing(db: Settings) -> None:
    user = await make_user()
    event = await jobs.enqueue("core.notify", payload(user))
    await User.filter(id=user.id).delete()
    assert await jobs.deliver(event.id) is True
    stored = await OutboxEvent.get(id=event.id)
    assert stored.delivered_at is not None
    assert stored.last_error is None
    assert not await Notification.exists()


async def test_notify_link_is_optional(db: Settings) -> None:
    user = await make_user()
    event = await jobs.enqueue(
        "core.notify", {"user_id": user.id, "kind": "test", "message": "No link"}
    )
    assert await jobs.deliver(event.id) is True
    note = await Notification.get(user_id=user.id)
    assert note.link == ""
    assert note.dedupe_key == f"outbox:{event.id}"
