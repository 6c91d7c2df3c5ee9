"""Finding the signed-in user: one lookup brings the session, the user and the unread count."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette

from core import auth
from core.models import Notification
from core.settings import Settings
from tests.conftest import drain_jobs
from tests.factories import (
    add_member,
    log_in,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

BADGE = re.compile(r'<span class="badge" aria-label="(\d+) unread">')


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


def badge(html: str) -> int:
    match = BADGE.search(html)
    return int(match.group(1)) if match else 0


async def test_the_header_counts_only_this_users_unread_notifications(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    instructor = await make_user()
    course = await make_course(instructor)
    asker, other = await make_user(), await make_user()
    await add_member(course, asker)
    await add_member(course, other)
    thread = await make_thread(await make_forum(course), asker)
    assert (await log_in(client, asker.username)).status_code == 303
    await drain_jobs()
    # Being added to the course was a notification already.
    before = await Notification.filter(user_id=asker.id, read_at=None).count()
    others = await Notification.filter(user_id=other.id).count()
    assert badge((await client.get("/courses")).text) == before

    # Each reply to the asker's thread notifies the asker, and no one else.
    await make_reply(thread, instructor)
    await drain_jobs()  # delivered before `other` follows the thread by replying
    await make_reply(thread, other)
    await drain_jobs()
    assert await Notification.filter(user_id=asker.id, read_at=None).count() == before + 2
    assert await Notification.filter(user_id=other.id).count() == others
    assert badge((await client.get("/courses")).text) == before + 2

    await Notification.filter(user_id=asker.id).update(read_at=thread.created_at)
    assert badge((await client.get("/courses")).text) == 0


async def test_a_session_is_found_with_or_without_the_count(db: Settings) -> None:
    user = await make_user()
    key = await auth.start_session(user, db)
    plain = await auth.resume_session(key, db)
    counted = await auth.resume_session(key, db, count_unread=True)
    assert plain is not None and counted is not None
    assert plain.user.id == counted.user.id == user.id
    assert auth.unread_count(counted) == 0
    assert await auth.resume_session(key + "x", db, count_unread=True) is None
