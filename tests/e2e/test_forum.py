"""A question is asked, answered, edited (with visible history) and an answer accepted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.test_journey import new_page

pytestmark = pytest.mark.browser


async def log_in(page: Any, username: str, password: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/courses")


async def test_question_answer_edit_history_accept(live_server: LiveServer, browser: Any) -> None:
    live_server.agora(
        "users",
        "create",
        "ines",
        "--display-name",
        "Ines Instructor",
        "--instructor",
        "--password-stdin",
        stdin="teaching is fun 2026\n",
    )
    for name in ("quinn", "rosa"):
        live_server.agora(
            "users",
            "create",
            name,
            "--display-name",
            name.title(),
            "--password-stdin",
            stdin=f"{name} password 12345\n",
        )

    teacher = await new_page(browser, live_server.url)
    await log_in(teacher, "ines", "teaching is fun 2026")
    await teacher.get_by_role("link", name="Create a course").click()
    await teacher.get_by_label("Title").fill("Orbital Mechanics")
    await teacher.get_by_role("button", name="Create course").click()
    code = (await teacher.locator("#invite-code").inner_text()).strip()
    await teacher.goto("/courses/orbital-mechanics/staff/forums")
    await teacher.get_by_label("Title").last.fill("Questions")
    await teacher.get_by_role("button", name="Create forum").click()
    await teacher.get_by_text("Saved.").wait_for()

    asker = await new_page(browser, live_server.url)
    await log_in(asker, "quinn", "quinn password 12345")
    await asker.get_by_label("Invite code").fill(code)
    await asker.get_by_role("button", name="Join").click()
    await asker.wait_for_url("**/courses/orbital-mechanics")
    await asker.get_by_role("link", name="Forums").click()
    await asker.get_by_role("link", name="Questions").click()
    await asker.get_by_role("link", name="Ask a question").click()
    await asker.get_by_label("Title").fill("What is a Hohmann transfer?")
    await asker.get_by_label("Text").fill("I keep reading about it but **why** two burns?")
    await asker.get_by_role("button", name="Post").click()
    await asker.get_by_role("heading", name="What is a Hohmann transfer?").wait_for()
    await asker.locator(".post-opening strong", has_text="why").wait_for()
    thread_url = asker.url

    helper = await new_page(browser, live_server.url)
    await log_in(helper, "rosa", "rosa password 12345")
    await helper.get_by_label("Invite code").fill(code)
    await helper.get_by_role("button", name="Join").click()
    await helper.wait_for_url("**/courses/orbital-mechanics")
    await helper.goto(thread_url)
    await helper.get_by_label("Text").fill("One burn to leave the low orbit, one to circularize.")
    await helper.get_by_role("button", name="Post answer").click()
    answer = helper.locator("article.post-answer")
    await answer.get_by_text("one to circularize").wait_for()

    # The answerer corrects the answer in place; the history keeps the old text.
    await answer.get_by_role("link", name="Edit").click()
    editor = helper.locator(".edit-form textarea")
    await editor.fill("One burn to leave the low orbit, one to circularize at the high orbit.")
    await helper.get_by_role("button", name="Save changes").click()
    await answer.get_by_text("at the high orbit").wait_for()
    await answer.get_by_role("link", name="History (1 edit)").click()
    await helper.get_by_role("heading", name="Edit history").wait_for()
    await helper.locator(".diff-del", has_text="one to circularize.").wait_for()
    await helper.locator(".diff-add", has_text="at the high orbit").wait_for()

    # The asker sees the answer marked new, accepts it, and the thread shows it accepted.
    await asker.goto(thread_url)
    answer_for_asker = asker.locator("article.post-answer")
    await answer_for_asker.locator(".tag-new").wait_for()
    await answer_for_asker.get_by_role("button", name="Accept answer").click()
    await asker.locator("article.post-answer.accepted").get_by_text("accepted answer").wait_for()
    await asker.goto(thread_url.rsplit("/threads/", 1)[0] + "/forums")
    await asker.get_by_role("link", name="Questions").click()
    await asker.get_by_text("answered", exact=True).wait_for()

    for page in (teacher, asker, helper):
        assert page.js_errors == []
