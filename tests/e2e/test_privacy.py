"""No page makes the browser contact anything but this site, logged out or in."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.test_forum import log_in
from tests.e2e.test_journey import new_page

pytestmark = pytest.mark.browser

TEACHER_PASSWORD = "teaching privacy 2026"
LEARNER_PASSWORD = "quiet learner 12345"
IMAGE_URL = "https://images.example.net/cat.png"
POST = (
    f"Here is the cat: ![cat]({IMAGE_URL})\n\nMore in [the paper](https://papers.example.org/cats)."
)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def test_no_page_contacts_another_site(live_server: LiveServer, browser: Any) -> None:
    live_server.agora(
        "users",
        "create",
        "ines",
        "--display-name",
        "Ines Instructor",
        "--instructor",
        "--password-stdin",
        stdin=TEACHER_PASSWORD + "\n",
    )
    page = await new_page(browser, live_server.url)
    requests: list[str] = []
    page.context.on("request", lambda request: requests.append(request.url))

    async def visit(path: str) -> None:
        await page.goto(path)
        await page.wait_for_load_state("load")

    # Logged out: the public pages, and a private profile (answered like a missing page).
    for path in ("/", "/login", "/signup", "/privacy", "/moderation", "/users/ines"):
        await visit(path)

    # An instructor opens a course with a forum and posts an external image and a link.
    await log_in(page, "ines", TEACHER_PASSWORD)
    await page.get_by_role("link", name="Create a course").click()
    await page.get_by_label("Title").fill("Privacy Studies")
    await page.get_by_role("button", name="Create course").click()
    slug = "privacy-studies"
    await page.wait_for_url(f"**/courses/{slug}")
    code = (await page.locator("#invite-code").inner_text()).strip()
    await visit(f"/courses/{slug}/staff/forums")
    await page.get_by_label("Title").last.fill("General")
    await page.get_by_role("button", name="Create forum").click()
    await page.get_by_text("Saved.").wait_for()
    await visit(f"/courses/{slug}/forums")
    await page.get_by_role("link", name="General").click()
    await page.get_by_role("link", name="Start a discussion").click()
    await page.get_by_label("Title").fill("Cats on the internet")
    await page.get_by_label("Text").fill(POST)
    await page.get_by_role("button", name="Post").click()
    await page.get_by_role("heading", name="Cats on the internet").wait_for()
    thread_url = page.url
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url(live_server.url + "/")

    # A learner signs up with nothing but a username and a password, and joins.
    await visit("/signup")
    await page.get_by_label("Username").fill("lea")
    await page.get_by_label("Password").fill(LEARNER_PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await page.wait_for_url("**/courses")
    assert await page.locator(".whoami").inner_text() == "lea @lea"
    await page.get_by_label("Invite code").fill(code)
    await page.get_by_role("button", name="Join").click()
    await page.wait_for_url(f"**/courses/{slug}")

    await page.goto(thread_url)
    image_link = page.locator("a.external-image")
    assert await image_link.inner_text() == (
        "External image \u201ccat\u201d from images.example.net (opens that site)"
    )
    assert await image_link.get_attribute("href") == IMAGE_URL
    assert "noreferrer" in (await image_link.get_attribute("rel") or "").split()
    assert await page.locator(".user-content img").count() == 0

    # Her profile, with a link of her own, and the account pages.
    await visit("/me/profile")
    await page.get_by_label("About you").fill("I read about cats.\n\nAnd about privacy.")
    await page.get_by_label("Links").fill("https://lea.example/notes")
    await page.get_by_role("button", name="Save profile").click()
    await page.get_by_text("Saved.").wait_for()
    await visit("/users/lea")
    profile_link = page.get_by_role("link", name="lea.example/notes")
    assert "noreferrer" in (await profile_link.get_attribute("rel") or "").split()
    for path in (
        "/users/ines",
        "/me",
        "/me/sessions",
        "/notifications",
        "/me/standing",
        "/search?q=cat",
        f"/courses/{slug}/search?q=cat",
        f"/courses/{slug}/moderation",
        f"/courses/{slug}/assignments",
        f"/courses/{slug}/record/lea",
    ):
        await visit(path)
    await page.get_by_role("heading", name="Course record: lea").wait_for()

    own = _origin(live_server.url)
    elsewhere = sorted({url for url in requests if _origin(url) != own})
    assert elsewhere == [], f"requests to other sites: {elsewhere}"
    assert not any("images.example.net" in url for url in requests)
    assert len({urlsplit(url).path for url in requests}) >= 20
    assert page.js_errors == []
