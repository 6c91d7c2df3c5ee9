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


async def sweep_outbox(ctx: dict[str, Any]) -> int:
    """Deliver anything the web processes could not hand over (e.g. while Redis was down)."""
    delivered = await jobs.deliver_pending()
    if delivered:
        log.info("sweep delivered %d outbox events", delivered)
    await ratelimit.forget_old()
    return delivered


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
        functions=[deliver_event],
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
