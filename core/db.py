"""Database set-up: the Tortoise configuration, opening, closing and migrating."""

from __future__ import annotations

from typing import Any

import asyncpg
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as tortoise_migrate

from core.settings import Settings

# Apps in dependency order; each has its own models module and committed migrations package.
APPS: tuple[str, ...] = ("core", "forum", "moderation", "peer_review")


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A PostgreSQL connection that goes back to the pool without a reset round trip.

    asyncpg resets every connection it takes back (`RESET ALL`, `UNLISTEN *`, `CLOSE ALL`,
    releasing session advisory locks): one more round trip per request, 11-16% of a web
    worker's CPU when posting. Agora leaves no session state on a connection (no `SET`
    without `LOCAL`, no `LISTEN`, no cursors outside a transaction, advisory locks only at
    transaction level), so there is nothing to reset. An open transaction is still rolled
    back on release: asyncpg does that before asking for the reset query.
    """

    def get_reset_query(self) -> str:
        return ""


def tortoise_config(database_url: str) -> dict[str, Any]:
    """The Tortoise ORM configuration for a database URL."""
    if database_url.startswith("postgresql://"):
        database_url = "postgres://" + database_url.removeprefix("postgresql://")
    connection: dict[str, Any] = expand_db_url(database_url)
    if connection["engine"] == "tortoise.backends.asyncpg":
        connection["credentials"].setdefault("connection_class", PooledConnection)
    return {
        "connections": {"default": connection},
        "apps": {
            app: {
                "models": [f"{app}.models"],
                "migrations": f"{app}.migrations",
                "default_connection": "default",
            }
            for app in APPS
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def open_database(settings: Settings) -> TortoiseContext:
    """Connect, visible to every task in the process (requests, jobs, lifespan)."""
    context = TortoiseContext()
    with context:
        await context.init(
            config=tortoise_config(settings.database_url), _enable_global_fallback=True
        )
        if settings.is_sqlite:
            # WAL lets readers go on while one writer commits; the timeout queues writers
            # instead of failing them with "database is locked".
            await context.db().execute_script("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")
    return context


async def close_database(context: TortoiseContext) -> None:
    await context.close_connections()


async def migrate(settings: Settings) -> None:
    """Apply every committed migration that has not run yet."""
    async with TortoiseContext():
        await tortoise_migrate(config=tortoise_config(settings.database_url))


# Read by `tortoise makemigrations` (see [tool.tortoise] in pyproject.toml); never connects.
TORTOISE_ORM = tortoise_config("sqlite://:memory:")
