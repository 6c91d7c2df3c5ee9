"""A newcomer signs up, logs in, joins a course with its invite code and sees it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.browser


async def new_page(browser: Any, base_url: str) -> Any:
    context = await browser.new_context(base_url=base_url)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: Any) -> None:
        # A form answered with 4xx is expected here; the browser logs each such response.
        expected = message.text.startswith(
            "Failed to load resource: the server responded with a status of 4"
        )
        if message.type == "error" and not expected:
            errors.append(message.text)

    page.on("console", on_console)
    page.js_errors = errors
    return page


async def test_sign_up_log_in_join_with_code(live_server: LiveServer, browser: Any) -> None:
    live_server.agora(
        "users",
        "create",
        "ada",
        "--display-name",
        "Ada Lovelace",
        "--instructor",
        "--password-stdin",
        stdin="analytical engine 1843\n",
    )

    teacher = await new_page(browser, live_server.url)
    await teacher.goto("/login")
    await teacher.get_by_label("Username").fill("ada")
    await teacher.get_by_label("Password").fill("analytical engine 1843")
    await teacher.get_by_role("button", name="Log in").click()
    await teacher.get_by_role("link", name="Create a course").click()
    await teacher.get_by_label("Title").fill("Poetical Science")
    await teacher.get_by_role("button", name="Create course").click()
    await teacher.wait_for_url("**/courses/poetical-science")
    code = (await teacher.locator("#invite-code").inner_text()).strip()
    assert len(code) == 10

    learner = await new_page(browser, live_server.url)
    await learner.goto("/signup")
    await learner.get_by_label("Username").fill("byron")
    await learner.get_by_label("Display name").fill("Lord Byron")
    await learner.get_by_label("Password").fill("short")
    await learner.get_by_role("button", name="Sign up").click()
    # The form comes back with the problem next to the field and the other values kept.
    await learner.get_by_text("Use at least 10 characters.").wait_for()
    assert await learner.get_by_label("Display name").input_value() == "Lord Byron"
    await learner.get_by_label("Password").fill("she walks in beauty")
    await learner.get_by_role("button", name="Sign up").click()
    await learner.wait_for_url("**/courses")

    await learner.get_by_role("button", name="Log out").click()
    await learner.goto("/login")
    await learner.get_by_label("Username").fill("byron")
    await learner.get_by_label("Password").fill("she walks in beauty")
    await learner.get_by_role("button", name="Log in").click()
    await learner.wait_for_url("**/courses")

    # A wrong code is answered in place (htmx) without leaving the page.
    await learner.get_by_label("Invite code").fill("WRONGCODE1")
    await learner.get_by_role("button", name="Join").click()
    await learner.get_by_text("No course has this invite code").wait_for()
    assert learner.url.endswith("/courses")

    await learner.get_by_label("Invite code").fill(code.lower())
    await learner.get_by_role("button", name="Join").click()
    await learner.wait_for_url("**/courses/poetical-science")
    await learner.get_by_role("heading", name="Poetical Science").wait_for()
    assert "You are learner in this course." in await learner.content()

    await learner.goto("/courses")
    await learner.get_by_role("link", name="Poetical Science").wait_for()
    assert teacher.js_errors == [] and learner.js_errors == []
