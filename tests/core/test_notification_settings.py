"""The notification settings page: an optional email address and a choice per category."""

from __future__ import annotations

import re
from html import unescape

import httpx
import pytest

from core.models import User
from tests.conftest import csrf_token
from tests.factories import log_in, make_user

PAGE = "/me/notifications/settings"


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


def checked(html: str, name: str) -> str | None:
    """The value of the checked radio button of the group `name`, if any."""
    for tag in re.findall(r"<input[^>]*>", html):
        if f'name="{name}"' in tag and " checked" in tag:
            match = re.search(r'value="([^"]*)"', tag)
            return match.group(1) if match else None
    return None


def form(token: str, **values: str) -> dict[str, str]:
    defaults = {
        "email": "",
        "mode_forum": "daily",
        "mode_peer_review": "immediate",
        "mode_account": "immediate",
    }
    return {"csrf_token": token, **defaults, **values}


async def signed_in(client: httpx.AsyncClient, username: str = "lea") -> User:
    user = await make_user(username)
    await log_in(client, username)
    return user


async def test_the_page_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.get(PAGE)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={PAGE}"


async def test_the_page_shows_the_defaults_and_explains_the_address(
    client: httpx.AsyncClient,
) -> None:
    await signed_in(client)
    page = await client.get(PAGE)
    assert page.status_code == 200
    html = unescape(page.text)
    assert checked(html, "mode_forum") == "daily"
    assert checked(html, "mode_peer_review") == "immediate"
    assert checked(html, "mode_account") == "immediate"
    assert "used only to send you the notifications" in html.lower()
    assert "never shown to anyone" in html
    # Moderation notices are not a choice: no radio group, and the reason is given.
    assert 'name="mode_moderation"' not in html
    assert "no one is sanctioned without being told" in html
    assert "does not send email yet" in html  # this test site has no SMTP server


async def test_the_notifications_page_links_to_the_settings(client: httpx.AsyncClient) -> None:
    await signed_in(client)
    page = await client.get("/notifications")
    assert f'href="{PAGE}"' in page.text


async def test_saving_stores_the_address_and_the_choices(client: httpx.AsyncClient) -> None:
    user = await signed_in(client)
    token = await csrf_token(client, PAGE)
    response = await client.post(
        PAGE,
        data=form(
            token,
            email="  lea@example.org ",
            mode_forum="immediate",
            mode_peer_review="off",
            mode_account="daily",
            mode_moderation="off",
        ),
    )
    assert response.status_code == 303
    page = await client.get(response.headers["location"])
    assert "Your notification settings are saved." in page.text
    assert 'value="lea@example.org"' in page.text
    assert checked(page.text, "mode_forum") == "immediate"
    assert checked(page.text, "mode_peer_review") == "off"
    assert checked(page.text, "mode_account") == "daily"
    stored = await User.get(id=user.id)
    assert stored.email == "lea@example.org"
    assert stored.email_prefs == {"forum": "immediate", "peer_review": "off", "account": "daily"}

    # An empty address removes it: no email at all from then on.
    token = await csrf_token(client, PAGE)
    response = await client.post(PAGE, data=form(token, email=""))
    assert response.status_code == 303
    assert (await User.get(id=user.id)).email is None


async def test_a_bad_field_saves_nothing_and_keeps_what_was_typed(
    client: httpx.AsyncClient,
) -> None:
    user = await signed_in(client)
    token = await csrf_token(client, PAGE)
    response = await client.post(
        PAGE,
        data=form(token, email="lea at example", mode_forum="immediate", mode_account="weekly"),
    )
    assert response.status_code == 422
    html = unescape(response.text)
    assert "This does not look like an email address" in html
    assert "Choose immediately, daily digest or off." in html
    assert "nothing was saved" in html
    assert 'value="lea at example"' in html
    assert checked(html, "mode_forum") == "immediate"  # the good choice is still there
    assert checked(html, "mode_peer_review") == "immediate"
    stored = await User.get(id=user.id)
    assert stored.email is None and stored.email_prefs == {}


async def test_an_address_longer_than_an_address_can_be_is_refused(
    client: httpx.AsyncClient,
) -> None:
    await signed_in(client)
    token = await csrf_token(client, PAGE)
    long_address = "a" * 60 + "@" + "b" * 200 + ".org"
    response = await client.post(PAGE, data=form(token, email=long_address))
    assert response.status_code == 422
    assert "at most 254 characters" in response.text


async def test_saving_needs_the_csrf_token(client: httpx.AsyncClient) -> None:
    user = await signed_in(client)
    response = await client.post(PAGE, data=form("", email="lea@example.org"))
    assert response.status_code == 403
    assert (await User.get(id=user.id)).email is None
