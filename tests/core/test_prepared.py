"""Prepared queries give what the ORM query gives, for every value, and only ever bind values."""

from __future__ import annotations

import pytest
from tortoise.expressions import RawSQL
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from core.models import AuthSession, Course, Role, User
from core.prepared import Prepared
from core.settings import Settings
from tests.factories import add_member, make_course, make_user

pytestmark = pytest.mark.usefixtures("reused_password_hashes")


def _courses(slug: str, user_id: int) -> QuerySet[Course]:
    mine = RawSQL(
        '(SELECT COUNT(*) FROM "agora_membership" WHERE "course_id" = "agora_course"."id" '
        f'AND "user_id" = {int(user_id)})'
    )
    return Course.filter(slug=slug).annotate(mine=mine).order_by("id")


COURSES = Prepared(_courses, str, int)


async def test_each_run_gives_what_the_orm_query_gives(db: Settings) -> None:
    ada, bob = await make_user("ada"), await make_user("bob")
    first, second = await make_course(title="First"), await make_course(title="Second")
    await add_member(first, ada)
    await add_member(second, ada, Role.MENTOR)
    for course in (first, second):
        for user in (ada, bob):
            expected = await _courses(course.slug, user.id)
            got = await COURSES.rows(course.slug, user.id)
            assert [(c.id, c.slug, c.title, c.mine) for c in got] == [
                (c.id, c.slug, c.title, c.mine) for c in expected
            ]
    assert [c.mine for c in await COURSES.rows(first.slug, bob.id)] == [0]
    assert [c.mine for c in await COURSES.rows(second.slug, ada.id)] == [1]
    assert await COURSES.rows("no-such-course", ada.id) == []


async def test_related_rows_come_with_their_models(db: Settings) -> None:
    ada = await make_user("ada", display_name="Ada L.")
    session = await AuthSession.create(
        key_hash="k" * 64, user=ada, last_seen_at=ada.created_at, expires_at=ada.created_at
    )
    by_key = Prepared(
        lambda key: AuthSession.filter(key_hash=key).select_related("user").limit(1), str
    )
    found = await by_key.first("k" * 64)
    assert found is not None and found.id == session.id
    assert isinstance(found.user, User) and found.user.display_name == "Ada L."
    assert await by_key.first("x" * 64) is None


async def test_values_are_bound_never_written_into_the_sql(db: Settings) -> None:
    course = await make_course(title="First")
    assert await COURSES.rows(f"{course.slug}' OR '1'='1", 1) == []
    assert await COURSES.rows(f'{course.slug}"; DROP TABLE agora_course; --', 1) == []
    with pytest.raises(ValueError):
        await COURSES.rows(course.slug, "1) OR (1=1")
    assert [c.slug for c in await Course.all()] == [course.slug]


async def test_a_run_inside_a_transaction_sees_its_writes(db: Settings) -> None:
    ada = await make_user("ada")
    async with in_transaction():
        course = await make_course(title="Fresh")
        await add_member(course, ada)
        assert [c.mine for c in await COURSES.rows(course.slug, ada.id)] == [1]


async def test_a_value_that_does_not_reach_the_query_is_refused(db: Settings) -> None:
    forgetful = Prepared(lambda slug, user_id: Course.filter(slug=slug), str, int)
    with pytest.raises(ValueError, match=r"values \[1\]"):
        await forgetful.rows("first", 1)
    with pytest.raises(TypeError):
        await COURSES.rows("first")
    with pytest.raises(ValueError):
        Prepared(lambda when: Course.all(), float)
