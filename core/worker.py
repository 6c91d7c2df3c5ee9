"""The arq worker behind `agora worker`: delivers outbox events, sweeps for missed ones, and
runs the periodic upkeep (core/housekeeping.py) every five minutes."""

from __future__ import annotations

import logging
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker

from core import housekeeping, jobs, ratelimit, runtime
from core.settings import Settings

log = logging.getLogger("agora.worker")


async def deliver_event(ctx: dict[str, Any], event_id: int) -> bool:
    return await jobs.deliver(event_id)


async def deliver_outbox(ctx: dict[str, Any]) -> None:
    """Start delivering what is pending (web processes ask for this after a write).

    The worker's own delivery loop does the work, outside arq's jobs, so that stopping the
    worker lets it finish the batch in hand instead of cancelling it between a handler and
    its "delivered" mark."""
    await jobs.wake()


async def sweep_outbox(ctx: dict[str, Any]) -> None:
    """Deliver anything the web processes could not hand over (e.g. while Redis was down)."""
    await jobs.wake()
    await ratelimit.forget_old()


async def run_housekeeping(ctx: dict[str, Any]) -> dict[str, object]:
    """Daily digests and other upkeep; arq runs one per scheduled minute across workers."""
    return await housekeeping.run_housekeeping()


def build_worker(settings: Settings, *, burst: bool = False) -> Worker:
    """An arq Worker wired to this deployment's database and Redis."""
    if not settings.redis_url:
        raise ValueError(
            "agora worker needs AGORA_REDIS_URL; without it jobs run in the web process"
        )

    async def on_startup(ctx: dict[str, Any]) -> None:
        # Jobs that cause more jobs deliver them right here, in the worker.
        ctx["runtime"] = await runtime.start(settings, queue=False)
        await sweep_outbox(ctx)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "runtime" in ctx:
            await runtime.stop(ctx["runtime"])

    step = max(1, min(59, settings.outbox_sweep_seconds))
    return Worker(
        functions=[deliver_outbox, deliver_event],
        cron_jobs=[
            cron(sweep_outbox, second=set(range(0, 60, step)), run_at_startup=False),
            cron(
                run_housekeeping,
                minute=set(range(0, 60, housekeeping.EVERY_SECONDS // 60)),
                second=30,
                run_at_startup=False,
            ),
        ],
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        burst=burst,
        handle_signals=not burst,
        keep_result=60,
    )
