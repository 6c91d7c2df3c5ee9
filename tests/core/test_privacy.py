"""Privacy by default: headers, nothing loaded from elsewhere, minimal sign-up, the privacy page."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from starlette.applications import Starlette

from core.models import User
from tests.conftest import csrf_token
from tests.factories import (
    add_member,
    log_in,
    make_course,
    make_forum,
    make_thread,
    make_user,
)

pytestmark = pytest.mark.usefixtures("reused_password_hashes")


class _Resources(HTMLParser):
    """Every URL a page makes the browser fetch by itself, and every link with its rel."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "img":
            self.images += 1
        for name in ("src", "srcset", "poster", "data", "background"):
            if name in values:
                self.fetched.append(values[name])
        if tag == "link":
            self.fetched.append(values.get("href", ""))
        if tag == "a" and "href" in values:
            self.links.append((values["href"], values.get("rel", "")))


def _resources(html: str) -> _Resources:
    parser = _Resources()
    parser.feed(html)
    parser.close()
    return parser


def _is_same_origin(url: str) -> bool:
    return url.startswith("/") and not url.startswith(("//", "/\\"))


def _leaves_the_site(href: str) -> bool:
    return href.startswith(("//", "/\\")) or re.match(r"[a-z][a-z0-9+.-]*:", href, re.I) is not None


# --- headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/login", "/privacy", "/no/such/page", "/static/css/agora.css", "/api/v1/me"]
)
async def test_every_response_carries_the_privacy_headers(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    headers = response.headers
    csp = {
        part.split()[0]: part.split()[1:] for part in headers["content-security-policy"].split("; ")
    }
    assert csp["default-src"] == ["'self'"]
    for directive in ("script-src", "style-src", "img-src"):
        assert csp[directive] == ["'self'"], directive
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert headers["referrer-policy"] in {"same-origin", "no-referrer"}
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-dns-prefetch-control"] == "off"
    assert headers["cross-origin-resource-policy"] == "same-origin"
    policy = dict(item.strip().split("=", 1) for item in headers["permissions-policy"].split(","))
    for feature in ("camera", "microphone", "geolocation", "payment", "usb", "browsing-topics"):
        assert policy[feature] == "()", feature


async def test_a_refused_form_carries_the_headers_too(client: httpx.AsyncClient) -> None:
    await client.get("/login")
    refused = await client.post("/login", data={"username": "x", "password": "y"})
    assert refused.status_code == 403
    assert refused.headers["referrer-policy"] == "same-origin"
    assert "default-src 'self'" in refused.headers["content-security-policy"]


# --- nothing from elsewhere -----------------------------------------------------------------------

POST_BODY = (
    "Look: ![cat](https://images.example.net/cat.png)\n\n"
    "Source: [the paper](https://papers.example.org/cats?id=1) and <https://ok.example/>."
)


async def test_a_post_with_an_external_image_loads_nothing_from_elsewhere(
    client: httpx.AsyncClient,
) -> None:
    ann = await make_user("ann")
    course = await make_course(title="Cats")
    await add_member(course, ann)
    forum = await make_forum(course, title="General")
    thread = await make_thread(forum, ann, title="A cat picture", body=POST_BODY)
    await log_in(client, "ann")
    page = await client.get(f"/courses/{course.slug}/threads/{thread.id}")
    assert page.status_code == 200
    found = _resources(page.text)
    assert found.images == 0
    assert [url for url in found.fetched if not _is_same_origin(url)] == []
    assert re.search(
        r'<a href="https://images\.example\.net/cat\.png" class="external-image" '
        r'rel="nofollow ugc noopener noreferrer" target="_blank">'
        r"External image \u201ccat\u201d from images\.example\.net \(opens that site\)</a>",
        page.text,
    )
    outbound = [(href, rel) for href, rel in found.links if _leaves_the_site(href)]
    assert {href for href, _ in outbound} >= {
        "https://images.example.net/cat.png",
        "https://papers.example.org/cats?id=1",
        "https://ok.example/",
    }
    for href, rel in outbound:
        assert {"noopener", "noreferrer"} <= set(rel.split()), href


@pytest.mark.parametrize("path", ["/", "/login", "/signup", "/privacy"])
async def test_public_pages_fetch_only_from_this_site(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    found = _resources(page.text)
    assert found.fetched and all(_is_same_origin(url) for url in found.fetched), found.fetched
    assert 'href="/privacy"' in page.text  # the footer links the privacy page


async def test_account_pages_fetch_only_from_this_site(client: httpx.AsyncClient) -> None:
    await make_user("ann")
    await log_in(client, "ann")
    for path in ("/courses", "/me", "/me/profile", "/me/sessions", "/users/ann", "/privacy"):
        page = await client.get(path)
        assert page.status_code == 200, path
        fetched = _resources(page.text).fetched
        assert all(_is_same_origin(url) for url in fetched), (path, fetched)


# --- minimal sign-up ------------------------------------------------------------------------------


async def test_sign_up_asks_only_for_a_username_and_a_password(client: httpx.AsyncClient) -> None:
    page = await client.get("/signup")
    required = re.findall(r'<input id="f-(\w+)"[^>]* required', page.text)
    assert sorted(required) == ["password", "username"]
    form = page.text.split('action="/signup"')[1].split("</form>")[0]
    asked = set(re.findall(r'name="(\w+)"', form))
    assert asked == {"csrf_token", "next", "username", "password", "display_name", "email"}
    assert "Used only to send you the notifications you choose. Never shown to anyone." in page.text

    token = await csrf_token(client, "/signup")
    response = await client.post(
        "/signup",
        data={"username": "Quiet", "password": "a long enough secret", "csrf_token": token},
    )
    assert response.status_code == 303
    user = await User.get(username="quiet")
    assert (user.display_name, user.email) == ("quiet", None)


async def test_a_chosen_display_name_and_email_are_kept(client: httpx.AsyncClient) -> None:
    token = await csrf_token(client, "/signup")
    await client.post(
        "/signup",
        data={
            "username": "rae",
            "display_name": "  Rae  ",
            "email": "rae@example.org",
            "password": "a long enough secret",
            "csrf_token": token,
        },
    )
    user = await User.get(username="rae")
    assert (user.display_name, user.email) == ("Rae", "rae@example.org")


async def test_an_empty_display_name_is_never_the_problem(client: httpx.AsyncClient) -> None:
    token = await csrf_token(client, "/signup")
    for username in ("", "x" * 100):
        response = await client.post(
            "/signup",
            data={"username": username, "password": "a long enough secret", "csrf_token": token},
        )
        assert response.status_code == 422
        assert 'id="f-username-error"' in response.text
        assert 'id="f-display_name-error"' not in response.text
    assert await User.all().count() == 0


# --- the privacy page ---------------------------------------------------------------------------


async def test_privacy_page_states_the_real_settings(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    app.state.settings = app.state.settings.with_changes(
        session_idle_minutes=90,
        session_max_days=3,
        export_hours=12,
        smtp_url="smtps://mailer:secret@mail.example.org:465",
    )
    page = await client.get("/privacy")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.text)
    assert "ends after 90 minutes without use and always 3 days after it began" in text
    assert "download for 12 hours; then the file is deleted" in text
    assert "The mail server at mail.example.org" in text
    assert "secret" not in text and "mailer" not in text
    assert "kept forever" in text and "never names" in text
    assert "no analytics" in text


async def test_privacy_page_without_email_says_none_is_sent(client: httpx.AsyncClient) -> None:
    page = await client.get("/privacy")
    text = re.sub(r"\s+", " ", page.text)
    assert "ends after 7 days without use and always 30 days after it began" in text
    assert "not set up to send email" in text
    assert "mail server" not in text
