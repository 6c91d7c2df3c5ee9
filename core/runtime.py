"""Opening and closing what a process needs: the database, the job dispatcher, search.

The web app's lifespan, the worker and the CLI all start and stop through here, so each
process is wired the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from tortoise.context import TortoiseContext

from core import jobs
from core.db import close_database, open_database
from core.settings import Settings
from moderation import log as moderation_log
from search import service as search_service
from search.backends import SearchBackend

log = logging.getLogger("agora")


@dataclass(slots=True)
class Runtime:
    database: TortoiseContext
    dispatcher: jobs.Dispatcher
    search: SearchBackend
    housekeeping: asyncio.Task[None] | None = None


_settings: Settings | None = None


def settings() -> Settings:
    """The settings of the running process (actions read policy values from here)."""
    if _settings is None:
        raise RuntimeError("the runtime has not been started")
    return _settings


async def start(
    settings: Settings,
    *,
    queue: bool = True,
    search: SearchBackend | None = None,
    housekeeping: bool = False,
) -> Runtime:
    """Open everything; `queue=False` delivers jobs in this process even when Redis is set.

    `housekeeping=True` runs the periodic upkeep (daily digests…) in this process, but only
    when jobs are delivered here too: with Redis the worker's cron does it.
    """
    global _settings
    _settings = settings
    database = await open_database(settings)
    moderation_log.configure_signer(settings.data_dir)
    dispatcher = jobs.configure(settings.redis_url if queue else None)
    backend = (
        search_service.use(search) if search is not None else search_service.configure(settings)
    )
    try:
        await backend.ensure_ready()
    except Exception as exc:
        # Search being down must not stop the site: writes go on and the index catches up.
        log.warning("search engine not ready: %s", exc)
    upkeep = None
    if housekeeping and isinstance(dispatcher, jobs.InProcessDispatcher):
        upkeep = asyncio.get_running_loop().create_task(_housekeeping_loop())
    return Runtime(database=database, dispatcher=dispatcher, search=backend, housekeeping=upkeep)


HOUSEKEEPING_FIRST_DELAY_SECONDS = 30


async def _housekeeping_loop() -> None:
    from core.housekeeping import EVERY_SECONDS, run_housekeeping

    await asyncio.sleep(HOUSEKEEPING_FIRST_DELAY_SECONDS)
    while True:
        try:
            await run_housekeeping()
        except Exception:
            log.exception("housekeeping failed")
        await asyncio.sleep(EVERY_SECONDS)


async def stop(runtime: Runtime) -> None:
    if runtime.housekeeping is not None:
        runtime.housekeeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runtime.housekeeping
    await runtime.dispatcher.close()
    await search_service.close()
    await close_database(runtime.database)
