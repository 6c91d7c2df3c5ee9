"""The benchmark course generator writes data the real application reads and verifies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from benchmarks.course import COURSE_SLUG, PASSWORD, Sizes
from benchmarks.generate import build, write_postgres, write_sqlite
from core.settings import Settings
from forum.models import Post, PostState, Thread
from moderation import log
from moderation.models import LogEntry
from tests.factories import log_in

SIZES = Sizes(
    learners=60, mentors=3, forums=5, threads=40, posts=300, long_threads=2, log_entries=250
)


async def generated(settings: Settings) -> dict[str, Any]:
    course = build(SIZES, seed=3, signer=log.signer(), pool_size=40)
    if settings.is_sqlite:
        write_sqlite(Path(settings.database_url.removeprefix("sqlite://")), course.tables)
    else:
        await write_postgres(settings.database_url, course.tables)
    return course.picks()


async def test_the_generated_log_verifies(app: Starlette, settings: Settings) -> None:
    await generated(settings)

    report = await log.verify_log()

    assert report.ok, report.problems
    assert report.entries == SIZES.log_entries == await LogEntry.all().count()
    acts = set(await LogEntry.all().values_list("act", flat=True))
    assert {"hide_post", "remove_post", "warn_user", "change_role", "lock_thread"} <= acts


async def test_hidden_posts_point_at_the_entry_that_hid_them(
    app: Starlette, settings: Settings
) -> None:
    await generated(settings)

    hidden = await Post.filter(state=PostState.HIDDEN)
    entries = {e.seq: e for e in await LogEntry.filter(act__in=["hide_post"])}

    assert hidden
    for post in hidden:
        assert post.state_seq in entries
        assert entries[post.state_seq].target_id == post.id


async def test_a_learner_reads_the_fifty_post_thread(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    picks = await generated(settings)

    await log_in(client, picks["viewer"], PASSWORD)
    page = await client.get(f"/courses/{COURSE_SLUG}/threads/{picks['thread_id']}")
    forums = await client.get(f"/courses/{COURSE_SLUG}/forums")

    assert page.status_code == 200
    assert len(re.findall(r'<article[^>]*\bid="post-\d+"', page.text)) == 50
    assert forums.status_code == 200
    assert await Thread.all().count() == SIZES.threads


async def test_new_rows_after_the_bulk_load_get_fresh_ids(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    picks = await generated(settings)
    before = await Post.all().order_by("-id").first()
    assert before is not None

    await log_in(client, picks["writers"][0], PASSWORD)
    page = await client.get(f"/courses/{COURSE_SLUG}/threads/{picks['writer_threads'][0]}")
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert token is not None
    response = await client.post(
        f"/courses/{COURSE_SLUG}/threads/{picks['writer_threads'][0]}/reply",
        data={"csrf_token": token.group(1), "body": "A reply written after the bulk load."},
    )

    assert response.status_code == 303
    newest = await Post.all().order_by("-id").first()
    assert newest is not None and newest.id > before.id
    assert newest.body_markdown == "A reply written after the bulk load."
