"""Concurrent acts extend one log in one order: no repeated or skipped sequence number, no fork.

On PostgreSQL the 50 acts run on several pooled connections at once and meet at the row lock
on the log state; on SQLite they share one connection and must serialize.
"""

from __future__ import annotations

import asyncio

import pytest

from core.models import Role
from core.settings import Settings
from forum.models import Post, PostState
from moderation import actions, log, merkle
from moderation.models import Act, LogEntry, TreeHead
from tests.factories import add_member, make_course, make_forum, make_reply, make_thread, make_user

ACTS = 50


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


async def test_fifty_concurrent_acts_make_one_contiguous_verified_log(db: Settings) -> None:
    instructor = await make_user()
    course = await make_course(instructor)
    mentor = await make_user()
    await add_member(course, mentor, Role.MENTOR)
    forum = await make_forum(course)
    # Ten learners with five replies each stay under the posting rate limit.
    learners = [await make_user() for _ in range(10)]
    for learner in learners:
        await add_member(course, learner)
    thread = await make_thread(forum, instructor)
    posts = [await make_reply(thread, learner) for learner in learners for _ in range(5)]
    assert len({p.id for p in posts}) == ACTS
    await actions.ensure_default_rules(course)
    before = await LogEntry.all().count()

    async def hide(post: Post) -> LogEntry:
        return await actions.hide_post(
            post,
            rule_code="R3",
            reason=f"Duplicate of an earlier answer ({post.id}).",
            acting_user=mentor,
        )

    made = await asyncio.gather(*(hide(post) for post in posts))

    assert sorted(e.seq for e in made) == list(range(before, before + ACTS))
    entries = await LogEntry.all().order_by("seq")
    assert [e.seq for e in entries] == list(range(before + ACTS))
    hides = [e for e in entries if e.act == Act.HIDE_POST]
    assert len(hides) == ACTS
    assert sorted(e.target_id for e in hides) == sorted(p.id for p in posts)
    heads = await TreeHead.all().order_by("size")
    assert [h.size for h in heads] == list(range(1, before + ACTS + 1))
    # Each head's root is the root of exactly the entries before it: one tree, no fork.
    leaves = [bytes.fromhex(e.leaf_hash) for e in entries]
    for head in heads:
        assert head.root_hex == merkle.root_from_leaf_hashes(leaves[: head.size]).hex()
    assert await Post.filter(id__in=[p.id for p in posts], state=PostState.HIDDEN).count() == ACTS
    report = await log.verify_log()
    assert report.ok, report.problems
    assert report.entries == report.heads == before + ACTS
