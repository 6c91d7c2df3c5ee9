"""The few statements every reply sends, written as SQL.

The ORM builds a query anew on each call, which costs more than the database's own work for
these one-row statements; under many concurrent writers that is most of a reply's time. Each
runs on the current connection, so inside the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.connection import get_connection


def _sql(statement: str) -> str:
    """The statement with $n placeholders for PostgreSQL, or ? for SQLite."""
    if get_connection("default").capabilities.dialect == "postgres":
        return statement
    for n in range(9, 0, -1):
        statement = statement.replace(f"${n}", "?")
    return statement


async def count_reply(thread_id: int, at: datetime) -> None:
    """One more reply in the thread, and its last activity is now."""
    await get_connection("default").execute_query(
        _sql(
            "UPDATE agora_thread SET reply_count = reply_count + 1, last_activity_at = $1 "
            "WHERE id = $2"
        ),
        [at, thread_id],
    )


async def subscribe(thread_id: int, user_id: int, at: datetime) -> None:
    """Subscribe the user to the thread unless they already are (no error either way)."""
    await get_connection("default").execute_query(
        _sql(
            "INSERT INTO agora_subscription (thread_id, user_id, created_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (thread_id, user_id) DO NOTHING"
        ),
        [thread_id, user_id, at],
    )


async def mark_seen(thread_id: int, user_id: int, at: datetime) -> None:
    """Move the user's read marker of the thread to `at`, if they have one."""
    await get_connection("default").execute_query(
        _sql(
            "UPDATE agora_thread_visit SET last_seen_at = $1 WHERE thread_id = $2 AND user_id = $3"
        ),
        [at, thread_id, user_id],
    )
