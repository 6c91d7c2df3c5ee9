"""The moderation pages through HTTP: forms with CSRF, errors in place, the right people only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette

from core.models import Course, Role, User
from core.timeutil import utcnow
from forum.models import Forum, Post, PostState, Thread
from moderation import actions
from moderation import presenters as moderation_presenters
from moderation.models import Appeal, AppealStatus, Flag, LogEntry, Notice, Rule, Sanction
from tests.conftest import CSRF_RE, drain_jobs
from tests.factories import (
    add_member,
    log_in,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

REASON = "Insults another learner by name."
APPEAL_TEXT = "I was quoting the reading, not calling anyone a fool."


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass
class Site:
    course: Course
    forum: Forum
    other_forum: Forum
    thread: Thread
    post: Post  # ali's reply
    anonymous_post: Post  # lea's reply, anonymous to classmates
    ines: User
    ivan: User
    mona: User
    ali: User
    lea: User
    otto: User
    browsers: dict[str, httpx.AsyncClient]

    def __getitem__(self, username: str) -> httpx.AsyncClient:
        return self.browsers[username]

    @property
    def moderate(self) -> str:
        return f"/courses/{self.course.slug}/moderate"


@pytest.fixture
async def site(app: Starlette) -> AsyncIterator[Site]:
    """A course with staff and learners, a thread, and one logged-in browser per person."""
    ines = await make_user("ines")
    course = await make_course(ines, title="Ethics")
    ivan, mona = await make_user("ivan"), await make_user("mona")
    ali, lea, otto = await make_user("ali"), await make_user("lea"), await make_user("otto")
    await add_member(course, ivan, Role.INSTRUCTOR)
    await add_member(course, mona, Role.MENTOR)
    await add_member(course, ali)
    await add_member(course, lea)
    forum = await make_forum(course, title="General")
    other_forum = await make_forum(course, title="Off topic")
    thread = await make_thread(forum, ali, title="Is lying ever right?")
    post = await make_reply(thread, ali, body="Only **fools** think so.")
    anonymous_post = await make_reply(thread, lea, body="Hidden name here.", anonymous=True)
    await drain_jobs()
    async with AsyncExitStack() as stack:
        browsers = {}
        for name in ("ines", "ivan", "mona", "ali", "lea", "otto", "nobody"):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            browser = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://testserver")
            )
            if name != "nobody":
                assert (await log_in(browser, name)).status_code == 303
            browsers[name] = browser
        yield Site(
            course,
            forum,
            other_forum,
            await Thread.get(id=thread.id),
            post,
            anonymous_post,
            ines,
            ivan,
            mona,
            ali,
            lea,
            otto,
            browsers,
        )


async def token(browser: httpx.AsyncClient) -> str:
    page = await browser.get("/login" if not browser.cookies.get("agora_session") else "/courses")
    match = CSRF_RE.search(page.text)
    assert match
    return match.group(1)


async def submit(
    browser: httpx.AsyncClient, url: str, data: dict[str, str], *, htmx: bool = False
) -> httpx.Response:
    csrf = await token(browser)
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf} if htmx else {}
    return await browser.post(url, data={**data, "csrf_token": csrf}, headers=headers)


def field_error(html: str, name: str) -> str:
    """The error shown next to field `name` (its own error paragraph), or ''."""
    match = re.search(rf'<p class="error" id="[\w-]*{name}-error">([^<]*)</p>', html)
    return match.group(1) if match else ""


async def state(post: Post) -> str:
    return PostState((await Post.get(id=post.id)).state).value


# ---------------------------------------------------------------- who may come in


async def test_moderate_pages_are_for_staff_only(site: Site) -> None:
    m = site.moderate
    pages = [
        f"{m}/posts/{site.post.id}/hide",
        f"{m}/posts/{site.post.id}/remove",
        f"{m}/threads/{site.thread.id}/lock",
        f"{m}/threads/{site.thread.id}/move",
        f"{m}/members/ali/sanction",
        f"{m}/flags",
        f"{m}/appeals",
    ]
    for page in pages:
        for who in ("ali", "otto"):
            response = await site[who].get(page)
            assert response.status_code == 403, (who, page)
            assert "staff only" in response.text
        assert (await site["nobody"].get(page)).status_code == 303
        assert (await site["mona"].get(page)).status_code == 200, page
    response = await submit(
        site["ali"], f"{m}/posts/{site.post.id}/hide", {"rule": "R1", "reason": REASON}
    )
    assert response.status_code == 403 and await state(site.post) == "visible"
    rules = f"/courses/{site.course.slug}/staff/rules"
    assert (await site["mona"].get(rules)).status_code == 403
    assert (await site["ines"].get(rules)).status_code == 200


# ---------------------------------------------------------------- acts on posts


async def test_hide_form_then_act(site: Site) -> None:
    url = f"{site.moderate}/posts/{site.post.id}/hide"
    page = await site["mona"].get(url)
    assert page.status_code == 200
    assert 'name="rule"' in page.text and '<option value="R1"' in page.text
    assert "Be respectful" in page.text and "Only fools think so." in page.text
    response = await submit(site["mona"], url, {"rule": "R1", "reason": REASON})
    assert response.status_code == 303
    assert response.headers["location"] == (
        f"/courses/{site.course.slug}/threads/{site.thread.id}#post-{site.post.id}"
    )
    assert await state(site.post) == "hidden"
    entry = await LogEntry.filter(act="hide_post").get()
    assert (entry.actor_id, entry.rule_code, entry.reason) == (site.mona.id, "R1", REASON)


async def test_a_rule_can_be_suggested_in_the_address(site: Site) -> None:
    page = await site["mona"].get(f"{site.moderate}/posts/{site.post.id}/remove?rule=R3")
    assert '<option value="R3" selected>' in page.text


async def test_act_errors_show_next_to_their_fields(site: Site) -> None:
    url = f"{site.moderate}/posts/{site.post.id}/remove"
    response = await submit(site["mona"], url, {"rule": "", "reason": "rude"})
    assert response.status_code == 422
    assert field_error(response.text, "rule") == "Choose one of the course&#39;s rules."
    assert "at least 10 characters" in field_error(response.text, "reason")
    assert 'aria-invalid="true"' in response.text and ">rude</textarea>" in response.text
    assert (
        await state(site.post) == "visible"
        and await LogEntry.filter(act="remove_post").count() == 0
    )


async def test_htmx_gets_the_form_block_or_a_redirect(site: Site) -> None:
    url = f"{site.moderate}/posts/{site.post.id}/hide"
    response = await submit(site["mona"], url, {"rule": "R1", "reason": ""}, htmx=True)
    assert response.status_code == 422
    assert response.text.lstrip().startswith('<form id="act-form"')
    assert "<html" not in response.text and field_error(response.text, "reason")
    response = await submit(site["mona"], url, {"rule": "R1", "reason": REASON}, htmx=True)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"].endswith(f"#post-{site.post.id}")
    assert await state(site.post) == "hidden"


async def test_wrong_state_and_rank_are_explained_in_place(site: Site) -> None:
    url = f"{site.moderate}/posts/{site.post.id}/unhide"
    response = await submit(site["mona"], url, {"rule": "R1", "reason": REASON})
    assert response.status_code == 409 and "This post is not hidden." in response.text
    ivan_post = await make_reply(site.thread, site.ivan, body="Instructor's word.")
    response = await submit(
        site["mona"], f"{site.moderate}/posts/{ivan_post.id}/hide", {"rule": "R1", "reason": REASON}
    )
    assert response.status_code == 403
    assert "lower role than yours" in response.text and 'id="act-form"' in response.text
    assert (await site["mona"].get(f"{site.moderate}/posts/999999/hide")).status_code == 404


async def test_unhide_and_restore_pages(site: Site) -> None:
    await actions.remove_post(site.post, rule_code="R1", reason=REASON, acting_user=site.ivan)
    response = await submit(
        site["mona"],
        f"{site.moderate}/posts/{site.post.id}/restore",
        {"rule": "R1", "reason": "It was a quotation after all."},
    )
    assert response.status_code == 303 and await state(site.post) == "visible"


# ---------------------------------------------------------------- threads


async def test_lock_and_move_a_thread(site: Site) -> None:
    base = f"{site.moderate}/threads/{site.thread.id}"
    response = await submit(site["mona"], f"{base}/lock", {"rule": "R2", "reason": REASON})
    assert response.status_code == 303
    assert response.headers["location"] == f"/courses/{site.course.slug}/threads/{site.thread.id}"
    assert (await Thread.get(id=site.thread.id)).is_locked
    page = await site["mona"].get(f"{base}/move")
    assert f'<option value="{site.other_forum.id}">Off topic</option>' in page.text
    response = await submit(
        site["mona"], f"{base}/move", {"forum": "nonsense", "rule": "R2", "reason": REASON}
    )
    assert response.status_code == 422 and field_error(response.text, "forum")
    response = await submit(
        site["mona"],
        f"{base}/move",
        {"forum": str(site.other_forum.id), "rule": "R2", "reason": REASON},
    )
    assert response.status_code == 303
    assert (await Thread.get(id=site.thread.id)).forum_id == site.other_forum.id  # type: ignore[attr-defined]
    response = await submit(site["mona"], f"{base}/pin", {"rule": "R2", "reason": "x"})
    assert response.status_code == 422 and field_error(response.text, "reason")


# ---------------------------------------------------------------- sanctions


async def test_sanction_and_lift(site: Site) -> None:
    url = f"{site.moderate}/members/ali/sanction"
    page = await site["mona"].get(url)
    assert page.status_code == 200 and 'value="suspension"' in page.text
    response = await submit(
        site["mona"], url, {"kind": "silence", "days": "abc", "rule": "R1", "reason": REASON}
    )
    assert response.status_code == 422 and "in days" in field_error(response.text, "days")
    response = await submit(
        site["mona"], url, {"kind": "exile", "days": "1", "rule": "R1", "reason": REASON}
    )
    assert response.status_code == 422 and "Choose a warning" in response.text
    response = await submit(
        site["mona"], url, {"kind": "silence", "days": "2", "rule": "R1", "reason": REASON}
    )
    assert response.status_code == 303 and response.headers["location"] == url + "?recorded=1"
    row = await Sanction.get(user_id=site.ali.id)
    assert row.kind == "silence"
    page = await site["mona"].get(url + "?recorded=1")
    assert "@ali has been told" in page.text and REASON in page.text
    lift = f"{site.moderate}/sanctions/{row.id}/lift"
    assert lift in page.text
    response = await submit(site["mona"], lift, {"rule": "R1", "reason": "Apologised publicly."})
    assert response.status_code == 303 and response.headers["location"] == url
    assert (await Sanction.get(id=row.id)).lifted_at is not None
    response = await submit(site["mona"], lift, {"rule": "R1", "reason": "Apologised publicly."})
    assert response.status_code == 409 and "already lifted" in response.text


async def test_a_mentor_cannot_sanction_an_instructor_and_is_told_why(site: Site) -> None:
    response = await submit(
        site["mona"],
        f"{site.moderate}/members/ivan/sanction",
        {"kind": "warning", "rule": "R1", "reason": REASON},
    )
    assert response.status_code == 403 and "lower role than yours" in response.text
    assert await Sanction.all().count() == 0
    assert (await site["mona"].get(f"{site.moderate}/members/otto/sanction")).status_code == 404


# ---------------------------------------------------------------- flags


async def test_flag_a_post_then_hide_it_from_the_queue(site: Site) -> None:
    url = f"/courses/{site.course.slug}/posts/{site.post.id}/flag"
    page = await site["lea"].get(url)
    assert page.status_code == 200 and 'value="harassment"' in page.text
    response = await submit(site["lea"], url, {"text": "Rude."})
    assert response.status_code == 422 and field_error(response.text, "category")
    response = await submit(site["lea"], url, {"category": "harassment", "text": "Calls us fools."})
    assert response.status_code == 200
    assert (
        "Thanks — a moderator will look at it; you'll be told the outcome"
        in response.text.replace("&#39;", "'")
    )
    flag = await Flag.get(post_id=site.post.id)

    queue = await site["mona"].get(f"{site.moderate}/flags")
    assert "Calls us fools." in queue.text and "Only fools think so." in queue.text
    assert "harassment" in queue.text and "@lea" in queue.text
    # The category points at its rule (R1, be respectful) already chosen.
    select = queue.text.split(f'id="flag-{flag.id}-rule"')[1].split("</select>")[0]
    assert '<option value="R1" selected>' in select
    decide = f"{site.moderate}/flags/{flag.id}"
    response = await submit(site["mona"], decide, {"act": "hide", "rule": "R1", "reason": ""})
    assert response.status_code == 422
    assert field_error(response.text, f"flag-{flag.id}-reason")
    response = await submit(site["mona"], decide, {"act": "hide", "rule": "R1", "reason": REASON})
    assert response.status_code == 303
    assert await state(site.post) == "hidden"
    entry = await LogEntry.get(act="hide_post")
    assert entry.source == "flag"
    assert (await Flag.get(id=flag.id)).resolution_seq == entry.seq
    after = await site["mona"].get(response.headers["location"])
    assert "The post is hidden" in after.text and "No open flags." in after.text


async def test_staff_see_anonymous_authors_in_the_queue_and_can_dismiss(site: Site) -> None:
    await actions.flag_post(site.anonymous_post, category="spam", acting_user=site.ali)
    flag = await Flag.get(post_id=site.anonymous_post.id)
    learner_view = await site["ali"].get(
        f"/courses/{site.course.slug}/posts/{site.anonymous_post.id}/flag"
    )
    assert "Anonymous learner" in learner_view.text and "@lea" not in learner_view.text
    queue = await site["mona"].get(f"{site.moderate}/flags")
    assert "Lea" in queue.text and "anonymous to classmates" in queue.text
    response = await submit(
        site["mona"],
        f"{site.moderate}/flags/{flag.id}",
        {"act": "dismiss", "rule": "R3", "reason": "Not spam, a real answer."},
        htmx=True,
    )
    assert response.status_code == 200 and "The flag is dismissed" in response.text
    assert response.text.lstrip().startswith('<div id="flag-queue">')
    assert (await Flag.get(id=flag.id)).resolved_at is not None
    assert await state(site.anonymous_post) == "visible"


async def test_flag_page_refusals(site: Site) -> None:
    own = await site["ali"].get(f"/courses/{site.course.slug}/posts/{site.post.id}/flag")
    assert own.status_code == 200
    response = await submit(
        site["ali"], f"/courses/{site.course.slug}/posts/{site.post.id}/flag", {"category": "spam"}
    )
    assert response.status_code == 422 and "your own post" in response.text
    outsider = await site["otto"].get(f"/courses/{site.course.slug}/posts/{site.post.id}/flag")
    assert outsider.status_code == 403
    missing = await site["lea"].get(f"/courses/{site.course.slug}/posts/999999/flag")
    assert missing.status_code == 404


@pytest.mark.parametrize("act", ["hide", "remove"])
async def test_the_flag_page_never_shows_a_moderated_text(site: Site, act: str) -> None:
    work = actions.hide_post if act == "hide" else actions.remove_post
    await work(site.post, rule_code="R1", reason=REASON, acting_user=site.mona)
    url = f"/courses/{site.course.slug}/posts/{site.post.id}/flag"
    for who in ("lea", "ali"):
        page = await site[who].get(url)
        assert page.status_code == 409 and "already acted on this post" in page.text
        assert "fools" not in page.text
        response = await submit(site[who], url, {"category": "spam"})
        assert response.status_code == 409
    assert await Flag.all().count() == 0


# ---------------------------------------------------------------- standing and appeals


async def test_standing_lists_the_notice_in_full(site: Site) -> None:
    entry = await actions.hide_post(site.post, rule_code="R1", reason=REASON, acting_user=site.mona)
    notice = await Notice.get(entry_seq=entry.seq)
    page = await site["ali"].get("/me/standing")
    assert page.status_code == 200
    text = page.text
    assert "Post hidden" in text and "hide_post" in text and "Ethics" in text
    assert entry.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") in text
    assert "R1: Be respectful" in text and REASON in text and "Only fools think so." in text
    assert f"/courses/{site.course.slug}/moderation?seq={entry.seq}" in text
    assert f"/me/notices/{notice.id}/appeal" in text and "You can appeal until" in text
    assert (await site["nobody"].get("/me/standing")).status_code == 303
    assert REASON not in (await site["lea"].get("/me/standing")).text


async def test_appeal_form(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = await actions.hide_post(site.post, rule_code="R1", reason=REASON, acting_user=site.mona)
    notice = await Notice.get(entry_seq=entry.seq)
    url = f"/me/notices/{notice.id}/appeal"
    assert (await site["lea"].get(url)).status_code == 404
    assert (await submit(site["lea"], url, {"text": APPEAL_TEXT})).status_code == 404
    page = await site["ali"].get(url)
    assert page.status_code == 200 and "Why should the decision change?" in page.text
    response = await submit(site["ali"], url, {"text": "Unfair."})
    assert response.status_code == 422 and "20 to 4,000" in field_error(response.text, "text")
    response = await submit(site["ali"], url, {"text": APPEAL_TEXT})
    assert response.status_code == 303
    assert response.headers["location"] == f"/me/standing#notice-{notice.id}"
    assert await Appeal.filter(entry_seq=entry.seq).count() == 1
    again = await site["ali"].get(url)
    assert "Appealed: pending" in again.text and "Send appeal" not in again.text
    response = await submit(site["ali"], url, {"text": APPEAL_TEXT})
    assert response.status_code == 409 and "already been appealed" in response.text
    standing = await site["ali"].get("/me/standing")
    assert "pending" in standing.text


async def test_a_closed_appeal_window_is_explained(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = await actions.hide_post(site.post, rule_code="R1", reason=REASON, acting_user=site.mona)
    notice = await Notice.get(entry_seq=entry.seq)
    later = utcnow() + timedelta(days=15)
    monkeypatch.setattr(actions, "utcnow", lambda: later)
    monkeypatch.setattr(moderation_presenters, "utcnow", lambda: later)
    url = f"/me/notices/{notice.id}/appeal"
    page = await site["ali"].get(url)
    assert "The appeal window closed on" in page.text and "Send appeal" not in page.text
    response = await submit(site["ali"], url, {"text": APPEAL_TEXT})
    assert response.status_code == 409 and "The appeal window closed on" in response.text
    assert await Appeal.all().count() == 0


async def test_appeal_queue_refuses_the_moderator_who_acted_and_lets_another_decide(
    site: Site,
) -> None:
    entry = await actions.hide_post(site.post, rule_code="R1", reason=REASON, acting_user=site.mona)
    notice = await Notice.get(entry_seq=entry.seq)
    row = await actions.appeal(notice, text=APPEAL_TEXT, acting_user=site.ali)
    queue = await site["mona"].get(f"{site.moderate}/appeals")
    assert APPEAL_TEXT in queue.text and REASON in queue.text and "You took this act" in queue.text
    url = f"{site.moderate}/appeals/{row.id}"
    response = await submit(
        site["mona"], url, {"outcome": "overturn", "decision": "I was wrong about it."}
    )
    assert response.status_code == 403
    assert "Someone other than the moderator who acted must decide." in response.text
    assert f'id="appeal-{row.id}"' in response.text
    response = await submit(site["ivan"], url, {"outcome": "", "decision": "Fine."})
    assert response.status_code == 422 and "Choose whether" in response.text
    response = await submit(
        site["ivan"],
        url,
        {"outcome": "overturn", "decision": "A quotation, not an insult."},
        htmx=True,
    )
    assert response.status_code == 200 and "The act is reversed" in response.text
    assert (await Appeal.get(id=row.id)).status == AppealStatus.OVERTURNED
    assert await state(site.post) == "visible"
    standing = await site["ali"].get("/me/standing")
    assert "overturned" in standing.text and "A quotation, not an insult." in standing.text


# ---------------------------------------------------------------- rules


async def test_instructors_keep_the_rules(site: Site) -> None:
    url = f"/courses/{site.course.slug}/staff/rules"
    page = await site["ines"].get(url)
    assert "R5" in page.text and "Protect privacy" in page.text
    response = await submit(site["ines"], url, {"op": "add", "code": "R6", "text": "No memes."})
    assert response.status_code == 200 and "Rule R6 added." in response.text
    response = await submit(site["ines"], url, {"op": "add", "code": "r6", "text": "Dup rule."})
    assert response.status_code == 422 and "already has a rule" in response.text
    response = await submit(site["ines"], url, {"op": "add", "code": "bad code!", "text": "x"})
    assert response.status_code == 422
    assert field_error(response.text, "code") and "Write the rule" in response.text
    r6 = await Rule.get(course_id=site.course.id, code="R6")
    response = await submit(
        site["ines"], url, {"op": "edit", "rule_id": str(r6.id), "text": "No memes, please."}
    )
    assert response.status_code == 200 and (await Rule.get(id=r6.id)).text == "No memes, please."
    response = await submit(site["ines"], url, {"op": "retire", "rule_id": str(r6.id)})
    assert (await Rule.get(id=r6.id)).retired
    hide = await site["mona"].get(f"{site.moderate}/posts/{site.post.id}/hide")
    assert 'value="R6"' not in hide.text
    response = await submit(site["ines"], url, {"op": "restore", "rule_id": str(r6.id)})
    assert not (await Rule.get(id=r6.id)).retired
    assert (
        await submit(site["ines"], url, {"op": "edit", "rule_id": "99999", "text": "Hi there"})
    ).status_code == 404
    response = await submit(site["mona"], url, {"op": "add", "code": "R7", "text": "Mentor rule."})
    assert response.status_code == 403 and not await Rule.filter(code="R7").exists()


# ---------------------------------------------------------------- links and robustness


async def test_thread_page_links_to_moderation_and_flagging(site: Site) -> None:
    thread_url = f"/courses/{site.course.slug}/threads/{site.thread.id}"
    staff = await site["mona"].get(thread_url)
    assert f"{site.moderate}/posts/{site.post.id}/hide" in staff.text
    assert f"{site.moderate}/posts/{site.post.id}/remove" in staff.text
    assert f"/posts/{site.post.id}/flag" not in staff.text
    learner = await site["lea"].get(thread_url)
    assert f"/courses/{site.course.slug}/posts/{site.post.id}/flag" in learner.text
    assert f"/posts/{site.anonymous_post.id}/flag" not in learner.text  # her own post
    assert "/moderate/" not in learner.text


HOSTILE = [
    "",
    " ",
    "0",
    "-1",
    "1e308",
    "nan",
    "inf",
    "9" * 40,
    "<script>",
    "R1\u202e",
    "\U0001f600" * 300,
    "x" * 30000,
]


async def test_nothing_answers_500(site: Site) -> None:
    flag = await actions.flag_post(site.post, category="spam", acting_user=site.lea)
    m = site.moderate
    forms: list[tuple[str, str, list[str]]] = [
        ("mona", f"{m}/posts/{site.post.id}/hide", ["rule", "reason"]),
        ("mona", f"{m}/threads/{site.thread.id}/move", ["forum", "rule", "reason"]),
        ("mona", f"{m}/members/ali/sanction", ["kind", "days", "rule", "reason"]),
        ("mona", f"{m}/flags/{flag.id}", ["act", "rule", "reason"]),
        ("lea", f"/courses/{site.course.slug}/posts/{site.post.id}/flag", ["category", "text"]),
        ("ines", f"/courses/{site.course.slug}/staff/rules", ["op", "rule_id", "code", "text"]),
    ]
    for who, url, names in forms:
        for value in HOSTILE:
            data = dict.fromkeys(names, value)
            if "kind" in data:
                data["kind"] = "silence"
            response = await submit(site[who], url, data)
            assert response.status_code < 500, (url, value, response.text[:300])
        nul = await submit(site[who], url, dict.fromkeys(names, "a\x00b"))
        assert nul.status_code == 422, url
    assert await LogEntry.filter(act__in=["hide_post", "move_thread", "silence_user"]).count() == 0
