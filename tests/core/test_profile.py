"""Profiles (who may see them), the profile editor, the account hub and signed-in browsers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from core import profile
from core.errors import InvalidInput, NotFound, PermissionDenied
from core.models import AuthSession, User
from core.profile import describe_user_agent, parse_links
from core.timeutil import utcnow
from peer_review import actions as peer_review_actions
from tests.conftest import csrf_token, drain_jobs
from tests.factories import add_member, log_in, make_course, make_user

pytestmark = pytest.mark.usefixtures("reused_password_hashes")


async def _set_profile(user: User, **changes: object) -> None:
    await User.filter(id=user.id).update(**changes)


def _browser(app: Starlette, user_agent: str) -> httpx.AsyncClient:
    """Another browser, with its own cookies and User-Agent, talking to the same app."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50001)),
        base_url="http://testserver",
        headers={"user-agent": user_agent},
    )


# --- the profile update action --------------------------------------------------------------


async def test_update_profile_saves_every_field(db: object) -> None:
    ann = await make_user("ann")
    await profile.update_profile(
        ann,
        display_name="  Ann   the\u202e Reader ",
        about="\r\nHello.\r\n\r\nSecond paragraph.\n",
        links="https://ann.example/\n\n  http://blog.example/posts?x=1  \nhttps://ann.example/\n",
        public=True,
        acting_user=ann,
    )
    stored = await User.get(id=ann.id)
    assert stored.display_name == "Ann the Reader"
    assert stored.about == "Hello.\n\nSecond paragraph."
    assert stored.links == ["https://ann.example/", "http://blog.example/posts?x=1"]
    assert stored.profile_public is True


async def test_empty_display_name_falls_back_to_the_username(db: object) -> None:
    ann = await make_user("ann", display_name="Ann")
    await profile.update_profile(
        ann, display_name="   ", about="", links="", public=False, acting_user=ann
    )
    assert (await User.get(id=ann.id)).display_name == "ann"


async def test_bad_fields_are_all_reported_and_nothing_is_saved(db: object) -> None:
    ann = await make_user("ann", display_name="Ann")
    with pytest.raises(InvalidInput) as caught:
        await profile.update_profile(
            ann,
            display_name="x" * 81,
            about="y" * 2001,
            links="javascript:alert(1)",
            public=True,
            acting_user=ann,
        )
    assert set(caught.value.fields) == {"display_name", "about", "links"}
    assert "2,000" in caught.value.fields["about"]
    stored = await User.get(id=ann.id)
    assert (stored.display_name, stored.about, stored.links, stored.profile_public) == (
        "Ann",
        "",
        [],
        False,
    )


async def test_about_at_the_limit_is_accepted(db: object) -> None:
    ann = await make_user("ann")
    await profile.update_profile(
        ann, display_name="Ann", about="z" * 2000, links="", public=False, acting_user=ann
    )
    assert len((await User.get(id=ann.id)).about) == 2000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("javascript:alert(1)", "Line 1 must start with https:// or http://"),
        ("ftp://files.example/", "Line 1 must start with https:// or http://"),
        ("ann.example", "Line 1 must start with https:// or http://"),
        ("https://", "Line 1 must start with https:// or http://"),
        ("https://ok.example/\nhttps://a b.example/", "Line 2 contains a space"),
        ("https://bank.example@evil.example/", "must not contain a user name or password"),
        ("https://ok.example:99999/", "Line 1 is not a web address"),
        ("https://ok.example/" + "a" * 300, "Line 1 is longer than 300 characters"),
        ("\n".join(f"https://{n}.example/" for n in range(6)), "at most 5 links; there are 6"),
    ],
)
async def test_bad_links_are_named_by_line(text: str, expected: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_links(text)
    assert expected in caught.value.fields["links"]


def test_five_links_of_300_characters_are_accepted() -> None:
    links = [f"https://{n}.example/".ljust(300, "a") for n in range(5)]
    assert all(len(link) == 300 for link in links)
    assert parse_links("\n".join(links)) == links


async def test_only_the_owner_edits_a_profile(db: object) -> None:
    ann, bob = await make_user("ann"), await make_user("bob")
    with pytest.raises(PermissionDenied):
        await profile.update_profile(
            ann, display_name="Hacked", about="", links="", public=True, acting_user=bob
        )
    assert (await User.get(id=ann.id)).display_name == "Ann"


# --- who sees a profile ---------------------------------------------------------------------


async def _people_and_course() -> tuple[User, User, User]:
    """ann and bob share a course; cat shares none with ann."""
    ann, bob, cat = await make_user("ann"), await make_user("bob"), await make_user("cat")
    course = await make_course(title="Shared course")
    await add_member(course, ann)
    await add_member(course, bob)
    other = await make_course(title="Other course")
    await add_member(other, cat)
    await _set_profile(
        ann,
        display_name="Ann Reader",
        email="ann.secret@example.org",
        about="<script>alert(1)</script> & more\nsecond line\n\nNext paragraph.",
        links=["https://ann.example/blog"],
    )
    return ann, bob, cat


async def test_a_private_profile_is_shown_to_people_sharing_a_course(
    client: httpx.AsyncClient,
) -> None:
    await _people_and_course()
    await log_in(client, "bob")
    page = await client.get("/users/ann")
    assert page.status_code == 200
    assert "Ann Reader" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more<br>second line</p>" in page.text
    assert "<p>Next paragraph.</p>" in page.text
    assert "<script>alert(1)" not in page.text
    assert (
        '<a href="https://ann.example/blog" rel="nofollow ugc noopener noreferrer">'
        "ann.example/blog</a>" in page.text
    )
    assert "ann.secret@example.org" not in page.text


async def test_a_private_profile_looks_exactly_like_a_missing_account(
    client: httpx.AsyncClient,
) -> None:
    await _people_and_course()
    for who in (None, "cat"):
        if who:
            await log_in(client, who)
        # A notification landing between the two requests would change the header's count.
        await drain_jobs()
        private = await client.get("/users/ann")
        missing = await client.get("/users/nobody-here")
        assert private.status_code == missing.status_code == 404
        assert private.text == missing.text
        assert "Ann Reader" not in private.text


async def test_a_public_profile_is_shown_to_anyone_without_email(
    client: httpx.AsyncClient,
) -> None:
    ann, _, _ = await _people_and_course()
    await _set_profile(ann, profile_public=True)
    page = await client.get("/users/ann")
    assert page.status_code == 200
    assert "Ann Reader" in page.text and "Next paragraph." in page.text
    assert "ann.secret@example.org" not in page.text


async def test_a_deleted_account_shows_nothing(client: httpx.AsyncClient) -> None:
    ann, _, _ = await _people_and_course()
    await _set_profile(ann, profile_public=True, deleted_at=utcnow())
    await log_in(client, "bob")
    page = await client.get("/users/ann")
    assert page.status_code == 404
    assert "Ann Reader" not in page.text


async def test_odd_usernames_are_simply_not_found(client: httpx.AsyncClient) -> None:
    for name in ("x" * 500, "%00", "ann%2Fx", "ANN%20", "-ann"):
        response = await client.get(f"/users/{name}")
        assert response.status_code == 404, name


async def test_own_profile_says_who_can_see_it(client: httpx.AsyncClient) -> None:
    await _people_and_course()
    await log_in(client, "ann")
    page = await client.get("/users/ann")
    assert "visible only to people in your courses" in page.text
    assert 'href="/me/profile"' in page.text


async def test_a_course_record_shows_only_when_made_public(client: httpx.AsyncClient) -> None:
    ann, _, _ = await _people_and_course()
    course = await make_course(title="Graded course")
    bob = await User.get(username="bob")
    await add_member(course, ann)
    await add_member(course, bob)
    record_link = f'href="/courses/{course.slug}/record/ann"'
    await log_in(client, "bob")
    assert record_link not in (await client.get("/users/ann")).text

    await peer_review_actions.set_record_public(course, public=True, acting_user=ann)
    page = await client.get("/users/ann")
    assert record_link in page.text
    assert "Graded course: 0 completed assignments" in page.text


async def test_a_public_record_stays_inside_its_course(client: httpx.AsyncClient) -> None:
    ann, _, _ = await _people_and_course()
    course = await make_course(title="Graded course")
    await add_member(course, ann)
    await peer_review_actions.set_record_public(course, public=True, acting_user=ann)
    await _set_profile(ann, profile_public=True)
    page = await client.get("/users/ann")  # logged out: the record is for course members
    assert page.status_code == 200
    assert "/record/ann" not in page.text


# --- the account hub and the profile editor ---------------------------------------------------


async def test_account_pages_need_a_sign_in(client: httpx.AsyncClient) -> None:
    for path in ("/me", "/me/profile", "/me/sessions"):
        response = await client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={path}"


async def test_account_hub_links_every_account_page(client: httpx.AsyncClient) -> None:
    await make_user("ann")
    await log_in(client, "ann")
    page = await client.get("/me")
    assert page.status_code == 200
    for href in (
        "/users/ann",
        "/me/profile",
        "/me/sessions",
        "/me/notifications/settings",
        "/me/export",
        "/me/delete",
        "/privacy",
    ):
        assert f'href="{href}"' in page.text, href


async def test_edit_profile_through_the_form(client: httpx.AsyncClient) -> None:
    await make_user("ann")
    await log_in(client, "ann")
    token = await csrf_token(client, "/me/profile")
    saved = await client.post(
        "/me/profile",
        data={
            "display_name": "Ann R.",
            "about": "I like maps.",
            "links": "https://maps.example/",
            "profile_public": "on",
            "csrf_token": token,
        },
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/me/profile?saved=1"
    form = await client.get("/me/profile?saved=1")
    assert "Saved." in form.text
    assert 'value="Ann R."' in form.text and "https://maps.example/</textarea>" in form.text
    assert re.search(r'name="profile_public" checked', form.text)
    assert (await client.get("/users/ann")).text.count("I like maps.") == 1


async def test_a_bad_field_keeps_everything_typed(client: httpx.AsyncClient) -> None:
    await make_user("ann", display_name="Ann")
    await log_in(client, "ann")
    token = await csrf_token(client, "/me/profile")
    response = await client.post(
        "/me/profile",
        data={
            "display_name": "Ann Again",
            "about": "Kept <text>",
            "links": "https://ok.example/\nnot a link",
            "profile_public": "on",
            "csrf_token": token,
        },
    )
    assert response.status_code == 422
    assert 'id="f-links-error"' in response.text
    assert "Line 2 contains a space" in response.text
    assert 'value="Ann Again"' in response.text
    assert "Kept &lt;text&gt;</textarea>" in response.text
    assert "https://ok.example/\nnot a link</textarea>" in response.text
    assert 'name="profile_public" checked' in response.text
    assert (await User.get(username="ann")).display_name == "Ann"


# --- signed-in browsers -------------------------------------------------------------------------

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (FIREFOX, "Firefox 128 on Linux"),
        (IPHONE, "Safari 17 on iPhone"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
            "Edge 124 on Windows",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
            "Gecko) Chrome/126.0.0.0 Safari/537.36",
            "Chrome 126 on macOS",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/125.0.0.0 Mobile Safari/537.36",
            "Chrome 125 on Android",
        ),
        ("python-httpx/0.28.1", "python-httpx 0"),
        ("curl/8.5.0", "curl 8"),
        ("", "Unknown browser"),
        ("Mozilla/5.0 (compatible)", "Unknown browser"),
    ],
)
def test_user_agents_are_named_readably(agent: str, expected: str) -> None:
    assert describe_user_agent(agent) == expected


async def test_sessions_page_lists_browsers_and_marks_this_one(app: Starlette) -> None:
    await make_user("ann")
    async with _browser(app, IPHONE) as phone, _browser(app, FIREFOX) as laptop:
        await log_in(phone, "ann")
        await log_in(laptop, "ann")
        page = await laptop.get("/me/sessions")
    assert page.status_code == 200
    rows = re.findall(r'<th scope="row">([^<]*)(.*?)</th>', page.text)
    # Most recently used first; the browser asking is marked.
    assert [(name.strip(), "this browser" in rest) for name, rest in rows] == [
        ("Firefox 128 on Linux", True),
        ("Safari 17 on iPhone", False),
    ]
    assert "Sign out everywhere else" in page.text


async def test_signing_out_another_browser_ends_it_there(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await make_user("ann")
    async with _browser(app, IPHONE) as phone:
        await log_in(phone, "ann")
        await log_in(client, "ann")
        phone_session = await AuthSession.get(user_agent=IPHONE)
        token = await csrf_token(client, "/me/sessions")
        done = await client.post(
            f"/me/sessions/{phone_session.id}/sign-out", data={"csrf_token": token}
        )
        assert done.status_code == 303 and done.headers["location"] == "/me/sessions?ended=1"
        assert "Signed out 1 browser." in (await client.get(done.headers["location"])).text
        assert (await phone.get("/me")).status_code == 303  # the phone must sign in again
        assert (await client.get("/me")).status_code == 200
    assert (await AuthSession.get(id=phone_session.id)).revoked_at is not None


async def test_nobody_signs_out_someone_elses_browser(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await make_user("ann")
    await make_user("bob")
    async with _browser(app, FIREFOX) as other:
        await log_in(other, "bob")
        await log_in(client, "ann")
        bobs = await AuthSession.get(user_agent=FIREFOX)
        token = await csrf_token(client, "/me/sessions")
        refused = await client.post(f"/me/sessions/{bobs.id}/sign-out", data={"csrf_token": token})
        assert refused.status_code == 404
        assert (await other.get("/me")).status_code == 200
    assert (await AuthSession.get(id=bobs.id)).revoked_at is None


async def test_sign_out_everywhere_else_keeps_this_browser(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await make_user("ann")
    async with _browser(app, IPHONE) as phone, _browser(app, FIREFOX) as laptop:
        await log_in(phone, "ann")
        await log_in(laptop, "ann")
        await log_in(client, "ann")
        token = await csrf_token(client, "/me/sessions")
        done = await client.post("/me/sessions/sign-out-others", data={"csrf_token": token})
        assert done.headers["location"] == "/me/sessions?ended=2"
        page = await client.get(done.headers["location"])
        assert "Signed out 2 browsers." in page.text
        assert "Sign out everywhere else" not in page.text
        assert (await phone.get("/me")).status_code == 303
        assert (await laptop.get("/me")).status_code == 303
        assert (await client.get("/me")).status_code == 200


async def test_sign_out_everywhere_includes_this_browser(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await make_user("ann")
    async with _browser(app, IPHONE) as phone:
        await log_in(phone, "ann")
        await log_in(client, "ann")
        token = await csrf_token(client, "/me/sessions")
        done = await client.post("/me/sessions/sign-out-all", data={"csrf_token": token})
        assert done.status_code == 303 and done.headers["location"] == "/"
        assert (await client.get("/me")).status_code == 303
        assert (await phone.get("/me")).status_code == 303
    assert await AuthSession.filter(revoked_at=None).count() == 0


async def test_signing_out_this_browser_from_the_list_logs_it_out(
    client: httpx.AsyncClient,
) -> None:
    await make_user("ann")
    await log_in(client, "ann")
    mine = await AuthSession.get()
    token = await csrf_token(client, "/me/sessions")
    done = await client.post(f"/me/sessions/{mine.id}/sign-out", data={"csrf_token": token})
    assert done.headers["location"] == "/"
    assert (await client.get("/me")).status_code == 303


async def test_ended_sessions_are_forgotten_after_thirty_days(db: object) -> None:
    ann = await make_user("ann")
    now = utcnow()
    old = now - timedelta(days=31)
    recent = now - timedelta(days=5)
    expiry = now + timedelta(days=10)

    async def session(key: str, **fields: Any) -> AuthSession:
        values: dict[str, Any] = {"last_seen_at": now, "expires_at": expiry, **fields}
        return await AuthSession.create(key_hash=key, user=ann, **values)

    live = await session("a")
    ended_recently = await session("b", revoked_at=recent)
    await session("c", revoked_at=old)
    await session("d", expires_at=old)
    await session("e", last_seen_at=old - timedelta(days=8))
    assert await profile.forget_ended_sessions(now) == 3
    kept = {row.id for row in await AuthSession.all()}
    assert kept == {live.id, ended_recently.id}
    with pytest.raises(PermissionDenied):
        await profile.forget_ended_sessions(now, acting_user=ann)


async def test_signing_out_a_missing_session_is_not_found(db: object) -> None:
    ann = await make_user("ann")
    with pytest.raises(NotFound):
        await profile.sign_out_session(ann, 12345, acting_user=ann)
