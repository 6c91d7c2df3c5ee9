"""Fixtures of the peer-review tests that use the database.

- `clock`: the application clock (core.timeutil.utcnow) frozen at the start; `.advance()`.
- `cast`: an empty database with a course, its instructor, a mentor, four learners and an
  outsider (passwords hashed once per run).
"""

from __future__ import annotations

import pytest

from core.settings import Settings
from tests.factories import reuse_password_hashes
from tests.peer_review.factories import Cast, Clock, freeze_clock, make_cast


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return freeze_clock(monkeypatch)


@pytest.fixture
async def cast(db: Settings, monkeypatch: pytest.MonkeyPatch) -> Cast:
    reuse_password_hashes(monkeypatch)
    return await make_cast()
