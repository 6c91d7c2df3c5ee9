"""PostgreSQL connections go back to the pool without a reset round trip, and still clean."""

from __future__ import annotations

from typing import Any

import pytest
from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

from core.db import PooledConnection
from core.models import User
from core.settings import Settings
from tests.factories import make_user

# SQLite has one connection and no pool.
pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


def _pool(settings: Settings) -> Any:
    assert not settings.is_sqlite
    pool = get_connection("default")._pool
    assert pool is not None
    return pool


async def test_the_pool_hands_out_connections_that_are_not_reset(db: Settings) -> None:
    pool = _pool(db)
    sent: list[str] = []

    def log(record: Any) -> None:
        sent.append(record.query)

    async with pool.acquire() as connection:
        raw = connection._con
        assert isinstance(raw, PooledConnection)
        raw.add_query_logger(log)
        await connection.fetchval("SELECT 1")
    raw.remove_query_logger(log)
    assert sent == ["SELECT 1"]


async def test_a_transaction_left_open_is_rolled_back_when_the_connection_returns(
    db: Settings,
) -> None:
    pool = _pool(db)
    user = await make_user("ada")
    async with pool.acquire() as connection:
        await connection.execute("BEGIN")
        await connection.execute(
            "UPDATE agora_user SET display_name = 'changed' WHERE id = $1", user.id
        )
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT txid_current_if_assigned()") is None
    assert (await User.get(id=user.id)).display_name != "changed"


async def test_a_failed_transaction_does_not_leave_the_next_request_in_it(db: Settings) -> None:
    _pool(db)
    user = await make_user("ada")
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await User.filter(id=user.id).update(display_name="changed")
            raise RuntimeError("the act failed half way")
    for _ in range(6):  # more than the pool's connections
        assert (await User.get(id=user.id)).display_name != "changed"
        assert await get_connection("default").execute_query_dict("SELECT 1 AS one") == [{"one": 1}]
