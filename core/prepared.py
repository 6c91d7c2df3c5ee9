"""ORM queries whose SQL is written once, then run again with new values.

The pages every visitor loads (the session lookup, the course and the viewer's role, a thread
and its posts) run the same few queries with different ids. Building a Tortoise query (its
filters, joins and annotations, then the SQL text) costs about as much as running it: a fifth
of a millisecond for a page of posts. A `Prepared` query is still written with the ORM, as a
function of its varying values; the first run builds it with stand-in values and keeps the
SQL, and each later run only puts the real values in and lets the ORM's own executor turn
the rows into models.

The varying values are integers (ids) or strings. A stand-in comes out either as a bound
parameter, or, for an integer only, as a literal in the SQL text (a RawSQL annotation written
with an f-string of an int); it is put back the same way. A stand-in found in neither place
is a mistake in the query function and raises at its first run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model
from tortoise.queryset import QuerySet

M = TypeVar("M", bound=Model)

# Integer stand-ins: negative, all the same length (none is a prefix of another), never an id.
_INT_STAND_INS = tuple(-913_572_468_100 - i for i in range(1, 10))
_STR_STAND_INS = tuple(f"\x00stand-in {i}\x00" for i in range(1, 10))


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[int | None, ...]  # for each parameter: which value goes there (None: keep)
    literals: tuple[int, ...]  # the (integer) values written into the SQL text itself
    select_related_idx: Any
    custom_fields: tuple[str, ...]

    @property
    def related(self) -> bool:
        """Rows hold related models too (select_related), not only the query's own."""
        idx = self.select_related_idx or ()
        return len(idx) > 1 or any(count == 0 for _, count, *_ in idx)


class Prepared(Generic[M]):
    """A read query built by `build(*values)`, its SQL kept per database dialect; `kinds`
    are the values' types, int or str."""

    def __init__(self, build: Callable[..., QuerySet[M]], *kinds: type) -> None:
        if not kinds or len(kinds) > len(_INT_STAND_INS) or set(kinds) - {int, str}:
            raise ValueError(f"a prepared query takes 1 to {len(_INT_STAND_INS)} ints or strs")
        self._build = build
        self._kinds = kinds
        self._stand_ins = tuple(
            (_INT_STAND_INS if kind is int else _STR_STAND_INS)[i] for i, kind in enumerate(kinds)
        )
        self._plans: dict[tuple[str, type], _Plan] = {}
        self._model: type[M] | None = None

    def _plan(self) -> tuple[_Plan, BaseDBAsyncClient, type[M]]:
        model = self._model
        if model is not None:
            db = model._meta.db
            plan = self._plans.get((db.capabilities.dialect, db.executor_class))
            if plan is not None:
                return plan, db, model
        query = self._build(*self._stand_ins)
        if query._prefetch_map or query._single:
            raise ValueError("a prepared query returns a list and prefetches nothing")
        self._model = model = query.model
        db = query._db = query._choose_db()
        query._make_query()
        sql, params = query.query.get_parameterized_sql()
        slots = tuple(self._slot(p) for p in params)
        literals = tuple(
            i for i, s in enumerate(self._stand_ins) if self._kinds[i] is int and str(s) in sql
        )
        missing = set(range(len(self._kinds))) - set(literals) - set(slots)
        if missing:
            raise ValueError(f"values {sorted(missing)} are in neither the SQL nor its params")
        plan = _Plan(
            sql,
            tuple(params),
            slots,
            literals,
            query._select_related_idx,
            tuple(query._annotations),
        )
        self._plans[(db.capabilities.dialect, db.executor_class)] = plan
        return plan, db, model

    def _slot(self, param: Any) -> int | None:
        for i, stand_in in enumerate(self._stand_ins):
            if type(param) is type(stand_in) and param == stand_in:
                return i
        return None

    async def rows(self, *values: Any) -> list[M]:
        """The query's rows for these values, as the ORM would return them."""
        if len(values) != len(self._kinds):
            raise TypeError(f"expected {len(self._kinds)} values, got {len(values)}")
        # Only integers ever reach the SQL text; strings are always bound parameters.
        checked = [kind(value) for kind, value in zip(self._kinds, values, strict=True)]
        plan, db, model = self._plan()
        sql = plan.sql
        for i in plan.literals:
            sql = sql.replace(str(self._stand_ins[i]), str(checked[i]))
        params = [
            p if s is None else checked[s] for p, s in zip(plan.params, plan.slots, strict=True)
        ]
        if plan.related:
            executor = db.executor_class(
                model=model, db=db, select_related_idx=plan.select_related_idx
            )
            return await executor.execute_select(
                sql, params, custom_fields=list(plan.custom_fields)
            )
        # One model a row (the executor's own way, without copying each row twice first).
        _, raw = await db.execute_query(sql, params)
        make, extra, put = model._init_from_db, plan.custom_fields, object.__setattr__
        found = []
        for row in raw:
            instance = make(**row)
            for name in extra:
                put(instance, name, row[name])
            found.append(instance)
        return found

    async def first(self, *values: Any) -> M | None:
        found = await self.rows(*values)
        return found[0] if found else None
