"""A flag, a hide, an appeal and its overturn, all on the public record."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.test_forum import log_in
from tests.e2e.test_journey import new_page

pytestmark = pytest.mark.browser

PASSWORDS = {
    "ines": "teaching is fun 2026",
    "mona": "mona mentors well 1",
    "ali": "ali password 12345",
    "lea": "lea password 12345",
}
RUDE = "Only fools would believe the reading."
REASON = "Calls classmates fools; keep the discussion respectful."
APPEAL = "I was paraphrasing the author's own words, not insulting anyone here."
DECISION = "On a second read this quotes the reading; the post is fine."


async def join(page: Any, code: str, slug: str) -> None:
    await page.get_by_label("Invite code").fill(code)
    await page.get_by_role("button", name="Join").click()
    await page.wait_for_url(f"**/courses/{slug}")


def seqs(html: str) -> list[int]:
    return [int(n) for n in re.findall(r"/moderation\?seq=(\d+)", html)]


async def test_flag_hide_appeal_overturn_on_the_public_log(
    live_server: LiveServer, browser: Any
) -> None:
    live_server.agora(
        "users",
        "create",
        "ines",
        "--display-name",
        "Ines Instructor",
        "--instructor",
        "--password-stdin",
        stdin=PASSWORDS["ines"] + "\n",
    )
    for name in ("mona", "ali", "lea"):
        live_server.agora(
            "users",
            "create",
            name,
            "--display-name",
            name.title(),
            "--password-stdin",
            stdin=PASSWORDS[name] + "\n",
        )

    # The instructor opens a course with a forum and makes Mona a mentor.
    teacher = await new_page(browser, live_server.url)
    await log_in(teacher, "ines", PASSWORDS["ines"])
    await teacher.get_by_role("link", name="Create a course").click()
    await teacher.get_by_label("Title").fill("Moral Philosophy")
    await teacher.get_by_role("button", name="Create course").click()
    slug = "moral-philosophy"
    await teacher.wait_for_url(f"**/courses/{slug}")
    code = (await teacher.locator("#invite-code").inner_text()).strip()
    await teacher.goto(f"/courses/{slug}/staff/forums")
    await teacher.get_by_label("Title").last.fill("General")
    await teacher.get_by_role("button", name="Create forum").click()
    await teacher.get_by_text("Saved.").wait_for()
    await teacher.goto(f"/courses/{slug}/staff/members")
    await teacher.get_by_label("Username").fill("mona")
    await teacher.get_by_label("Role", exact=True).select_option("mentor")
    await teacher.get_by_role("button", name="Add").click()
    await teacher.get_by_role("cell", name="@mona", exact=True).wait_for()

    # Ali starts a discussion with a rude opening post.
    author = await new_page(browser, live_server.url)
    await log_in(author, "ali", PASSWORDS["ali"])
    await join(author, code, slug)
    await author.goto(f"/courses/{slug}/forums")
    await author.get_by_role("link", name="General").click()
    await author.get_by_role("link", name="Start a discussion").click()
    await author.get_by_label("Title").fill("Is lying ever right?")
    await author.get_by_label("Text").fill(RUDE)
    await author.get_by_role("button", name="Post").click()
    await author.get_by_role("heading", name="Is lying ever right?").wait_for()
    thread_url = author.url
    assert await author.locator(".post-opening").get_by_role("link", name="Flag").count() == 0

    # Lea flags it.
    flagger = await new_page(browser, live_server.url)
    await log_in(flagger, "lea", PASSWORDS["lea"])
    await join(flagger, code, slug)
    await flagger.goto(thread_url)
    await flagger.locator(".post-opening").get_by_role("link", name="Flag").click()
    await flagger.get_by_role("heading", name="Flag a post for the moderators").wait_for()
    await flagger.get_by_role("button", name="Send flag").click()
    await flagger.get_by_text("Choose a reason.").wait_for()  # answered in place
    await flagger.get_by_label("Harassment or disrespect").check()
    await flagger.get_by_label("Anything the moderators should know").fill("Calls us fools.")
    await flagger.get_by_role("button", name="Send flag").click()
    await flagger.get_by_text("Thanks — a moderator will look at it").wait_for()

    # Mona hides it from the flag queue; the flag's category already chose rule R1.
    mentor = await new_page(browser, live_server.url)
    await log_in(mentor, "mona", PASSWORDS["mona"])
    await mentor.goto(f"/courses/{slug}/moderate/flags")
    await mentor.get_by_text("Calls us fools.").wait_for()
    assert (await mentor.get_by_label("Rule").input_value()) == "R1"
    await mentor.get_by_role("button", name="Hide post").click()
    await mentor.get_by_text("Give a reason of at least 10 characters").wait_for()
    await mentor.get_by_label("Reason").fill(REASON)
    await mentor.get_by_role("button", name="Hide post").click()
    await mentor.get_by_text("The post is hidden").wait_for()
    await mentor.get_by_text("No open flags.").wait_for()

    # Others see a notice instead of the text.
    await flagger.goto(thread_url)
    await flagger.locator(".post-opening").get_by_text(REASON).wait_for()
    assert await flagger.get_by_text(RUDE).count() == 0

    # Ali reads the notice on the standing page and appeals.
    await author.goto("/me/standing")
    notice = author.locator("article.notice", has_text="Post hidden")
    await notice.get_by_text(REASON).wait_for()
    await notice.get_by_text("R1: Be respectful").wait_for()
    await notice.get_by_role("link", name="Appeal this decision").click()
    await author.get_by_label("Why should the decision change?").fill(APPEAL)
    await author.get_by_role("button", name="Send appeal").click()
    await author.wait_for_url("**/me/standing#notice-*")
    await author.get_by_text("Appealed: pending.").wait_for()

    # The mentor who acted may not decide; the instructor overturns.
    await mentor.goto(f"/courses/{slug}/moderate/appeals")
    await mentor.get_by_label("Overturn: reverse the act").check()
    await mentor.get_by_label("Decision, for the appellant").fill("I would rather undo it.")
    await mentor.get_by_role("button", name="Decide").click()
    await mentor.get_by_text("Someone other than the moderator who acted must decide.").wait_for()
    await teacher.goto(f"/courses/{slug}/moderate/appeals")
    await teacher.get_by_text(APPEAL).wait_for()
    await teacher.get_by_label("Overturn: reverse the act").check()
    await teacher.get_by_label("Decision, for the appellant").fill(DECISION)
    await teacher.get_by_role("button", name="Decide").click()
    await teacher.get_by_text("The act is reversed").wait_for()

    await flagger.goto(thread_url)
    await flagger.get_by_text(RUDE).wait_for()
    await author.goto("/me/standing")
    await author.get_by_text(DECISION).first.wait_for()
    found = []
    for title in ("Post hidden", "Appeal decided", "Post visible again"):
        card = author.locator("article.notice", has_text=title).first
        found.append(max(seqs(await card.inner_html())))
    hide_seq, decide_seq, unhide_seq = found
    assert hide_seq < decide_seq < unhide_seq

    # Anyone, logged out, finds all of it in the course's public log.
    visitor = await new_page(browser, live_server.url)
    response = await visitor.goto(f"/courses/{slug}/moderation")
    assert response is not None and response.status == 200, "no public log page yet"
    text = await visitor.locator("main").inner_text()
    for act in ("change_role", "hide_post", "decide_appeal", "unhide_post"):
        assert act in text or act.replace("_", " ") in text, act
    for seq, act in (
        (hide_seq, "hide_post"),
        (decide_seq, "decide_appeal"),
        (unhide_seq, "unhide_post"),
    ):
        entry = await visitor.goto(f"/courses/{slug}/moderation?seq={seq}")
        assert entry is not None and entry.status == 200
        shown = await visitor.locator(f"#entry-{seq}").inner_text()
        assert f"#{seq}" in shown and (act in shown or act.replace("_", " ") in shown), seq
        if act != "hide_post":  # the decision and the unhide both name what they reverse
            assert f"#{hide_seq}" in shown, seq
    assert REASON in text and DECISION in text

    for page in (teacher, author, flagger, mentor, visitor):
        assert page.js_errors == []
