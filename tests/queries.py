"""Counting the SQL statements a piece of code sends, to catch queries that grow with the data."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from tortoise.connection import get_connection

EXECUTE_METHODS = (
    "execute_query",
    "execute_query_dict",
    "execute_insert",
    "execute_many",
    "execute_script",
)


class QueryLog:
    """The statements sent while counting, in order."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)

    def clear(self) -> None:
        self.statements.clear()

    def __str__(self) -> str:
        return "\n".join(f"{n}. {sql}" for n, sql in enumerate(self.statements, start=1))


def _counting(method: Callable[..., Any], log: QueryLog) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        log.statements.append(" ".join(query.split()))
        return await method(self, query, *args, **kwargs)

    return wrapper


@contextmanager
def count_queries(monkeypatch: pytest.MonkeyPatch) -> Iterator[QueryLog]:
    """Record every statement sent through the default connection (transactions included)."""
    log = QueryLog()
    client_class = type(get_connection("default"))
    with monkeypatch.context() as patch:
        for name in EXECUTE_METHODS:
            # Patch the class that defines the method, so transaction wrappers (its
            # subclasses) are counted too.
            owner = next(c for c in client_class.__mro__ if name in vars(c))
            patch.setattr(owner, name, _counting(vars(owner)[name], log))
        yield log
