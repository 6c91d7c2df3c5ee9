"""The outbox: side effects written with the change, delivered at least once by a job.

An action calls `enqueue` inside its transaction and `wake` after it commits. Delivery runs
in the web process when no Redis is configured, and in the arq worker (`agora worker`) when
one is. Handlers must be idempotent: a crash between the handler and the "delivered" mark
means the handler runs again.

Every process delivers the same way: it claims a batch of pending rows (on PostgreSQL with
`FOR UPDATE SKIP LOCKED`, so two processes never take the same row), runs their handlers,
and marks the batch delivered in one statement. A claim lasts `CLAIM_SECONDS`; the rows of a
process that died are taken up again when it runs out. A kind may also have a batch handler
that takes many events at once (one search index commit for a whole batch); when it fails,
each of its events is tried alone with its own handler, so one bad event never holds up the
others and keeps its own error.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from tortoise.connection import get_connection
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from core.models import OutboxEvent
from core.timeutil import utcnow

log = logging.getLogger("agora.jobs")

Handler = Callable[[OutboxEvent], Awaitable[None]]
# Handles all the events it is given or raises; the events are then tried one by one.
BatchHandler = Callable[[Sequence[OutboxEvent]], Awaitable[None]]

# Each of these modules has HANDLERS: dict[str, Handler]; kinds are "<package>.<what>".
# A module may also have BATCH_HANDLERS: dict[str, BatchHandler] for kinds of its HANDLERS;
# kinds sharing one batch handler are handed to it together.
HANDLER_MODULES: tuple[str, ...] = (
    "core.tasks",
    "forum.tasks",
    "search.tasks",
    "peer_review.tasks",
)
MAX_ATTEMPTS = 25
BATCH_SIZE = 200
CLAIM_SECONDS = 300

_handlers: dict[str, Handler] | None = None
_batch_handlers: dict[str, BatchHandler] | None = None


def handlers() -> Mapping[str, Handler]:
    global _handlers, _batch_handlers
    if _handlers is None:
        found: dict[str, Handler] = {}
        batched: dict[str, BatchHandler] = {}
        for name in HANDLER_MODULES:
            module = importlib.import_module(name)
            for kind, handler in module.HANDLERS.items():
                if kind in found:
                    raise RuntimeError(f"two handlers for outbox kind {kind!r}")
                found[kind] = handler
            for kind, batch in getattr(module, "BATCH_HANDLERS", {}).items():
                if kind not in module.HANDLERS:
                    raise RuntimeError(f"batch handler for {kind!r} without a handler")
                batched[kind] = batch
        _handlers = found
        _batch_handlers = batched
    return _handlers


def batch_handlers() -> Mapping[str, BatchHandler]:
    handlers()
    return _batch_handlers or {}


async def enqueue(kind: str, payload: dict[str, Any]) -> OutboxEvent:
    """Write a side effect; call inside the transaction of the change that causes it."""
    if kind not in handlers():
        raise ValueError(f"no handler for outbox kind {kind!r}")
    return await OutboxEvent.create(kind=kind, payload=payload)


async def enqueue_many(events: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Write side effects in one statement; call inside the change's transaction.

    Every write goes through here, so it is one INSERT written out, not the ORM's bulk
    insert, which costs more than the database's own work for a couple of rows."""
    known = handlers()
    for kind, _ in events:
        if kind not in known:
            raise ValueError(f"no handler for outbox kind {kind!r}")
    if not events:
        return
    connection = get_connection("default")
    postgres = connection.capabilities.dialect == "postgres"
    encode = OutboxEvent._meta.fields_map["payload"].to_db_value
    now = utcnow()
    params: list[Any] = []
    rows: list[str] = []
    for kind, payload in events:
        marks = []
        for value in (kind, encode(payload, OutboxEvent), now):
            params.append(value)
            marks.append(f"${len(params)}" if postgres else "?")
        rows.append(f"({', '.join(marks)}, 0)")
    await connection.execute_query(
        "INSERT INTO agora_outbox (kind, payload, created_at, attempts) VALUES " + ", ".join(rows),
        params,
    )


def _pending() -> Q:
    return Q(delivered_at=None, attempts__lt=MAX_ATTEMPTS)


def _claim_token() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


async def claim(
    limit: int = BATCH_SIZE, *, after_id: int = 0, up_to_id: int | None = None
) -> list[OutboxEvent]:
    """Take up to `limit` pending rows with after_id < id <= up_to_id, oldest first, that
    nobody else holds; an empty list means there are none."""
    postgres = get_connection("default").capabilities.dialect == "postgres"
    while True:
        now = utcnow()
        token = _claim_token()
        free = Q(claimed_until=None) | Q(claimed_until__lt=now)
        query = OutboxEvent.filter(_pending(), free, id__gt=after_id)
        if up_to_id is not None:
            query = query.filter(id__lte=up_to_id)
        query = query.order_by("id").limit(limit)
        if postgres:
            async with in_transaction():
                events = list(await query.select_for_update(skip_locked=True))
                held = await _hold(events, token, now, free)
        else:
            # One writer at a time: the UPDATE re-checks that each row is still free.
            events = list(await query)
            held = await _hold(events, token, now, free)
        if held == len(events):
            return events
        if held:
            mine = set(
                await OutboxEvent.filter(
                    id__in=[e.id for e in events], claimed_by=token
                ).values_list("id", flat=True)
            )
            return [e for e in events if e.id in mine]
        # Another deliverer took them all between our read and our claim: look again.


async def _hold(events: list[OutboxEvent], token: str, now: Any, free: Q) -> int:
    if not events:
        return 0
    until = now + timedelta(seconds=CLAIM_SECONDS)
    for event in events:
        event.claimed_by, event.claimed_until = token, until
    return await OutboxEvent.filter(_pending(), free, id__in=[e.id for e in events]).update(
        claimed_by=token, claimed_until=until
    )


async def _extend(events: Sequence[OutboxEvent]) -> None:
    """Keep holding the rows of a batch that takes long (those not delivered yet)."""
    token = events[0].claimed_by if events else None
    if token is None:
        return
    until = utcnow() + timedelta(seconds=CLAIM_SECONDS)
    await OutboxEvent.filter(
        id__in=[e.id for e in events], claimed_by=token, delivered_at=None
    ).update(claimed_until=until)


async def _failed(event: OutboxEvent, exc: BaseException) -> None:
    await OutboxEvent.filter(id=event.id).update(
        attempts=F("attempts") + 1,
        last_error=f"{type(exc).__name__}: {exc}"[:2000],
        claimed_by=None,
        claimed_until=None,
    )


async def _delivered(events: Sequence[OutboxEvent]) -> int:
    if not events:
        return 0
    return await OutboxEvent.filter(id__in=[e.id for e in events], delivered_at=None).update(
        delivered_at=utcnow(),
        attempts=F("attempts") + 1,
        last_error=None,
        claimed_by=None,
        claimed_until=None,
    )


async def _run_one(event: OutboxEvent) -> bool:
    handler = handlers().get(event.kind)
    try:
        if handler is None:
            raise LookupError(f"no handler for outbox kind {event.kind!r}")
        await handler(event)
    except Exception as exc:
        log.exception("outbox event %s (%s) failed", event.id, event.kind)
        await _failed(event, exc)
        return False
    return True


async def _run(events: Sequence[OutboxEvent]) -> int:
    """Run the handlers of events (oldest first, batches together); returns how many are
    marked delivered now."""
    batched = batch_handlers()
    groups: dict[Any, list[OutboxEvent]] = {}
    for event in events:
        batch = batched.get(event.kind)
        groups.setdefault(batch if batch is not None else ("one", event.id), []).append(event)
    delivered = 0
    started = time.monotonic()
    for key, group in groups.items():
        if time.monotonic() - started > CLAIM_SECONDS / 2:
            await _extend([e for g in groups.values() for e in g])
            started = time.monotonic()
        done: list[OutboxEvent] = []
        if len(group) > 1:
            try:
                await key(group)
                done = group
            except Exception as exc:
                log.warning(
                    "a batch of %d outbox events (%s) failed (%s: %s); trying them one by one",
                    len(group),
                    group[0].kind,
                    type(exc).__name__,
                    exc,
                )
        if not done:
            done = [event for event in group if await _run_one(event)]
        delivered += await _delivered(done)
    return delivered


async def deliver(event_id: int) -> bool:
    """Run one event's handler unless it already ran; True when it is delivered now.

    For the worker's per-event job and for tests: it does not wait for a claim on the row
    (handlers are idempotent), and a failure is kept on the row like any other."""
    event = await OutboxEvent.get_or_none(id=event_id)
    if event is None or event.delivered_at is not None:
        return False
    return bool(await _run([event]))


async def pending_ids(limit: int = 500) -> list[int]:
    rows = (
        await OutboxEvent.filter(_pending())
        .order_by("id")
        .limit(limit)
        .values_list("id", flat=True)
    )
    return [int(row) for row in rows]  # type: ignore[call-overload]


async def deliver_pending(
    limit: int | None = None, *, stop: Callable[[], bool] | None = None
) -> int:
    """Deliver what is waiting now, oldest first, in claimed batches; returns how many were
    delivered. An event that fails, or is written meanwhile, waits for the next call; `stop`
    is asked before each batch."""
    delivered = 0
    taken = 0
    after = 0
    newest = await newest_pending_id()
    while newest is not None and (limit is None or taken < limit):
        if stop is not None and stop():
            break
        size = BATCH_SIZE if limit is None else min(BATCH_SIZE, limit - taken)
        events = await claim(size, after_id=after, up_to_id=newest)
        if not events:
            break
        taken += len(events)
        after = events[-1].id
        try:
            delivered += await _run(events)
        except BaseException:
            # Stopped mid-batch (shutdown): let the others take the rest now, not at expiry.
            await _release(events)
            raise
        if after >= newest:
            break
    return delivered


async def _release(events: Sequence[OutboxEvent]) -> None:
    try:
        await OutboxEvent.filter(
            id__in=[e.id for e in events], claimed_by=events[0].claimed_by, delivered_at=None
        ).update(claimed_by=None, claimed_until=None)
    except Exception:
        log.warning("could not release claimed outbox rows; they free up on expiry")


async def newest_pending_id() -> int | None:
    rows = (
        await OutboxEvent.filter(_pending()).order_by("-id").limit(1).values_list("id", flat=True)
    )
    return int(rows[0]) if rows else None  # type: ignore[call-overload]


async def oldest_pending_age_seconds() -> float | None:
    oldest = await OutboxEvent.filter(delivered_at=None).order_by("id").first()
    if oldest is None:
        return None
    return (utcnow() - oldest.created_at).total_seconds()


class Dispatcher(Protocol):
    name: str

    async def wake(self) -> None: ...

    async def health(self) -> dict[str, object]: ...

    async def close(self) -> None: ...

    def start_sweeping(self, every_seconds: int) -> asyncio.Task[None]: ...


class InProcessDispatcher:
    """Delivers in a background task of this process, right after the change commits."""

    name = "in-process"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._closing = False
        # Delivery runs in the context the dispatcher was made in: a wake from inside an
        # outer transaction must not hand that transaction's connection to the delivery task.
        self._context = contextvars.copy_context()

    async def wake(self) -> None:
        if self._closing:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(
            self._run(), context=self._context.copy()
        )

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await deliver_pending(stop=lambda: self._closing)
            except Exception:
                log.exception("in-process outbox delivery failed")
            if not self._again or self._closing:
                return

    async def drain(self) -> None:
        """Wait until everything woken so far has been delivered (tests, CLI)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def health(self) -> dict[str, object]:
        return {"ok": True, "mode": self.name}

    def start_sweeping(self, every_seconds: int) -> asyncio.Task[None]:
        """Retry failed deliveries now and then (e.g. the search engine was down)."""

        async def sweep() -> None:
            while True:
                await asyncio.sleep(every_seconds)
                await self.wake()

        return asyncio.get_running_loop().create_task(sweep())

    async def close(self) -> None:
        """Finish the batch in hand; what is left waits for the next start or another process."""
        self._closing = True
        await self.drain()


class ArqDispatcher:
    """Asks the arq worker to deliver what is pending; the worker's sweep catches any it missed."""

    name = "arq"

    def __init__(self, redis_url: str) -> None:
        from arq.connections import RedisSettings

        self._settings = RedisSettings.from_dsn(redis_url)
        self._settings.conn_retries = 0
        self._settings.conn_timeout = 2
        self._pool: Any = None

    async def _redis(self) -> Any:
        from arq import create_pool

        if self._pool is None:
            self._pool = await create_pool(self._settings)
        return self._pool

    async def wake(self) -> None:
        try:
            newest = await newest_pending_id()
            if newest is None:
                return
            pool = await self._redis()
            # One job delivers everything pending; wakes that see the same newest row share it.
            await pool.enqueue_job("deliver_outbox", _job_id=f"outbox:upto:{newest}")
        except Exception as exc:
            # The change is committed and the event is in the outbox: the sweep delivers it
            # once Redis is back, so a write never fails because the queue is down.
            log.warning("could not hand outbox events to the worker: %s", exc)
            await self._reset()

    async def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.aclose()
            except Exception:
                log.debug("closing a broken Redis pool failed", exc_info=True)

    async def health(self) -> dict[str, object]:
        try:
            pool = await self._redis()
            await pool.ping()
        except Exception as exc:
            await self._reset()
            return {"ok": False, "mode": self.name, "detail": f"Redis unreachable: {exc}"}
        return {"ok": True, "mode": self.name}

    def start_sweeping(self, every_seconds: int) -> asyncio.Task[None]:
        """The worker sweeps; the web process has nothing to do."""
        return asyncio.get_running_loop().create_task(asyncio.sleep(0))

    async def close(self) -> None:
        await self._reset()


_dispatcher: Dispatcher = InProcessDispatcher()


def configure(redis_url: str | None) -> Dispatcher:
    """Choose how outbox events are delivered for this process."""
    global _dispatcher
    _dispatcher = ArqDispatcher(redis_url) if redis_url else InProcessDispatcher()
    return _dispatcher


def dispatcher() -> Dispatcher:
    return _dispatcher


async def wake() -> None:
    """Call after a transaction that enqueued events has committed."""
    await _dispatcher.wake()
