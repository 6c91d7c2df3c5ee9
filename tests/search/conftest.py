"""Fixtures for the search backend tests: one shared index per backend and per run."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from search.backends import PostDocument, SearchBackend, SearchUnavailable
from search.embedded import EmbeddedBackend
from search.meili import MeiliBackend

MEILI_URL = os.environ.get("AGORA_TEST_MEILI_URL") or None
MEILI_KEY = os.environ.get("AGORA_TEST_MEILI_KEY") or None
IN_CI = os.environ.get("CI", "").lower() == "true"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

_ids = itertools.count(1)
_courses = itertools.count(1)

MakePost = Callable[..., PostDocument]
NewEngine = Callable[[], SearchBackend]


def _meili_param() -> object:
    marks = [] if MEILI_URL else [pytest.mark.skip(reason="AGORA_TEST_MEILI_URL not set")]
    return pytest.param("meilisearch", marks=marks)


def _create(kind: str) -> SearchBackend:
    if kind == "embedded":
        return EmbeddedBackend(None)
    assert MEILI_URL is not None
    return MeiliBackend(MEILI_URL, MEILI_KEY, index_uid=f"agora_test_{uuid.uuid4().hex[:12]}")


async def _start(kind: str) -> SearchBackend:
    backend = _create(kind)
    try:
        await backend.ensure_ready()
    except SearchUnavailable as exc:
        await backend.close()
        if IN_CI:
            pytest.fail(f"Meilisearch at {MEILI_URL} is configured but unusable: {exc}")
        pytest.skip(f"Meilisearch at {MEILI_URL} is not reachable: {exc}")
    return backend


async def _dispose(backend: SearchBackend) -> None:
    if isinstance(backend, MeiliBackend):
        await backend.delete_index()
    await backend.close()


@pytest_asyncio.fixture(scope="session", params=["embedded", _meili_param()])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[SearchBackend]:
    """A ready backend shared by the run; tests isolate themselves by using fresh course ids."""
    started = await _start(str(request.param))
    yield started
    await _dispose(started)


@pytest_asyncio.fixture
async def new_engine(engine: SearchBackend) -> AsyncIterator[NewEngine]:
    """Make extra, unshared backends of the same kind as `engine` (cleaned up afterwards)."""
    made: list[SearchBackend] = []
    kind = "embedded" if isinstance(engine, EmbeddedBackend) else "meilisearch"

    def make() -> SearchBackend:
        made.append(_create(kind))
        return made[-1]

    yield make
    for extra in made:
        await extra.close()
        if isinstance(extra, MeiliBackend):
            # A closed client cannot drop its index: a new one on the same index does.
            await _dispose(MeiliBackend(MEILI_URL or "", MEILI_KEY, index_uid=extra.index_uid))


@pytest.fixture
def course() -> Iterator[Callable[[], int]]:
    """Hand out course ids no other test uses."""
    yield lambda: next(_courses)


@pytest.fixture
def make_post() -> MakePost:
    """Build a PostDocument with sensible defaults; `minutes` sets created_at after T0."""

    def make(course_id: int, **fields: object) -> PostDocument:
        n = next(_ids)
        minutes = fields.pop("minutes", n)
        assert isinstance(minutes, int)
        values: dict[str, object] = {
            "id": f"post:{n}",
            "post_id": n,
            "course_id": course_id,
            "forum_id": 1,
            "thread_id": n,
            "thread_kind": "discussion",
            "thread_title": "General discussion",
            "body": "Some text about the course.",
            "author_handle": "student1",
            "is_answered": False,
            "created_at": T0 + timedelta(minutes=minutes),
            "url": f"/posts/{n}",
        }
        values.update(fields)
        return PostDocument(**values)  # type: ignore[arg-type]

    return make
