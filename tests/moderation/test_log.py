"""The moderation log as stored: contiguous appends, canonical entries, signed heads, triggers.

`build_log` and `World` are shared with the other log tests (public pages, verifier, tampering,
concurrency): log entries always come from real acts in moderation/actions.py.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from tortoise.connection import get_connection

from core.models import Course, Role, User
from core.settings import Settings
from forum.models import Forum, Post, Thread
from moderation import actions, log, merkle
from moderation.models import Act, LogEntry, SanctionKind, TreeHead
from tests.factories import (
    add_member,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

ROOT = Path(__file__).resolve().parents[2]
REASON = "Insulting another learner in the discussion."


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass
class World:
    course: Course
    instructor: User
    mentor: User
    learner: User
    forum: Forum
    thread: Thread
    posts: list[Post]


async def make_world(posts: int = 4, *, anonymous: bool = False) -> World:
    """A course with an instructor, a mentor, a learner and `posts` replies by the learner."""
    instructor = await make_user(display_name="Ingrid Instructor")
    course = await make_course(instructor)
    mentor = await make_user(display_name="Marta Mentor")
    await add_member(course, mentor, Role.MENTOR)
    learner = await make_user(display_name="Lars Learner")
    await add_member(course, learner)
    forum = await make_forum(course)
    thread = await make_thread(forum, learner)
    replies = [await make_reply(thread, learner, anonymous=anonymous) for _ in range(posts)]
    return World(course, instructor, mentor, learner, forum, thread, replies)


async def build_log(world: World, acts: int) -> list[LogEntry]:
    """`acts` moderation acts through the real actions: a mentor hides a post, an instructor
    unhides it, a mentor warns the learner; and again with the next post."""
    done: list[LogEntry] = []
    for i in range(acts):
        if i % 3 == 2:
            done.append(
                await actions.sanction_user(
                    world.course,
                    world.learner,
                    SanctionKind.WARNING,
                    rule_code="R2",
                    reason="Keep to the course topic, please.",
                    acting_user=world.mentor,
                )
            )
            continue
        post = await Post.get(id=world.posts[(i // 3) % len(world.posts)].id)
        if post.state == "visible":
            done.append(
                await actions.hide_post(
                    post, rule_code="R1", reason=REASON, acting_user=world.mentor
                )
            )
        else:
            done.append(
                await actions.unhide_post(
                    post,
                    rule_code="R1",
                    reason="Context shows it was a joke.",
                    acting_user=world.instructor,
                )
            )
    return done


async def test_appends_are_contiguous_canonical_and_signed(db: Settings) -> None:
    world = await make_world()
    before = await LogEntry.all().count()
    made = await build_log(world, 7)
    entries = await LogEntry.all().order_by("seq")
    assert [e.seq for e in entries] == list(range(before + 7))
    assert [e.seq for e in made] == list(range(before, before + 7))
    key = log.signer().public_key_bytes
    heads = {h.size: h for h in await TreeHead.all()}
    assert sorted(heads) == list(range(1, before + 8))
    leaves = []
    for entry in entries:
        # The canonical text is exactly what the columns say, and it is what was hashed.
        assert entry.canonical == log.canonical_entry(entry)
        fields = json.loads(entry.canonical)
        assert fields["seq"] == entry.seq
        assert fields["reason"] == entry.reason
        assert fields["created_at"] == log.timestamp(entry.created_at)
        assert entry.leaf_hash == merkle.leaf_hash(entry.canonical.encode()).hex()
        leaves.append(bytes.fromhex(entry.leaf_hash))
        head = heads[entry.seq + 1]
        assert head.root_hex == merkle.root_from_leaf_hashes(leaves).hex()
        assert head.key_id == log.signer().key_id
        assert log.verify_head_signature(
            key,
            head.size,
            bytes.fromhex(head.root_hex),
            log.timestamp(head.signed_at),
            bytes.fromhex(head.signature_hex),
        )
    hide = next(e for e in made if e.act == Act.HIDE_POST)
    assert (hide.actor_id, hide.actor_role, hide.target_type) == (world.mentor.id, "mentor", "post")
    assert (hide.old_value, hide.new_value, hide.rule_code) == ("visible", "hidden", "R1")
    unhide = next(e for e in made if e.act == Act.UNHIDE_POST)
    assert unhide.reverses_seq is not None


async def test_head_json_is_signed_by_the_published_key(db: Settings) -> None:
    await build_log(await make_world(), 2)
    head = await log.latest_head()
    assert head is not None
    published = log.head_json(head)
    assert published["size"] == await LogEntry.all().count()
    assert base64.b64decode(published["public_key"]) == log.signer().public_key_bytes
    assert log.verify_head_signature(
        base64.b64decode(published["public_key"]),
        published["size"],
        base64.b64decode(published["root"]),
        published["signed_at"],
        base64.b64decode(published["signature"]),
    )
    # The signature covers the size: the same root at another size does not verify.
    assert not log.verify_head_signature(
        base64.b64decode(published["public_key"]),
        published["size"] + 1,
        base64.b64decode(published["root"]),
        published["signed_at"],
        base64.b64decode(published["signature"]),
    )


async def test_verify_log_passes_on_an_intact_log(db: Settings) -> None:
    await build_log(await make_world(), 6)
    report = await log.verify_log()
    assert report.ok, report.problems
    assert report.entries == report.heads == await LogEntry.all().count() > 6


async def test_verify_log_fails_when_checked_with_another_key(db: Settings) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    await build_log(await make_world(), 2)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    report = await log.verify_log(other)
    assert not report.ok
    assert all("signature does not verify" in p for p in report.problems)


async def _refused(work: object) -> None:
    with pytest.raises(Exception, match="append-only"):
        await work  # type: ignore[misc]


async def test_the_database_refuses_to_update_or_delete_entries(db: Settings) -> None:
    await build_log(await make_world(), 3)
    count = await LogEntry.all().count()
    entry = await LogEntry.get(seq=1)
    await _refused(LogEntry.filter(seq=1).update(reason="Nothing happened here, honestly."))
    await _refused(LogEntry.filter(seq=1).delete())
    await _refused(LogEntry.all().delete())
    connection = get_connection("default")
    if connection.capabilities.dialect == "postgres":  # SQLite has no TRUNCATE statement
        await _refused(connection.execute_script("TRUNCATE agora_log_entry CASCADE"))
    again = await LogEntry.get(seq=1)
    assert (again.reason, again.canonical, again.leaf_hash) == (
        entry.reason,
        entry.canonical,
        entry.leaf_hash,
    )
    assert await LogEntry.all().count() == count
    assert (await log.verify_log()).ok


async def test_the_database_refuses_to_update_or_delete_tree_heads(db: Settings) -> None:
    await build_log(await make_world(), 3)
    head = await TreeHead.get(size=2)
    await _refused(TreeHead.filter(size=2).update(root_hex="00" * 32))
    await _refused(TreeHead.filter(size=2).delete())
    await _refused(TreeHead.all().delete())
    connection = get_connection("default")
    if connection.capabilities.dialect == "postgres":
        await _refused(connection.execute_script("TRUNCATE agora_tree_head"))
    again = await TreeHead.get(size=2)
    assert (again.root_hex, again.signature_hex) == (head.root_hex, head.signature_hex)
    assert await TreeHead.all().count() == await LogEntry.all().count()


def test_every_act_is_described_in_the_docs() -> None:
    text = (ROOT / "docs" / "moderation.md").read_text(encoding="utf-8")
    missing = [act.value for act in Act if f"`{act.value}`" not in text]
    assert not missing, f"docs/moderation.md does not describe {missing}"
