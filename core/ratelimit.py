"""Fixed-window rate limits kept in the database, so every web process shares them."""

from __future__ import annotations

import hashlib
import time

from tortoise.connection import get_connection

from core.errors import RateLimited
from core.models import RateLimitCounter

_UPSERT = (
    "INSERT INTO agora_rate_limit (key, window_start, count) VALUES ({0}, {1}, 1) "
    "ON CONFLICT (key, window_start) DO UPDATE SET count = agora_rate_limit.count + 1 "
    "RETURNING count"
)


def _placeholders() -> tuple[str, str]:
    connection = get_connection("default")
    if connection.capabilities.dialect == "postgres":
        return "$1", "$2"
    return "?", "?"


def _stored_key(key: str) -> str:
    """The key as stored: the column holds 200 characters and PostgreSQL refuses NUL."""
    if len(key) <= 200 and "\x00" not in key:
        return key
    prefix = key.split(":", 1)[0][:40]
    return f"{prefix}:sha256:{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()}"


def _window(window_seconds: int, now: float | None) -> tuple[int, int]:
    now = time.time() if now is None else now
    start = int(now // window_seconds) * window_seconds
    return start, max(1, int(start + window_seconds - now))


def _refusal(what: str, retry_after: int) -> RateLimited:
    minutes = max(1, round(retry_after / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return RateLimited(
        f"Too many {what}. Please wait about {minutes} {unit} and try again.",
        retry_after=retry_after,
    )


async def record(key: str, *, window_seconds: int, now: float | None = None) -> int:
    """Count one attempt in the current window; returns the window's count so far."""
    start, _ = _window(window_seconds, now)
    sql = _UPSERT.format(*_placeholders())
    # execute_query drops the RETURNING rows of an INSERT on PostgreSQL (asyncpg client).
    rows = await get_connection("default").execute_query_dict(sql, [_stored_key(key), start])
    return int(rows[0]["count"])


async def hit(
    key: str, *, limit: int, window_seconds: int, what: str, now: float | None = None
) -> None:
    """Count one attempt; raise RateLimited when this one goes over the limit."""
    if await record(key, window_seconds=window_seconds, now=now) > limit:
        raise _refusal(what, _window(window_seconds, now)[1])


async def check(
    key: str, *, limit: int, window_seconds: int, what: str, now: float | None = None
) -> None:
    """Raise RateLimited if the key has already used up its window, without counting."""
    start, retry_after = _window(window_seconds, now)
    counter = await RateLimitCounter.get_or_none(key=_stored_key(key), window_start=start)
    if counter is not None and counter.count >= limit:
        raise _refusal(what, retry_after)


async def forget_old(*, older_than_seconds: int = 86400, now: float | None = None) -> int:
    """Drop finished windows; returns how many rows went."""
    now = time.time() if now is None else now
    return await RateLimitCounter.filter(window_start__lt=int(now) - older_than_seconds).delete()
