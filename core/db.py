"""Database set-up: the Tortoise configuration, opening, closing and migrating."""

from __future__ import annotations

from typing import Any

from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as tortoise_migrate

from core.settings import Settings

# Apps in dependency order; each has its own models module and committed migrations package.
APPS: tuple[str, ...] = ("core", "forum", "moderation", "peer_review")


def tortoise_config(database_url: str) -> dict[str, Any]:
    """The Tortoise ORM configuration for a database URL."""
    if database_url.startswith("postgresql://"):
        database_url = "postgres://" + database_url.removeprefix("postgresql://")
    return {
        "connections": {"default": database_url},
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
