"""moderation/export.py: a person's moderation history in their data export.

The history is built through the real acts. The export must list exactly the entries about the
person, their content or their own acts, each provable offline against the one head it carries,
with their sanctions, notices, appeals and flags, and nothing that names anyone else.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import pytest
from tortoise.connection import get_connection

from core import actions as core_actions
from core.export import ExportContext
from core.models import Course, Notification, OutboxEvent, Role, User
from core.settings import Settings
from forum.models import Post, Thread
from moderation import actions, export, log, merkle, triggers
from moderation.models import (
    DEFAULT_RULES,
    Act,
    Flag,
    LogEntry,
    Notice,
    Sanction,
    SanctionKind,
)
from tests.conftest import drain_jobs
from tests.factories import (
    PASSWORD,
    add_member,
    make_course,
    make_forum,
    make_reply,
    make_thread,
)

REASON = "Insults another learner by name."
FLAG_TEXT = "Quillon thinks this insults everyone here."


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


async def person(username: str, display_name: str) -> User:
    return await core_actions.create_user(
        username=username,
        display_name=display_name,
        password=PASSWORD,
        email=f"{username}@mail.example",
        acting_user=None,
    )


@dataclass(slots=True)
class History:
    course: Course
    ali: User  # the learner who exports
    others: list[User]  # everyone whose name must not appear in ali's export
    instructor: User
    mentor: User
    lea: User
    bo: User
    thread: Thread  # ali's
    post: Post  # ali's reply
    bo_post: Post
    lea_anonymous: Post
    about_ali: dict[str, LogEntry]
    about_others: list[LogEntry]


@pytest.fixture
async def history(db: Settings) -> History:
    """Ali is warned, silenced (lifted early), has a post hidden after a flag, appeals and wins,
    has a thread locked and a flag of theirs dismissed; others are moderated too."""
    instructor = await person("ingridvance", "Ingrid Vance")
    course = await make_course(instructor, title="Ethics")
    mentor = await person("morwennaquill", "Morwenna Quill")
    ali = await person("alibaxter", "Ali Baxter")
    lea = await person("leaquillon", "Lea Quillon")
    bo = await person("bothistle", "Bo Thistle")
    await add_member(course, mentor, Role.MENTOR)
    for learner in (ali, lea, bo):
        await add_member(course, learner)
    forum = await make_forum(course, title="General")
    thread = await make_thread(forum, ali, title="Is lying ever right?")
    post = await make_reply(thread, ali, body="Only **fools** think so.")
    bo_post = await make_reply(thread, bo, body="Buy cheap watches at my shop today.")
    lea_anonymous = await make_reply(thread, lea, body="I agree with nobody.", anonymous=True)
    await actions.flag_post(post, category="harassment", text=FLAG_TEXT, acting_user=lea)
    await actions.flag_post(bo_post, category="spam", text="Plain advertising.", acting_user=ali)

    about: dict[str, LogEntry] = {}
    about["role"] = await LogEntry.get(act=Act.CHANGE_ROLE.value, target_id=ali.id)
    about["hide"] = await actions.hide_post(post, rule_code="R1", reason=REASON, acting_user=mentor)
    about["warn"] = await actions.sanction_user(
        course, ali, SanctionKind.WARNING, rule_code="R1", reason=REASON, acting_user=mentor
    )
    about["silence"] = await actions.sanction_user(
        course, ali, "silence", rule_code="R1", reason=REASON, days=2, acting_user=mentor
    )
    silence = await Sanction.get(entry_seq=about["silence"].seq)
    about["lift"] = await actions.lift_sanction(
        silence, rule_code="R1", reason="Apologised to the class.", acting_user=instructor
    )
    about["lock"] = await actions.lock_thread(
        await Thread.get(id=thread.id),
        locked=True,
        rule_code="R2",
        reason="The thread drifted far off topic.",
        acting_user=mentor,
    )
    flag_by_ali = await Flag.get(flagger_id=ali.id)
    about["dismiss"] = await actions.dismiss_flag(
        flag_by_ali, rule_code="R3", reason="A fair offer, not spam.", acting_user=mentor
    )
    notice = await Notice.get(entry_seq=about["hide"].seq)
    appeal = await actions.appeal(
        notice, text="I was quoting the reading, not calling anyone a fool.", acting_user=ali
    )
    about["decide"] = await actions.decide_appeal(
        appeal, overturn=True, decision="It quotes the set text.", acting_user=instructor
    )
    about["unhide"] = await LogEntry.get(act=Act.UNHIDE_POST.value, reverses_seq=about["hide"].seq)

    others = [
        await actions.hide_post(bo_post, rule_code="R3", reason=REASON, acting_user=mentor),
        await actions.sanction_user(
            course, lea, "warning", rule_code="R1", reason=REASON, acting_user=mentor
        ),
        await actions.remove_post(lea_anonymous, rule_code="R2", reason=REASON, acting_user=mentor),
    ]
    others += list(
        await LogEntry.filter(act=Act.CHANGE_ROLE.value, target_id__in=[mentor.id, lea.id, bo.id])
    )
    await drain_jobs()
    return History(
        course,
        ali,
        [instructor, mentor, lea, bo],
        instructor,
        mentor,
        lea,
        bo,
        thread,
        post,
        bo_post,
        lea_anonymous,
        about,
        others,
    )


async def export_of(user: User) -> tuple[dict[str, Any], ExportContext]:
    ctx = ExportContext(user=await User.get(id=user.id))
    result = await export.sections(ctx)
    json.dumps(result)  # must serialize as it is
    return result, ctx


def assert_names_absent(result: dict[str, Any], people: list[User]) -> None:
    text = json.dumps(result, ensure_ascii=False).lower()
    for other in people:
        for value in (other.username, other.display_name, other.email):
            assert value and value.lower() not in text, f"{value!r} appears in the export"


def verify_entry(entry: dict[str, Any], head: dict[str, Any]) -> None:
    """What a person does offline with nothing but the export."""
    leaf = merkle.leaf_hash(entry["canonical"].encode("utf-8"))
    assert leaf.hex() == entry["leaf_hash"]
    merkle.verify_inclusion(
        leaf,
        entry["index"],
        head["size"],
        [bytes.fromhex(h) for h in entry["audit_path"]],
        bytes.fromhex(head["root_hash"]),
    )


async def test_lists_exactly_the_entries_about_the_person_with_exact_times(
    history: History,
) -> None:
    result, _ = await export_of(history.ali)
    section = result["moderation"]
    entries = section["log_entries"]
    expected = sorted(e.seq for e in history.about_ali.values())
    assert [e["index"] for e in entries] == expected
    stored = {e.seq: e for e in await LogEntry.filter(seq__in=expected)}
    for entry in entries:
        row = stored[entry["index"]]
        assert entry["created_at"] == log.timestamp(row.created_at)
        assert entry["act"] == row.act
        assert entry["reason"] == row.reason
        assert entry["canonical"] == row.canonical
        assert entry["included_because"], entry
    by_act = {e["act"]: e for e in entries}
    hide = by_act[Act.HIDE_POST.value]
    assert hide["rule"] == {"code": "R1", "text": dict(DEFAULT_RULES)["R1"]}
    assert hide["target"]["description"] == "your post in the thread “Is lying ever right?”"
    assert by_act[Act.SILENCE_USER.value]["duration_seconds"] == 2 * 86400
    assert by_act[Act.SILENCE_USER.value]["target"]["description"] == "you"
    assert by_act[Act.LOCK_THREAD.value]["target"]["description"] == (
        "your thread “Is lying ever right?”"
    )
    assert by_act[Act.RESOLVE_FLAG.value]["target"]["description"].startswith("your flag on")
    assert by_act[Act.DECIDE_APPEAL.value]["included_because"] == ["it decides your appeal"]
    assert by_act[Act.UNHIDE_POST.value]["reverses_index"] == history.about_ali["hide"].seq
    # The mentor and the instructor keep one pseudonym each through the whole export.
    mentor_acts = [e for e in entries if e["actor_role"] == "mentor"]
    assert {e["actor"] for e in mentor_acts} == {by_act[Act.HIDE_POST.value]["actor"]}
    assert by_act[Act.LIFT_SANCTION.value]["actor"] == by_act[Act.DECIDE_APPEAL.value]["actor"]
    assert by_act[Act.LIFT_SANCTION.value]["actor"] != by_act[Act.HIDE_POST.value]["actor"]
    assert all(e["actor"].startswith("Person ") for e in entries)


async def test_every_entry_proves_against_the_one_signed_head_it_carries(
    history: History,
) -> None:
    result, _ = await export_of(history.ali)
    section = result["moderation"]
    head = section["tree_head"]
    assert "RFC 9162" in section["hashing"]
    assert section["log_problems"] == []
    latest = await log.latest_head()
    assert latest is not None and head["size"] == latest.size == await LogEntry.all().count()
    root = bytes.fromhex(head["root_hash"])
    assert log.verify_head_signature(
        bytes.fromhex(head["public_key"]),
        head["size"],
        root,
        head["signed_at"],
        bytes.fromhex(head["signature"]),
    )
    assert head["signed_message"].encode() == log.head_message(
        head["size"], root, head["signed_at"]
    )
    for entry in section["log_entries"]:
        verify_entry(entry, head)
    # The head is given once, not per entry.
    assert json.dumps(result).count(head["signature"]) == 1
    # A proof for one entry does not pass for another's content.
    first, second = section["log_entries"][:2]
    with pytest.raises(merkle.ProofError):
        verify_entry({**first, "audit_path": second["audit_path"]}, head)


async def test_entries_about_other_people_are_absent_and_nobody_is_named(
    history: History,
) -> None:
    result, _ = await export_of(history.ali)
    section = result["moderation"]
    indexes = {e["index"] for e in section["log_entries"]}
    assert indexes.isdisjoint(e.seq for e in history.about_others)
    assert_names_absent(result, history.others)
    text = json.dumps(result, ensure_ascii=False)
    assert FLAG_TEXT not in text  # what the flagger wrote could name them
    assert "I agree with nobody." not in text  # the anonymous post and its removal


async def test_sanctions_notices_and_appeals_with_their_times(history: History) -> None:
    await core_actions.mark_notifications_read(history.ali, acting_user=history.ali)
    result, ctx = await export_of(history.ali)
    section = result["moderation"]
    about = history.about_ali
    sanctions = {s["kind"]: s for s in section["sanctions"]}
    assert set(sanctions) == {"warning", "silence"}
    silence = await Sanction.get(entry_seq=about["silence"].seq)
    assert silence.ends_at is not None and silence.lifted_at is not None
    assert sanctions["silence"]["starts_at"] == log.timestamp(about["silence"].created_at)
    assert sanctions["silence"]["ends_at"] == log.timestamp(silence.ends_at)
    assert sanctions["silence"]["lifted_at"] == log.timestamp(about["lift"].created_at)
    assert sanctions["silence"]["active_now"] is False
    assert sanctions["silence"]["lift_log_index"] == about["lift"].seq
    assert sanctions["silence"]["lifted_by"] == ctx.pseudonym(history.instructor.id)
    assert sanctions["warning"]["ends_at"] is None
    assert sanctions["warning"]["by"] == ctx.pseudonym(history.mentor.id)
    assert sanctions["warning"]["reason"] == REASON

    notices = section["notices"]
    stored = await Notice.filter(user_id=history.ali.id)
    assert len(notices) == len(stored) > 0
    assert {n["log_index"] for n in notices} == {n.entry_seq for n in stored}
    hide_notice = next(n for n in notices if n["log_index"] == about["hide"].seq)
    assert hide_notice["shown_on_standing_page_from"] == log.timestamp(about["hide"].created_at)
    assert hide_notice["rule"]["code"] == "R1"
    assert hide_notice["appeal_until"] is not None
    for notice in notices:
        delivery = notice["notification"]
        assert delivery is not None, notice
        assert delivery["delivered_at"] and delivery["read_at"]
        assert delivery["read_at"] >= delivery["delivered_at"]

    (appeal,) = section["appeals"]
    assert appeal["appealed_log_index"] == about["hide"].seq
    assert appeal["status"] == "overturned"
    assert appeal["decided_at"] == log.timestamp(about["decide"].created_at)
    assert appeal["decided_by"] == ctx.pseudonym(history.instructor.id)
    assert appeal["decision_log_index"] == about["decide"].seq
    assert appeal["text"].startswith("I was quoting")


async def test_a_notice_not_yet_delivered_says_so(history: History) -> None:
    await actions.sanction_user(
        history.course,
        history.ali,
        "warning",
        rule_code="R2",
        reason="Posted the same question twice.",
        acting_user=history.mentor,
    )
    await drain_jobs()
    # As if the outbox had not delivered the newest notification yet.
    newest = await Notification.filter(user_id=history.ali.id).order_by("-id").first()
    assert newest is not None and "warning" in newest.message
    await newest.delete()
    result, _ = await export_of(history.ali)
    undelivered = [n for n in result["moderation"]["notices"] if n["notification"] is None]
    assert [n["reason"] for n in undelivered] == ["Posted the same question twice."]


async def test_notifications_pair_with_notices_even_when_events_do_not_name_them(
    history: History,
) -> None:
    await core_actions.mark_notifications_read(history.ali, acting_user=history.ali)
    await actions.sanction_user(
        history.course,
        history.ali,
        "warning",
        rule_code="R2",
        reason="Posted the same question twice.",
        acting_user=history.mentor,
    )
    await drain_jobs()

    def warnings(result: dict[str, Any]) -> list[dict[str, Any]]:
        notices = result["moderation"]["notices"]
        return [n for n in notices if n["act"] == Act.WARN_USER.value]

    before, _ = await export_of(history.ali)
    first, second = warnings(before)
    assert first["summary"] == second["summary"]
    assert first["notification"]["read_at"] is not None
    assert second["notification"]["read_at"] is None
    # Events written before they carried the notice id: only the message ties them together.
    stripped = 0
    for event in await OutboxEvent.filter(kind="core.notify"):
        if event.payload.get("user_id") == history.ali.id and "notice_id" in event.payload:
            payload = {k: v for k, v in event.payload.items() if k != "notice_id"}
            stripped += await OutboxEvent.filter(id=event.id).update(payload=payload)
    assert stripped == len(before["moderation"]["notices"])
    after, _ = await export_of(history.ali)
    assert after["moderation"]["notices"] == before["moderation"]["notices"]
    assert warnings(after) == [first, second]


async def test_flags_filed_and_flags_on_my_content_never_reveal_the_flagger(
    history: History,
) -> None:
    result, _ = await export_of(history.ali)
    section = result["moderation"]
    (filed,) = section["flags_filed"]
    assert filed["post_id"] == history.bo_post.id
    assert filed["category"] == "spam"
    assert filed["status"] == "resolved"
    assert filed["resolved_at"] == log.timestamp(history.about_ali["dismiss"].created_at)
    assert filed["outcome"] == "no action was taken (A fair offer, not spam.)"
    assert filed["resolution_log_index"] == history.about_ali["dismiss"].seq

    (on_mine,) = section["flags_on_my_content"]
    assert on_mine["post_id"] == history.post.id
    assert on_mine["resolved_at"] == log.timestamp(history.about_ali["hide"].created_at)
    assert on_mine["outcome"].startswith("the post was hidden")
    assert set(on_mine) == {
        "course",
        "post_id",
        "thread",
        "category",
        "flagged_at",
        "status",
        "resolved_at",
        "outcome",
        "resolution_log_index",
    }


async def test_a_moderators_export_has_their_acts_with_people_pseudonymized(
    history: History,
) -> None:
    result, ctx = await export_of(history.mentor)
    entries = result["moderation"]["log_entries"]
    made = await LogEntry.filter(actor_id=history.mentor.id).order_by("seq")
    own_role = await LogEntry.get(act=Act.CHANGE_ROLE.value, target_id=history.mentor.id)
    assert [e["index"] for e in entries] == sorted([m.seq for m in made] + [own_role.seq])
    warn_lea = next(e for e in entries if e["target"]["id"] == history.lea.id)
    assert warn_lea["target"]["description"] == ctx.pseudonym(history.lea.id)
    assert warn_lea["actor"] == "you"
    assert result["moderation"]["sanctions"] == []
    assert_names_absent(result, [history.instructor, history.ali, history.lea, history.bo])
    # The anonymous post the mentor removed is described without its author.
    removal = next(e for e in entries if e["act"] == Act.REMOVE_POST.value)
    assert removal["target"]["description"] == (
        f"post #{history.lea_anonymous.id} in the thread “Is lying ever right?”"
    )
    for entry in entries:
        verify_entry(entry, result["moderation"]["tree_head"])


async def test_someone_without_history_gets_empty_lists(history: History) -> None:
    outsider = await person("nobodyhere", "Nobody Here")
    result, _ = await export_of(outsider)
    section = result["moderation"]
    assert section["tree_head"] is None
    for key in ("log_entries", "sanctions", "notices", "appeals", "flags_filed"):
        assert section[key] == []
    assert section["flags_on_my_content"] == []


async def test_a_rewritten_log_is_reported_and_its_proofs_fail(history: History) -> None:
    connection = get_connection("default")
    await triggers.remove(connection)
    try:
        target = await LogEntry.get(seq=history.about_ali["warn"].seq)
        target.reason = "Nothing happened here."
        target.canonical = log.canonical_entry(target)
        target.leaf_hash = log.entry_leaf_hash(target.canonical).hex()
        await LogEntry.filter(id=target.id).update(
            reason=target.reason, canonical=target.canonical, leaf_hash=target.leaf_hash
        )
    finally:
        await triggers.install(connection)
    result, _ = await export_of(history.ali)
    section = result["moderation"]
    assert section["log_problems"] == ["the stored entries no longer hash to the signed root"]
    rewritten = next(e for e in section["log_entries"] if e["index"] == target.seq)
    with pytest.raises(merkle.ProofError):
        verify_entry(rewritten, section["tree_head"])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 31, 32, 33, 100])
def test_audit_paths_match_the_reference_proofs(size: int) -> None:
    rng = random.Random(size)
    leaves = [merkle.leaf_hash(rng.randbytes(12)) for _ in range(size)]
    levels = export.tree_levels(leaves)
    assert levels[-1] == [merkle.root_from_leaf_hashes(leaves)]
    for index in range(size):
        path = export.audit_path(levels, index)
        assert path == merkle.inclusion_proof(leaves, index, size)
        merkle.verify_inclusion(leaves[index], index, size, path, levels[-1][0])
