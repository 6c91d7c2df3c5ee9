"""Delivering the outbox in claimed batches (core.jobs): concurrent deliverers, batch
handlers that fail, and claims left behind by a delivery that stopped."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

from core import jobs, tasks
from core.models import Notification, OutboxEvent, User
from core.settings import Settings
from core.timeutil import utcnow
from tests.conftest import drain_jobs
from tests.factories import make_user


def payload(user: User, message: str) -> dict[str, Any]:
    return {"user_id": user.id, "kind": "test", "message": message, "link": "/x"}


def replace_handlers(
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    handler: jobs.Handler,
    batch: jobs.BatchHandler | None = None,
) -> None:
    """Swap the handlers of one kind for this test only (the tables are built once)."""
    monkeypatch.setitem(tasks.HANDLERS, kind, handler)
    if batch is not None:
        monkeypatch.setattr(tasks, "BATCH_HANDLERS", {kind: batch}, raising=False)
    monkeypatch.setattr(jobs, "_handlers", None)
    monkeypatch.setattr(jobs, "_batch_handlers", None)


async def enqueue_notes(user: User, count: int) -> list[int]:
    return [(await jobs.enqueue("core.notify", payload(user, str(n)))).id for n in range(count)]


async def test_two_deliverers_at_once_handle_each_event_once(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled: Counter[int] = Counter()
    by_pass: dict[int, set[int]] = {0: set(), 1: set()}
    passes: list[asyncio.Task[int]] = []

    async def slow(event: OutboxEvent) -> None:
        handled[event.id] += 1
        by_pass[passes.index(asyncio.current_task())].add(event.id)  # type: ignore[arg-type]
        await asyncio.sleep(0.005)  # the other deliverer claims meanwhile
        await tasks.notify(event)

    replace_handlers(monkeypatch, "core.notify", slow)
    monkeypatch.setattr(jobs, "BATCH_SIZE", 4)
    user = await make_user()
    ids = await enqueue_notes(user, 40)

    passes.extend(asyncio.create_task(jobs.deliver_pending()) for _ in range(2))
    delivered = await asyncio.gather(*passes)

    assert sum(delivered) == 40
    assert handled == Counter({event_id: 1 for event_id in ids})
    # Both really worked, on different rows.
    assert by_pass[0] and by_pass[1] and not by_pass[0] & by_pass[1]
    assert await OutboxEvent.filter(delivered_at=None).count() == 0
    assert await OutboxEvent.exclude(claimed_by=None).count() == 0
    assert await Notification.filter(user_id=user.id).count() == 40


async def test_a_row_claimed_by_another_deliverer_waits_until_its_claim_runs_out(
    db: Settings,
) -> None:
    user = await make_user()
    held, free = await enqueue_notes(user, 2)
    # Another process is on `held` (it claimed it a moment ago).
    await OutboxEvent.filter(id=held).update(
        claimed_by="other-host:123:abcd", claimed_until=utcnow() + timedelta(minutes=5)
    )
    assert await jobs.deliver_pending() == 1
    assert (await OutboxEvent.get(id=free)).delivered_at is not None
    assert (await OutboxEvent.get(id=held)).delivered_at is None
    assert await Notification.filter(user_id=user.id).count() == 1

    # That process died: once its claim has run out, the row is delivered.
    await OutboxEvent.filter(id=held).update(claimed_until=utcnow() - timedelta(seconds=1))
    assert await jobs.deliver_pending() == 1
    stored = await OutboxEvent.get(id=held)
    assert stored.delivered_at is not None and stored.claimed_by is None
    assert await Notification.filter(user_id=user.id).count() == 2


async def test_a_failing_batch_is_retried_event_by_event(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[list[str]] = []

    async def one(event: OutboxEvent) -> None:
        if event.payload["message"] == "bad":
            raise ValueError("this one cannot be delivered")
        await tasks.notify(event)

    async def many(events: Sequence[OutboxEvent]) -> None:
        batches.append([e.payload["message"] for e in events])
        for event in events:
            await one(event)

    replace_handlers(monkeypatch, "core.notify", one, many)
    user = await make_user()
    first = await jobs.enqueue("core.notify", payload(user, "first"))
    bad = await jobs.enqueue("core.notify", payload(user, "bad"))
    last = await jobs.enqueue("core.notify", payload(user, "last"))

    assert await jobs.deliver_pending() == 2
    assert batches == [["first", "bad", "last"]]  # one call for the batch, then one by one
    for good in (first, last):
        stored = await OutboxEvent.get(id=good.id)
        assert stored.delivered_at is not None and stored.attempts == 1
        assert stored.last_error is None
    failed = await OutboxEvent.get(id=bad.id)
    assert failed.delivered_at is None and failed.attempts == 1
    assert failed.last_error == "ValueError: this one cannot be delivered"
    assert failed.claimed_by is None  # the next sweep may take it at once
    assert await jobs.pending_ids() == [bad.id]
    assert sorted(n.message for n in await Notification.filter(user_id=user.id)) == [
        "first",
        "last",
    ]


async def test_a_batch_handler_gets_the_events_of_a_batch_together(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []

    async def many(events: Sequence[OutboxEvent]) -> None:
        sizes.append(len(events))
        for event in events:
            await tasks.notify(event)

    replace_handlers(monkeypatch, "core.notify", tasks.notify, many)
    monkeypatch.setattr(jobs, "BATCH_SIZE", 10)
    user = await make_user()
    await enqueue_notes(user, 25)
    assert await jobs.deliver_pending() == 25
    assert sizes == [10, 10, 5]
    assert await Notification.filter(user_id=user.id).count() == 25


async def test_a_delivery_stopped_midway_lets_go_of_its_rows(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()

    async def stuck(event: OutboxEvent) -> None:
        started.set()
        await asyncio.Event().wait()

    replace_handlers(monkeypatch, "core.notify", stuck)
    user = await make_user()
    ids = await enqueue_notes(user, 3)
    running = asyncio.create_task(jobs.deliver_pending())
    await asyncio.wait_for(started.wait(), timeout=30)
    assert await OutboxEvent.filter(id__in=ids).exclude(claimed_by=None).count() == 3
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    # Not held until the claim runs out: the next delivery takes them straight away.
    assert await OutboxEvent.filter(id__in=ids).exclude(claimed_by=None).count() == 0
    replace_handlers(monkeypatch, "core.notify", tasks.notify)
    assert await jobs.deliver_pending() == 3
    assert await Notification.filter(user_id=user.id).count() == 3


async def test_a_pass_leaves_events_written_meanwhile_to_the_next_one(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user()

    async def chatty(event: OutboxEvent) -> None:
        await tasks.notify(event)
        if event.payload["message"] == "first":
            await jobs.enqueue("core.notify", payload(user, "follow-up"))

    replace_handlers(monkeypatch, "core.notify", chatty)
    await jobs.enqueue("core.notify", payload(user, "first"))
    assert await jobs.deliver_pending() == 1
    assert len(await jobs.pending_ids()) == 1
    assert await jobs.deliver_pending() == 1
    assert await jobs.pending_ids() == []


async def test_enqueue_many_writes_every_event_in_the_transaction(db: Settings) -> None:
    user = await make_user()
    await jobs.enqueue_many(
        [("core.notify", payload(user, "one")), ("core.notify", payload(user, "two"))]
    )
    rows = await OutboxEvent.all().order_by("id")
    assert [r.payload["message"] for r in rows] == ["one", "two"]
    with pytest.raises(ValueError, match=r"core\.nonsense"):
        await jobs.enqueue_many([("core.notify", payload(user, "x")), ("core.nonsense", {})])
    assert await OutboxEvent.all().count() == 2


async def test_closing_finishes_the_batch_in_hand_and_leaves_the_rest(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def gated(event: OutboxEvent) -> None:
        started.set()
        await release.wait()
        await tasks.notify(event)

    replace_handlers(monkeypatch, "core.notify", gated)
    monkeypatch.setattr(jobs, "BATCH_SIZE", 2)
    user = await make_user()
    ids = await enqueue_notes(user, 5)
    dispatcher = jobs.InProcessDispatcher()
    await dispatcher.wake()
    await asyncio.wait_for(started.wait(), timeout=30)
    closing = asyncio.create_task(dispatcher.close())
    release.set()
    await closing

    # The two it held are delivered, not cut off between handler and mark; the rest is free
    # for the next start.
    delivered = await OutboxEvent.filter(id__in=ids).exclude(delivered_at=None)
    assert sorted(e.id for e in delivered) == ids[:2]
    assert await OutboxEvent.filter(id__in=ids).exclude(claimed_by=None).count() == 0
    await dispatcher.wake()  # a closed dispatcher starts nothing
    assert await jobs.pending_ids() == ids[2:]
    assert await jobs.deliver_pending() == 3


async def test_a_wake_from_inside_a_transaction_delivers_outside_it(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An action called inside another action's transaction wakes the dispatcher there.
    inside: list[bool] = []

    async def noting(event: OutboxEvent) -> None:
        inside.append(isinstance(get_connection("default"), TransactionalDBClient))
        await tasks.notify(event)

    replace_handlers(monkeypatch, "core.notify", noting)
    user = await make_user()
    async with in_transaction():
        await jobs.enqueue("core.notify", payload(user, "nested"))
        await jobs.wake()
    await drain_jobs()
    assert inside == [False]
    assert await Notification.filter(user_id=user.id).count() == 1
    async with in_transaction():  # the connection is in a sane state afterwards
        await jobs.enqueue("core.notify", payload(user, "after"))
    await jobs.wake()
    await drain_jobs()
    assert inside == [False, False]
