"""The public moderation log: pages, labels, filters, feed, CSV, stats and the proof API."""

from __future__ import annotations

import base64
import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette
from tortoise.transactions import in_transaction

from core.models import Course, Role
from core.timeutil import utcnow
from forum.models import Post
from moderation import actions, log, merkle
from moderation.models import Act, LogEntry, Notice, SanctionKind
from moderation.public import CSV_COLUMNS
from tests.conftest import csrf_token
from tests.factories import add_member, log_in, make_reply, make_user
from tests.moderation.test_log import REASON, World, build_log, make_world

ATOM = "{http://www.w3.org/2005/Atom}"
ENTRY_ID = re.compile(r'id="entry-(\d+)"')


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@pytest.fixture
async def browser(app: Starlette) -> AsyncIterator[object]:
    """Makes more clients on the same app, each logged in as someone (or nobody)."""
    opened: list[httpx.AsyncClient] = []

    async def make(username: str | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000 + len(opened)))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        opened.append(client)
        if username is not None:
            response = await log_in(client, username)
            assert response.status_code in (302, 303), response.text
        return client

    yield make
    for client in opened:
        await client.aclose()


def shown_seqs(html: str) -> list[int]:
    return [int(n) for n in ENTRY_ID.findall(html)]


async def named_world(posts: int = 3, *, anonymous: bool = False) -> World:
    world = await make_world(posts, anonymous=anonymous)
    return world


# --- who sees what ---------------------------------------------------------------------


async def test_logged_out_readers_see_roles_and_pseudonyms_not_names(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await named_world()
    await build_log(world, 4)
    response = await client.get(f"/courses/{world.course.slug}/moderation")
    assert response.status_code == 200
    html = response.text
    assert "Mentor 1" in html and "Instructor 1" in html
    assert "hide_post" in html and "unhide_post" in html and "warn_user" in html
    assert REASON in html
    for user in (world.mentor, world.instructor, world.learner):
        assert user.display_name not in html
        assert user.username not in html
    # Every entry is on the page with what the issue asks for.
    entries = await LogEntry.filter(course_id=world.course.id).order_by("-seq")
    assert shown_seqs(html) == [e.seq for e in entries]
    hide = next(e for e in entries if e.act == Act.HIDE_POST)
    assert log.timestamp(hide.created_at) in html  # UTC to the microsecond
    assert f"post #{hide.target_id}" in html
    assert f"/courses/{world.course.slug}/threads/{world.thread.id}#post-{hide.target_id}" in html
    assert "R1</strong>: Be respectful" in html  # the rule's code and its text
    assert "visible → hidden" in html
    assert hide.leaf_hash[:16] in html
    assert f"/api/v1/log/proof/inclusion?seq={hide.seq}" in html
    unhide = next(e for e in entries if e.act == Act.UNHIDE_POST)
    assert f"?seq={unhide.reverses_seq}#entry-{unhide.reverses_seq}" in html
    assert "manual" in html


async def test_members_see_display_names(app: Starlette, browser: object) -> None:
    world = await named_world()
    await build_log(world, 3)
    learner = await browser(world.learner.username)  # type: ignore[operator]
    html = (await learner.get(f"/courses/{world.course.slug}/moderation")).text
    assert world.mentor.display_name in html and world.instructor.display_name in html
    assert "Mentor 1" not in html
    outsider = await make_user("outsider_olga", display_name="Olga Outsider")
    stranger = await browser(outsider.username)  # type: ignore[operator]
    html = (await stranger.get(f"/courses/{world.course.slug}/moderation")).text
    assert "Mentor 1" in html and world.mentor.display_name not in html


async def test_instructors_may_show_moderator_names_to_everyone(
    app: Starlette, client: httpx.AsyncClient, browser: object
) -> None:
    world = await named_world()
    await build_log(world, 2)
    url = f"/courses/{world.course.slug}/moderation"
    assert world.mentor.display_name not in (await client.get(url)).text
    instructor = await browser(world.instructor.username)  # type: ignore[operator]
    token = await csrf_token(instructor, f"/courses/{world.course.slug}")
    response = await instructor.post(
        f"/courses/{world.course.slug}/staff/settings",
        data={"csrf_token": token, "public_moderator_names": "on"},
    )
    assert response.status_code == 303
    html = (await client.get(url)).text
    assert world.mentor.display_name in html and "Mentor 1" not in html
    # Affected learners stay "user #N" for the public; only moderators are named.
    assert world.learner.display_name not in html
    learner = await browser(world.learner.username)  # type: ignore[operator]
    token = await csrf_token(learner, f"/courses/{world.course.slug}")
    refused = await learner.post(
        f"/courses/{world.course.slug}/staff/settings",
        data={"csrf_token": token},
    )
    assert refused.status_code == 403
    assert (await Course.get(id=world.course.id)).public_moderator_names is True


async def test_pseudonyms_follow_first_appearance_and_stay_stable(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await named_world(4)
    second = await make_user("second_mentor", display_name="Sam Second")
    await add_member(world.course, second, Role.MENTOR)
    posts = [await Post.get(id=p.id) for p in world.posts]
    await actions.hide_post(posts[0], rule_code="R1", reason=REASON, acting_user=world.mentor)
    await actions.hide_post(posts[1], rule_code="R2", reason=REASON, acting_user=second)
    slug = world.course.slug

    async def labels() -> dict[int, str]:
        data = (await client.get(f"/api/v1/courses/{slug}/moderation")).json()
        return {e["seq"]: e["actor"] for e in data["entries"] if e["act"] == "hide_post"}

    first = await labels()
    assert sorted(first.values()) == ["Mentor 1", "Mentor 2"]
    seq_by_mentor = {label: seq for seq, label in first.items()}
    assert seq_by_mentor["Mentor 1"] < seq_by_mentor["Mentor 2"]
    await actions.hide_post(posts[2], rule_code="R1", reason=REASON, acting_user=second)
    later = await labels()
    assert {seq: later[seq] for seq in first} == first
    assert list(later.values()).count("Mentor 2") == 2


async def test_system_acts_are_labelled_system(app: Starlette, client: httpx.AsyncClient) -> None:
    world = await named_world(1)
    await actions.sanction_user(
        world.course,
        world.learner,
        SanctionKind.SILENCE,
        rule_code="R3",
        reason="Automatic: too many posts in one minute.",
        days=0.01,
        acting_user=None,
        source=actions.Source.AUTOMATIC,
    )
    data = (await client.get(f"/api/v1/courses/{world.course.slug}/moderation")).json()
    silence = next(e for e in data["entries"] if e["act"] == "silence_user")
    assert (silence["actor"], silence["actor_role"], silence["source"]) == (
        "System",
        "system",
        "automatic",
    )
    assert silence["duration_seconds"] == 864 and silence["duration"] == "14 minutes, 24 seconds"
    assert silence["target"] == f"user #{world.learner.id}"


async def test_an_anonymous_authors_identity_never_appears(
    app: Starlette, client: httpx.AsyncClient, browser: object
) -> None:
    world = await named_world(2)
    author = await make_user("hidden_hanna", display_name="Hanna Hidden")
    await add_member(world.course, author)
    post = await make_reply(world.thread, author, anonymous=True)
    entry = await actions.hide_post(post, rule_code="R1", reason=REASON, acting_user=world.mentor)
    slug = world.course.slug
    classmate = await browser(world.learner.username)  # type: ignore[operator]
    for reader in (client, classmate):
        texts = {
            "page": (await reader.get(f"/courses/{slug}/moderation")).text,
            "filtered page": (await reader.get(f"/courses/{slug}/moderation?act=hide_post")).text,
            "feed": (await reader.get(f"/courses/{slug}/moderation.atom")).text,
            "course json": (await reader.get(f"/api/v1/courses/{slug}/moderation")).text,
            "entries json": (await reader.get("/api/v1/log/entries?limit=1000")).text,
            "proof": (await reader.get(f"/api/v1/log/proof/inclusion?seq={entry.seq}")).text,
        }
        for where, text in texts.items():
            assert "Hanna" not in text and "hidden_hanna" not in text, where
        data = (await reader.get(f"/api/v1/courses/{slug}/moderation?act=hide_post")).json()
        [shown] = [e for e in data["entries"] if e["seq"] == entry.seq]
        assert shown["target"] == f"post #{post.id}"
        assert author.id not in {shown["target_id"]} - {post.id}
        assert f"user #{author.id}" not in str(shown)
        assert "author" not in shown
    # The stored entry itself names only the post, never its author.
    stored = await LogEntry.get(seq=entry.seq)
    assert (stored.target_type, stored.target_id) == ("post", post.id)
    assert stored.actor_id == world.mentor.id
    assert "hidden_hanna" not in stored.canonical and f'"actor_id":{author.id},' not in (
        stored.canonical
    )
    # A reader who is a learner does not get CSV at all.
    assert (await classmate.get(f"/courses/{slug}/staff/moderation.csv")).status_code == 403


# --- filters and paging ----------------------------------------------------------------


async def test_filters_narrow_the_entries(app: Starlette, client: httpx.AsyncClient) -> None:
    world = await named_world()
    await build_log(world, 6)
    slug = world.course.slug
    entries = await LogEntry.filter(course_id=world.course.id).order_by("-seq")

    async def seqs(query: str) -> list[int]:
        response = await client.get(f"/courses/{slug}/moderation?{query}")
        assert response.status_code == 200, response.text
        api = await client.get(f"/api/v1/courses/{slug}/moderation?{query}")
        assert api.status_code == 200, api.text
        found = shown_seqs(response.text)
        assert [e["seq"] for e in api.json()["entries"]] == found
        return found

    def expect(predicate: object) -> list[int]:
        return [e.seq for e in entries if predicate(e)]  # type: ignore[operator]

    assert await seqs("act=warn_user") == expect(lambda e: e.act == "warn_user") != []
    assert await seqs("actor=mentor-1") == expect(lambda e: e.actor_id == world.mentor.id) != []
    assert await seqs("actor=Mentor+1") == expect(lambda e: e.actor_id == world.mentor.id)
    assert await seqs("role=instructor") == expect(lambda e: e.actor_role == "instructor") != []
    assert await seqs("rule=R2") == expect(lambda e: e.rule_code == "R2") != []
    assert await seqs("target_type=post") == expect(lambda e: e.target_type == "post") != []
    assert await seqs("act=hide_post&actor=mentor-1") == expect(
        lambda e: e.act == "hide_post" and e.actor_id == world.mentor.id
    )
    today = utcnow().date()
    assert await seqs(f"from={today}&to={today}") == [e.seq for e in entries]
    assert await seqs(f"from={today + timedelta(days=1)}") == []
    assert await seqs(f"to={today - timedelta(days=1)}") == []


async def test_bad_filters_are_explained_not_a_server_error(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await named_world(1)
    await build_log(world, 1)
    slug = world.course.slug
    for query, field in (
        ("act=explode", "act"),
        ("actor=Mentor+9", "actor"),
        ("from=2026-13-45", "from"),
        ("to=9999-12-31", "to"),
        ("from=20260101", "from"),
        ("before=soon", "before"),
        ("rule=%00", "rule"),
        ("target_type=x%27;drop", "target_type"),
        ("seq=99999999999999999999999", "seq"),
        ("from=2026-02-02&to=2026-02-01", "to"),
    ):
        page = await client.get(f"/courses/{slug}/moderation?{query}")
        assert page.status_code == 422, query
        assert "could not be used" in page.text
        api = await client.get(f"/api/v1/courses/{slug}/moderation?{query}")
        assert api.status_code == 422, query
        assert field in api.json()["error"]["fields"], (query, api.json())
        feed = await client.get(f"/courses/{slug}/moderation.atom?{query}")
        assert feed.status_code == 422, query
    assert (await client.get("/api/v1/courses/nope/moderation")).status_code == 404
    assert (await client.get("/courses/nope/moderation")).status_code == 404


async def test_paging_is_newest_first_fifty_at_a_time(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await named_world(2)
    await build_log(world, 52)
    slug = world.course.slug
    all_seqs = [e.seq for e in await LogEntry.filter(course_id=world.course.id).order_by("-seq")]
    assert len(all_seqs) > 52
    first = await client.get(f"/courses/{slug}/moderation")
    assert shown_seqs(first.text) == all_seqs[:50]
    older = re.search(r'href="(/courses/[^"]+\?before=(\d+))"', first.text)
    assert older and int(older.group(2)) == all_seqs[49]
    second = await client.get(older.group(1))
    assert shown_seqs(second.text) == all_seqs[50:100]
    newer = re.search(r'href="(/courses/[^"]+\?after=(\d+))"', second.text)
    assert newer is not None
    back = await client.get(newer.group(1))
    assert shown_seqs(back.text) == all_seqs[:50]
    # ?seq=N (the links other pages use) shows the page that starts at N, marked.
    target = all_seqs[10]
    jump = await client.get(f"/courses/{slug}/moderation?seq={target}")
    assert shown_seqs(jump.text)[0] == target
    assert f'log-entry highlighted" id="entry-{target}"' in jump.text
    # htmx asks for the results block only.
    fragment = await client.get(
        f"/courses/{slug}/moderation?act=warn_user", headers={"HX-Request": "true"}
    )
    assert fragment.text.lstrip().startswith('<div id="log-results">')
    assert "<html" not in fragment.text
    assert set(shown_seqs(fragment.text)) == {
        e.seq for e in await LogEntry.filter(course_id=world.course.id, act="warn_user")
    }
    # The JSON log pages the same way.
    api = (await client.get(f"/api/v1/courses/{slug}/moderation?limit=3")).json()
    assert [e["seq"] for e in api["entries"]] == all_seqs[:3] and api["older"] == all_seqs[2]
    api = await client.get(f"/api/v1/courses/{slug}/moderation?limit=3&before={api['older']}")
    assert [e["seq"] for e in api.json()["entries"]] == all_seqs[3:6]


async def test_the_site_wide_log_lists_only_acts_outside_courses(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await named_world(1)
    await build_log(world, 1)
    admin = await make_user("site_admin", display_name="Ada Admin", is_admin=True)
    async with in_transaction():
        site_entry = await log.append(
            course_id=None,
            actor_id=admin.id,
            actor_role="admin",
            act=Act.SUSPEND_USER.value,
            target_type="user",
            target_id=world.learner.id,
            reason="Spam across every course on the site.",
        )
    html = (await client.get("/moderation")).text
    assert shown_seqs(html) == [site_entry.seq]
    assert "Admin 1" in html and "Ada Admin" not in html
    assert "Spam across every course" in html
    course_html = (await client.get(f"/courses/{world.course.slug}/moderation")).text
    assert site_entry.seq not in shown_seqs(course_html)
    feed = ET.fromstring((await client.get("/moderation.atom")).content)
    assert len(feed.findall(f"{ATOM}entry")) == 1


# --- feed and CSV ----------------------------------------------------------------------


async def test_the_atom_feed_is_valid_and_lists_the_entries(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await named_world()
    await build_log(world, 4)
    response = await client.get(f"/courses/{world.course.slug}/moderation.atom")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(response.content)
    assert feed.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated"):
        assert (feed.findtext(f"{ATOM}{name}") or "").strip(), name
    assert feed.find(f"{ATOM}author/{ATOM}name") is not None
    entries = await LogEntry.filter(course_id=world.course.id).order_by("-seq")
    items = feed.findall(f"{ATOM}entry")
    assert len(items) == len(entries)
    ids = set()
    for item, entry in zip(items, entries, strict=True):
        for name in ("id", "title", "updated", "content"):
            assert (item.findtext(f"{ATOM}{name}") or "").strip(), name
        ids.add(item.findtext(f"{ATOM}id"))
        assert item.findtext(f"{ATOM}title", "").startswith(f"#{entry.seq} {entry.act}")
        assert item.findtext(f"{ATOM}updated") == log.timestamp(entry.created_at)
        assert entry.reason in item.findtext(f"{ATOM}content", "")
    assert len(ids) == len(items)
    assert feed.findtext(f"{ATOM}updated") == log.timestamp(entries[0].created_at)
    assert world.mentor.display_name not in response.text


async def test_a_reason_with_control_characters_still_makes_a_valid_feed(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await named_world(1)
    post = await Post.get(id=world.posts[0].id)
    await actions.hide_post(
        post, rule_code="R1", reason="Bell \x07 and <b>tags</b> & more.", acting_user=world.mentor
    )
    response = await client.get(f"/courses/{world.course.slug}/moderation.atom")
    feed = ET.fromstring(response.content)
    content = " ".join(i.findtext(f"{ATOM}content", "") for i in feed.findall(f"{ATOM}entry"))
    assert "<b>tags</b> & more." in content


async def test_instructors_export_csv_and_no_one_else(app: Starlette, browser: object) -> None:
    world = await named_world()
    await build_log(world, 4)
    url = f"/courses/{world.course.slug}/staff/moderation.csv"
    instructor = await browser(world.instructor.username)  # type: ignore[operator]
    response = await instructor.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    entries = await LogEntry.filter(course_id=world.course.id).order_by("seq")
    assert [int(r[0]) for r in rows[1:]] == [e.seq for e in entries]
    by_seq = {int(r[0]): dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows[1:]}
    hide = next(e for e in entries if e.act == "hide_post")
    row = by_seq[hide.seq]
    assert row["actor_name"] == world.mentor.display_name
    assert row["actor_pseudonym"] == "Mentor 1"
    assert row["reason"] == hide.reason and row["canonical"] == hide.canonical
    assert row["leaf_hash"] == hide.leaf_hash and row["rule_text"].startswith("Be respectful")
    assert row["created_at"] == log.timestamp(hide.created_at)
    mentor = await browser(world.mentor.username)  # type: ignore[operator]
    assert (await mentor.get(url)).status_code == 403
    learner = await browser(world.learner.username)  # type: ignore[operator]
    assert (await learner.get(url)).status_code == 403
    nobody = await browser()  # type: ignore[operator]
    assert (await nobody.get(url)).status_code in (302, 303)


async def test_csv_cells_that_look_like_formulas_are_neutralised(
    app: Starlette, browser: object
) -> None:
    world = await named_world(1)
    post = await Post.get(id=world.posts[0].id)
    await actions.hide_post(
        post, rule_code="R1", reason='=HYPERLINK("http://evil") clicked', acting_user=world.mentor
    )
    instructor = await browser(world.instructor.username)  # type: ignore[operator]
    text = (await instructor.get(f"/courses/{world.course.slug}/staff/moderation.csv")).text
    rows = list(csv.DictReader(io.StringIO(text)))
    hide = next(r for r in rows if r["act"] == "hide_post")
    assert hide["reason"] == '\'=HYPERLINK("http://evil") clicked'


# --- statistics ------------------------------------------------------------------------


async def test_instructors_see_statistics_with_an_svg_chart(
    app: Starlette, browser: object
) -> None:
    world = await named_world(3)
    flagger = await make_user("flagging_fiona", display_name="Fiona Flagger")
    await add_member(world.course, flagger)
    posts = [await Post.get(id=p.id) for p in world.posts]
    await actions.flag_post(posts[0], category="harassment", acting_user=flagger)
    await actions.flag_post(posts[1], category="spam", acting_user=flagger)
    hide = await actions.hide_post(
        posts[0], rule_code="R1", reason=REASON, acting_user=world.mentor
    )
    notice = await Notice.get(entry_seq=hide.seq)
    appeal = await actions.appeal(
        notice, text="It was a quote from the reading, not an insult.", acting_user=world.learner
    )
    await actions.decide_appeal(
        appeal,
        overturn=True,
        decision="Agreed: it quotes the reading.",
        acting_user=world.instructor,
    )
    url = f"/courses/{world.course.slug}/staff/moderation/stats"
    instructor = await browser(world.instructor.username)  # type: ignore[operator]
    response = await instructor.get(url)
    assert response.status_code == 200
    html = response.text
    assert "<svg" in html and "<rect" in html
    assert "style=" not in html  # the CSP forbids inline styles
    assert "Flags</dt><dd>2 (1 decided, 1 open)" in html
    assert "Appeals</dt><dd>1 (0 pending, 0 upheld, 1 overturned)" in html
    assert "Overturn rate</dt><dd>100%" in html
    assert "Median time from flag to decision</dt><dd>" in html
    assert "no decided flags yet" not in html
    assert f"{world.mentor.display_name} (mentor)" in html
    assert "<td>hide_post</td><td>1</td>" in html and "<td>decide_appeal</td><td>1</td>" in html
    assert "<td>R1</td>" in html
    mentor = await browser(world.mentor.username)  # type: ignore[operator]
    assert (await mentor.get(url)).status_code == 403


# --- the proof API ---------------------------------------------------------------------


async def test_the_proof_api_serves_proofs_that_verify(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/api/v1/log/head")).status_code == 404
    assert (await client.get("/api/v1/log/proof/inclusion?seq=0")).status_code == 404
    world = await named_world()
    await build_log(world, 5)
    head = (await client.get("/api/v1/log/head")).json()
    key = (await client.get("/api/v1/log/public-key")).json()
    assert key["public_key"] == head["public_key"] and key["algorithm"] == "ed25519"
    raw_key = base64.b64decode(key["public_key"])
    root = base64.b64decode(head["root"])
    size = head["size"]
    assert size == await LogEntry.all().count()
    assert log.verify_head_signature(
        raw_key, size, root, head["signed_at"], base64.b64decode(head["signature"])
    )
    page = (await client.get("/api/v1/log/entries?start=0&limit=1000")).json()
    assert page["tree_size"] == size and page["next_start"] is None
    leaves = []
    for position, entry in enumerate(page["entries"]):
        assert entry["seq"] == position
        leaf = merkle.leaf_hash(entry["canonical"].encode())
        assert entry["leaf_hash"] == leaf.hex()
        stored = await LogEntry.get(seq=position)
        assert entry["canonical"] == stored.canonical
        assert entry["reason"] == stored.reason and entry["act"] == stored.act
        leaves.append(leaf)
    assert merkle.root_from_leaf_hashes(leaves) == root
    for seq in range(size):
        proof = (await client.get(f"/api/v1/log/proof/inclusion?seq={seq}")).json()
        assert proof["size"] == size and proof["leaf_hash"] == leaves[seq].hex()
        assert base64.b64decode(proof["root"]) == root
        assert proof["head"]["signature"] == head["signature"]
        merkle.verify_inclusion(
            leaves[seq], seq, size, [base64.b64decode(p) for p in proof["proof"]], root
        )
    older = (await client.get("/api/v1/log/proof/inclusion?seq=1&size=3")).json()
    merkle.verify_inclusion(
        leaves[1],
        1,
        3,
        [base64.b64decode(p) for p in older["proof"]],
        merkle.root_from_leaf_hashes(leaves[:3]),
    )
    for first in range(1, size + 1):
        data = (await client.get(f"/api/v1/log/proof/consistency?first={first}")).json()
        first_root = merkle.root_from_leaf_hashes(leaves[:first])
        assert base64.b64decode(data["first_root"]) == first_root
        assert base64.b64decode(data["second_root"]) == root
        assert data["first_head"]["size"] == first
        merkle.verify_consistency(
            first, size, [base64.b64decode(p) for p in data["proof"]], first_root, root
        )
    # Paging through entries.
    first_two = (await client.get("/api/v1/log/entries?limit=2")).json()
    assert [e["seq"] for e in first_two["entries"]] == [0, 1] and first_two["next_start"] == 2
    rest = (await client.get("/api/v1/log/entries?start=2&limit=1000")).json()
    assert [e["seq"] for e in rest["entries"]] == list(range(2, size))


async def test_proofs_keep_up_as_the_log_grows(app: Starlette, client: httpx.AsyncClient) -> None:
    world = await named_world()
    await build_log(world, 4)
    before = (await client.get("/api/v1/log/head")).json()
    assert (await client.get("/api/v1/log/proof/inclusion?seq=1")).status_code == 200
    await build_log(world, 5)  # entries appended after this process read the log
    head = (await client.get("/api/v1/log/head")).json()
    size, root = head["size"], base64.b64decode(head["root"])
    assert size > before["size"]
    leaves = [bytes.fromhex(e.leaf_hash) for e in await LogEntry.all().order_by("seq")]
    for seq in (0, before["size"], size - 1):
        proof = (await client.get(f"/api/v1/log/proof/inclusion?seq={seq}")).json()
        assert proof["size"] == size and base64.b64decode(proof["root"]) == root
        merkle.verify_inclusion(
            leaves[seq], seq, size, [base64.b64decode(p) for p in proof["proof"]], root
        )
    old_root = base64.b64decode(before["root"])
    data = (await client.get(f"/api/v1/log/proof/consistency?first={before['size']}")).json()
    assert base64.b64decode(data["first_root"]) == old_root
    merkle.verify_consistency(
        before["size"], size, [base64.b64decode(p) for p in data["proof"]], old_root, root
    )


async def test_the_proof_api_refuses_bad_parameters_with_422(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await build_log(await named_world(1), 3)
    size = await LogEntry.all().count()
    cases = {
        "/api/v1/log/entries?limit=1001": "limit",
        "/api/v1/log/entries?limit=0": "limit",
        "/api/v1/log/entries?start=-1": "start",
        "/api/v1/log/entries?start=abc": "start",
        "/api/v1/log/entries?start=1e3": "start",
        "/api/v1/log/entries?start=" + "9" * 40: "start",
        "/api/v1/log/proof/inclusion": "seq",
        "/api/v1/log/proof/inclusion?seq=x": "seq",
        f"/api/v1/log/proof/inclusion?seq={size}": "seq",
        f"/api/v1/log/proof/inclusion?seq=0&size={size + 1}": "size",
        "/api/v1/log/proof/inclusion?seq=0&size=0": "size",
        "/api/v1/log/proof/inclusion?seq=%00": "seq",
        "/api/v1/log/proof/consistency": "first",
        "/api/v1/log/proof/consistency?first=0": "first",
        f"/api/v1/log/proof/consistency?first=2&second={size + 5}": "second",
        "/api/v1/log/proof/consistency?first=3&second=2": "first",
    }
    for url, field in cases.items():
        response = await client.get(url)
        assert response.status_code == 422, (url, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid" and field in error["fields"], (url, error)


async def test_the_log_api_is_in_the_openapi_document(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()
    for path in (
        "/api/v1/log/head",
        "/api/v1/log/entries",
        "/api/v1/log/proof/inclusion",
        "/api/v1/log/proof/consistency",
        "/api/v1/log/public-key",
        "/api/v1/courses/{slug}/moderation",
    ):
        operation = document["paths"][path]["get"]
        assert "security" not in operation, path  # public: no token needed
        assert "200" in operation["responses"], path
    schemas = document["components"]["schemas"]
    assert {"HeadOut", "EntriesOut", "InclusionOut", "ConsistencyOut", "CourseLogOut"} <= set(
        schemas
    )
