"""Periodic upkeep, every few minutes: the arq worker's cron, or a loop in `agora serve`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from core import notifications
from core.timeutil import utcnow

log = logging.getLogger("agora.housekeeping")

EVERY_SECONDS = 5 * 60


async def _daily_digests(now: datetime) -> object:
    return (await notifications.send_due_digests(now)).as_dict()


async def _forget_old_sign_ins(now: datetime) -> object:
    from core import profile, ratelimit

    return {
        "sessions": await profile.forget_ended_sessions(now),
        "rate_limits": await ratelimit.forget_old(now=now.timestamp()),
    }


async def _expired_exports(now: datetime) -> object:
    from core import export

    return {"deleted": await export.purge_expired(now)}


# Each step takes the run's time and returns a summary of what it did; one failing step
# does not keep the others from running.
STEPS: list[tuple[str, Callable[[datetime], Awaitable[object]]]] = [
    ("digests", _daily_digests),
    ("sign_ins", _forget_old_sign_ins),
    ("exports", _expired_exports),
]


async def run_housekeeping() -> dict[str, object]:
    """Run every step once; the report maps each step's name to its summary or error."""
    now = utcnow()
    report: dict[str, object] = {}
    for name, step in STEPS:
        try:
            report[name] = await step(now)
        except Exception as exc:
            log.exception("housekeeping step %s failed", name)
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return report
