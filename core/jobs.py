"""The outbox: side effects written with the change, delivered at least once by a job.

An action calls `enqueue` inside its transaction and `wake` after it commits. Delivery runs
in the web process when no Redis is configured, and in the arq worker (`agora worker`) when
one is. Handlers must be idempotent: a crash between the handler and the "delivered" mark
means the handler runs again.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from core.models import OutboxEvent
from core.timeutil import utcnow

log = logging.getLogger("agora.jobs")

Handler = Callable[[OutboxEvent], Awaitable[None]]

# Each of these modules has HANDLERS: dict[str, Handler]; kinds are "<package>.<what>".
HANDLER_MODULES: tuple[str, ...] = (
    "core.tasks",
    "forum.tasks",
    "search.tasks",
    "peer_review.tasks",
)
MAX_ATTEMPTS = 25

_handlers: dict[str, Handler] | None = None


def handlers() -> Mapping[str, Handler]:
    global _handlers
    if _handlers is None:
        found: dict[str, Handler] = {}
        for name in HANDLER_MODULES:
            module = importlib.import_module(name)
            for kind, handler in module.HANDLERS.items():
                if kind in found:
                    raise RuntimeError(f"two handlers for outbox kind {kind!r}")
                found[kind] = handler
        _handlers = found
    return _handlers


async def enqueue(kind: str, payload: dict[str, Any]) -> OutboxEvent:
    """Write a side effect; call inside the transaction of the change that causes it."""
    if kind not in handlers():
        raise ValueError(f"no handler for outbox kind {kind!r}")
    return await OutboxEvent.create(kind=kind, payload=payload)


async def deliver(event_id: int) -> bool:
    """Run one event's handler unless it already ran; True when it is delivered now."""
    event = await OutboxEvent.get_or_none(id=event_id)
    if event is None or event.delivered_at is not None:
        return False
    handler = handlers().get(event.kind)
    try:
        if handler is None:
            raise LookupError(f"no handler for outbox kind {event.kind!r}")
        await handler(event)
    except Exception as exc:
        log.exception("outbox event %s (%s) failed", event.id, event.kind)
        await OutboxEvent.filter(id=event.id).update(
            attempts=event.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        return False
    updated = await OutboxEvent.filter(id=event.id, delivered_at=None).update(
        delivered_at=utcnow(), attempts=event.attempts + 1, last_error=None
    )
    return bool(updated)


async def pending_ids(limit: int = 500) -> list[int]:
    rows = (
        await OutboxEvent.filter(delivered_at=None, attempts__lt=MAX_ATTEMPTS)
        .order_by("id")
        .limit(limit)
        .values_list("id", flat=True)
    )
    return [int(row) for row in rows]


async def deliver_pending(limit: int = 500) -> int:
    """Deliver what is waiting, oldest first; returns how many were delivered."""
    delivered = 0
    for event_id in await pending_ids(limit):
        delivered += await deliver(event_id)
    return delivered


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

    async def wake(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await deliver_pending()
            except Exception:
                log.exception("in-process outbox delivery failed")
            if not self._again:
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
        await self.drain()


class ArqDispatcher:
    """Hands each pending event to the arq worker; the worker's sweep catches any it missed."""

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
            pool = await self._redis()
            for event_id in await pending_ids():
                await pool.enqueue_job("deliver_event", event_id, _job_id=f"outbox:{event_id}")
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
