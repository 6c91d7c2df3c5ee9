"""What a visitor, a learner or an attacker notices about Agora's defences.

CSRF, the session cookie, session ends (log-out, suspension, time-outs), log-in and sign-up
rate limits, access control on staff pages, refusals of bad input without partial writes,
open redirects, and garbage requests that must never produce a server error.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.applications import Starlette

from core import actions, passwords, ratelimit
from core.models import AuthSession, Course, Membership, Role, User
from core.settings import Settings
from core.timeutil import utcnow
from tests.conftest import csrf_token
from tests.factories import PASSWORD, add_member, log_in, make_course, make_user

CSRF_REFUSAL = "This form has expired or came from another site"
FOREIGN_REFUSAL = "Requests from another site are not accepted"


@asynccontextmanager
async def browser(
    app: Starlette,
    *,
    ip: str = "127.0.0.1",
    base_url: str = "http://testserver",
    raise_app_exceptions: bool = True,
    cookies: dict[str, str] | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """Another browser (own cookies, own client address) talking to the same app."""
    transport = httpx.ASGITransport(
        app=app, client=(ip, 50001), raise_app_exceptions=raise_app_exceptions
    )
    async with httpx.AsyncClient(transport=transport, base_url=base_url, cookies=cookies) as c:
        yield c


def session_set_cookie(response: httpx.Response) -> str:
    """The Set-Cookie header line for the session cookie."""
    lines = [
        line
        for line in response.headers.get_list("set-cookie")
        if line.startswith("agora_session=")
    ]
    assert len(lines) == 1, response.headers.get_list("set-cookie")
    return lines[0]


def cookie_attributes(line: str) -> dict[str, str]:
    parts = [part.strip() for part in line.split(";")]
    attributes: dict[str, str] = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        attributes[name.lower()] = value
    return attributes


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters: these tests are about the web layer, not the hash's cost."""
    quick = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", quick)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", quick.hash("agora-timing-equaliser"))


@pytest.fixture
def frozen_rate_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin the rate-limit clock mid-window, so no window boundary falls inside a test."""
    hour_start = int(time.time() // 3600) * 3600
    frozen = hour_start + 450.0  # inside the first 15-minute window of the hour
    real_window = ratelimit._window

    def window(window_seconds: int, now: float | None) -> tuple[int, int]:
        return real_window(window_seconds, frozen if now is None else now)

    monkeypatch.setattr(ratelimit, "_window", window)


# --- CSRF -------------------------------------------------------------------------------


async def test_signup_without_csrf_token_is_refused_and_creates_nobody(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/signup")  # the browser has its CSRF cookie, but the form lacks the token
    response = await client.post(
        "/signup",
        data={"username": "newbie", "display_name": "Newbie", "password": PASSWORD},
    )
    assert response.status_code == 403
    assert CSRF_REFUSAL in response.text
    assert not await User.filter(username="newbie").exists()


async def test_signup_with_wrong_csrf_token_is_refused(client: httpx.AsyncClient) -> None:
    await client.get("/signup")
    response = await client.post(
        "/signup",
        data={
            "username": "newbie",
            "display_name": "Newbie",
            "password": PASSWORD,
            "csrf_token": "0" * 64,
        },
    )
    assert response.status_code == 403
    assert CSRF_REFUSAL in response.text
    assert not await User.filter(username="newbie").exists()


async def test_signup_with_form_token_works(client: httpx.AsyncClient) -> None:
    token = await csrf_token(client, "/signup")
    response = await client.post(
        "/signup",
        data={
            "username": "newbie",
            "display_name": "Newbie",
            "password": PASSWORD,
            "csrf_token": token,
        },
    )
    assert response.status_code == 303
    assert await User.filter(username="newbie").count() == 1


async def test_login_without_csrf_token_is_refused_and_starts_no_session(
    client: httpx.AsyncClient,
) -> None:
    await make_user("ann")
    await client.get("/login")
    response = await client.post("/login", data={"username": "ann", "password": PASSWORD})
    assert response.status_code == 403
    assert CSRF_REFUSAL in response.text
    assert "agora_session" not in response.headers.get("set-cookie", "")
    assert await AuthSession.all().count() == 0


async def test_a_first_post_without_any_csrf_cookie_is_refused(client: httpx.AsyncClient) -> None:
    await make_user("ann")
    response = await client.post(
        "/login", data={"username": "ann", "password": PASSWORD, "csrf_token": "f" * 64}
    )
    assert response.status_code == 403
    assert CSRF_REFUSAL in response.text
    assert await AuthSession.all().count() == 0


async def test_course_creation_without_csrf_token_creates_nothing(
    client: httpx.AsyncClient,
) -> None:
    await make_user("ina", can_create_courses=True)
    await log_in(client, "ina")
    response = await client.post("/courses/new", data={"title": "Forged", "enrolment": "open"})
    assert response.status_code == 403
    assert CSRF_REFUSAL in response.text
    assert await Course.all().count() == 0


async def test_role_change_needs_the_right_csrf_token(client: httpx.AsyncClient) -> None:
    instructor = await make_user("ina", can_create_courses=True)
    learner = await make_user("leo")
    course = await make_course(instructor)
    await add_member(course, learner)
    await log_in(client, "ina")
    url = f"/courses/{course.slug}/staff/members"

    async def role_of_leo() -> Role:
        return (await Membership.get(course_id=course.id, user_id=learner.id)).role

    missing = await client.post(url, data={"username": "leo", "role": "mentor"})
    assert missing.status_code == 403
    assert CSRF_REFUSAL in missing.text
    assert await role_of_leo() == Role.LEARNER

    wrong = await client.post(
        url, data={"username": "leo", "role": "mentor", "csrf_token": "ab" * 32}
    )
    assert wrong.status_code == 403
    assert await role_of_leo() == Role.LEARNER

    token = await csrf_token(client, url)
    right = await client.post(url, data={"username": "leo", "role": "mentor", "csrf_token": token})
    assert right.status_code == 200
    assert "Saved." in right.text
    assert await role_of_leo() == Role.MENTOR


async def test_htmx_requests_carry_the_token_in_a_header(client: httpx.AsyncClient) -> None:
    instructor = await make_user("ina", can_create_courses=True)
    learner = await make_user("leo")
    course = await make_course(instructor)
    await add_member(course, learner)
    await log_in(client, "ina")
    url = f"/courses/{course.slug}/staff/members"
    token = await csrf_token(client, url)

    wrong = await client.post(
        url,
        data={"username": "leo", "role": "mentor"},
        headers={"HX-Request": "true", "X-CSRF-Token": "0" * 64},
    )
    assert wrong.status_code == 403
    assert CSRF_REFUSAL in wrong.text
    membership = await Membership.get(course_id=course.id, user_id=learner.id)
    assert membership.role == Role.LEARNER

    right = await client.post(
        url,
        data={"username": "leo", "role": "mentor"},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
    )
    assert right.status_code == 200
    assert right.text.lstrip().startswith('<div id="members">')  # just the fragment
    membership = await Membership.get(course_id=course.id, user_id=learner.id)
    assert membership.role == Role.MENTOR


async def test_a_post_from_another_origin_is_refused_even_with_a_valid_token(
    client: httpx.AsyncClient,
) -> None:
    await make_user("ina", can_create_courses=True)
    await log_in(client, "ina")
    token = await csrf_token(client, "/courses/new")
    data = {"title": "Forged", "enrolment": "invite", "csrf_token": token}

    foreign = await client.post(
        "/courses/new", data=data, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    assert FOREIGN_REFUSAL in foreign.text
    opaque = await client.post("/courses/new", data=data, headers={"Origin": "null"})
    assert opaque.status_code == 403
    assert await Course.all().count() == 0

    same_site = await client.post(
        "/courses/new", data=data, headers={"Origin": "http://testserver"}
    )
    assert same_site.status_code == 303
    assert await Course.filter(title="Forged").count() == 1


async def test_api_requests_with_a_bearer_token_need_no_csrf_token(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user("ina", can_create_courses=True)
    token = await actions.issue_api_token(user, acting_user=None)
    response = await client.post(
        "/api/v1/courses", json={"title": "Scripted"}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    assert await Course.filter(title="Scripted").count() == 1


async def test_api_requests_riding_on_the_session_cookie_need_a_csrf_token(
    client: httpx.AsyncClient,
) -> None:
    await make_user("ina", can_create_courses=True)
    await log_in(client, "ina")
    response = await client.post("/api/v1/courses", json={"title": "Forged"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf"
    assert await Course.all().count() == 0


# --- Session cookie ------------------------------------------------------------------------


async def test_session_cookie_flags_over_http(client: httpx.AsyncClient) -> None:
    user = await make_user("ann")
    response = await log_in(client, "ann")
    assert response.status_code == 303
    line = session_set_cookie(response)
    attributes = cookie_attributes(line)
    assert "httponly" in attributes
    assert attributes.get("samesite", "").lower() == "lax"
    assert attributes.get("path") == "/"
    assert "secure" not in attributes

    value = client.cookies["agora_session"]
    stored = await AuthSession.get(user_id=user.id)
    assert stored.key_hash != value
    assert value not in stored.key_hash
    assert stored.key_hash == hashlib.sha256(value.encode()).hexdigest()


async def test_session_cookie_is_secure_over_https(app: Starlette) -> None:
    await make_user("ann")
    async with browser(app, base_url="https://testserver") as https_client:
        response = await log_in(https_client, "ann")
        assert response.status_code == 303
        attributes = cookie_attributes(session_set_cookie(response))
        assert "secure" in attributes
        assert "httponly" in attributes
        assert attributes.get("samesite", "").lower() == "lax"
        page = await https_client.get("/courses")
        assert page.status_code == 200


# --- Ending sessions -----------------------------------------------------------------------


async def test_logout_revokes_the_session_server_side(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await make_user("ann")
    await log_in(client, "ann")
    old_cookie = client.cookies["agora_session"]
    assert (await client.get("/courses")).status_code == 200

    token = await csrf_token(client, "/logout")
    response = await client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303

    async with browser(app, cookies={"agora_session": old_cookie}) as replay:
        page = await replay.get("/courses")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/courses"


async def test_suspension_logs_the_user_out_and_stops_their_tokens(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user("ann")
    token = await actions.issue_api_token(user, acting_user=None)
    await log_in(client, "ann")
    assert (await client.get("/courses")).status_code == 200
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200

    await actions.set_user_active(user, False, acting_user=None)

    page = await client.get("/courses")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")
    api = await client.get("/api/v1/me", headers=bearer(token))
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "not_authenticated"

    again = await log_in(client, "ann")
    assert again.status_code == 403
    assert "suspended" in again.text


async def test_a_session_idle_too_long_ends(client: httpx.AsyncClient, settings: Settings) -> None:
    user = await make_user("ann")
    await log_in(client, "ann")
    idle = timedelta(minutes=settings.session_idle_minutes)
    await AuthSession.filter(user_id=user.id).update(
        last_seen_at=utcnow() - idle - timedelta(minutes=1)
    )
    page = await client.get("/courses")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/courses"


async def test_a_session_past_its_absolute_lifetime_ends(client: httpx.AsyncClient) -> None:
    user = await make_user("ann")
    await log_in(client, "ann")
    # Used a moment ago, so only the absolute limit can end it.
    await AuthSession.filter(user_id=user.id).update(
        last_seen_at=utcnow(), expires_at=utcnow() - timedelta(seconds=1)
    )
    page = await client.get("/courses")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/courses"


async def test_a_session_used_within_the_idle_window_keeps_working(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await make_user("ann")
    await log_in(client, "ann")
    idle = timedelta(minutes=settings.session_idle_minutes)
    almost = utcnow() - idle + timedelta(minutes=5)
    await AuthSession.filter(user_id=user.id).update(last_seen_at=almost)

    page = await client.get("/courses")
    assert page.status_code == 200
    assert "My courses" in page.text
    # Using it slides the idle window forward.
    session = await AuthSession.get(user_id=user.id)
    assert session.last_seen_at > almost + timedelta(minutes=1)


# --- Rate limits ---------------------------------------------------------------------------


@pytest.mark.usefixtures("frozen_rate_window")
async def test_repeated_wrong_passwords_lock_the_account_for_a_while(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    limit = settings.login_rate_limit
    assert limit == 10
    await make_user("ann")
    await make_user("bob")
    token = await csrf_token(client, "/login")

    async def attempt(password: str) -> httpx.Response:
        return await client.post(
            "/login", data={"username": "ann", "password": password, "csrf_token": token}
        )

    for _ in range(limit):
        response = await attempt("not the password")
        assert response.status_code == 422
        assert "Wrong username or password." in response.text

    refused = await attempt("not the password")
    assert refused.status_code == 429
    assert "Too many failed sign-in attempts" in refused.text
    assert int(refused.headers["Retry-After"]) > 0

    right = await attempt(PASSWORD)
    assert right.status_code == 429
    assert "Retry-After" in right.headers
    assert "agora_session" not in right.headers.get("set-cookie", "")
    assert await AuthSession.all().count() == 0

    async with browser(app, ip="10.0.0.2") as elsewhere:
        other = await log_in(elsewhere, "bob")
        assert other.status_code == 303
        assert (await elsewhere.get("/courses")).status_code == 200


@pytest.mark.usefixtures("frozen_rate_window")
async def test_sign_ups_per_address_are_limited(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    limit = settings.signup_rate_limit
    assert limit == 5
    token = await csrf_token(client, "/signup")

    async def sign_up(name: str, c: httpx.AsyncClient, csrf: str) -> httpx.Response:
        return await c.post(
            "/signup",
            data={
                "username": name,
                "display_name": name.title(),
                "password": PASSWORD,
                "csrf_token": csrf,
            },
        )

    for n in range(limit):
        assert (await sign_up(f"person{n}", client, token)).status_code == 303

    refused = await sign_up("one-too-many", client, token)
    assert refused.status_code == 429
    assert "Too many sign-ups from this network" in refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert not await User.filter(username="one-too-many").exists()
    assert await User.all().count() == limit

    async with browser(app, ip="10.0.0.3") as elsewhere:
        other_token = await csrf_token(elsewhere, "/signup")
        assert (await sign_up("from-elsewhere", elsewhere, other_token)).status_code == 303


# --- Access control ------------------------------------------------------------------------


async def test_only_instructors_reach_the_staff_pages(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    instructor = await make_user("ina", can_create_courses=True)
    mentor = await make_user("mona")
    learner = await make_user("leo")
    course = await make_course(instructor)
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, learner, Role.LEARNER)
    html_url = f"/courses/{course.slug}/staff/members"
    api_url = f"/api/v1/courses/{course.slug}/staff/members"

    for user in (learner, mentor):
        token = await actions.issue_api_token(user, acting_user=None)
        async with browser(app) as member:
            await log_in(member, user.username)
            page = await member.get(html_url)
            assert page.status_code == 403, user.username
            assert "staff only" in page.text

            csrf = await csrf_token(member, f"/courses/{course.slug}")
            post = await member.post(
                html_url,
                data={"username": user.username, "role": "instructor", "csrf_token": csrf},
            )
            assert post.status_code == 403, user.username

            listing = await member.get(api_url, headers=bearer(token))
            assert listing.status_code == 403
            assert listing.json()["error"]["code"] == "forbidden"
            change = await member.post(
                api_url,
                json={"username": user.username, "role": "instructor"},
                headers=bearer(token),
            )
            assert change.status_code == 403
            assert change.json()["error"]["code"] == "forbidden"

    roles = dict(await Membership.filter(course_id=course.id).values_list("user__username", "role"))
    assert roles == {"ina": Role.INSTRUCTOR, "mona": Role.MENTOR, "leo": Role.LEARNER}

    await log_in(client, "ina")
    page = await client.get(html_url)
    assert page.status_code == 200
    assert "@leo" in page.text


async def test_non_members_cannot_read_an_invite_only_course(client: httpx.AsyncClient) -> None:
    course = await make_course(await make_user("ina", can_create_courses=True))
    await make_user("otto")
    await log_in(client, "otto")
    page = await client.get(f"/courses/{course.slug}")
    assert page.status_code == 403
    assert "You are not a member of this course yet." in page.text
    assert course.invite_code not in page.text


async def test_anonymous_visitors_are_sent_to_log_in_or_get_401(
    client: httpx.AsyncClient,
) -> None:
    course = await make_course(await make_user("ina", can_create_courses=True))
    page = await client.get(f"/courses/{course.slug}/staff/members")
    assert page.status_code == 303
    assert page.headers["location"] == f"/login?next=/courses/{course.slug}/staff/members"

    home = await client.get(f"/courses/{course.slug}")
    assert home.status_code == 303
    assert home.headers["location"] == f"/login?next=/courses/{course.slug}"

    for method in ("GET", "POST"):
        api = await client.request(
            method,
            f"/api/v1/courses/{course.slug}/staff/members",
            json={"username": "x", "role": "learner"} if method == "POST" else None,
            headers={"Authorization": "Bearer nothing"} if method == "POST" else None,
        )
        assert api.status_code == 401, method
        assert api.headers["content-type"].startswith("application/json")
        assert api.json()["error"]["code"] == "not_authenticated"


async def test_unknown_course_is_404_in_html_and_json(client: httpx.AsyncClient) -> None:
    user = await make_user("ina", can_create_courses=True)
    token = await actions.issue_api_token(user, acting_user=None)
    await log_in(client, "ina")
    for path in ("/courses/no-such-course", "/courses/no-such-course/staff/members"):
        page = await client.get(path)
        assert page.status_code == 404, path
        assert "There is no such course." in page.text
    api = await client.get("/api/v1/courses/no-such-course/staff/members", headers=bearer(token))
    assert api.status_code == 404
    assert api.json()["error"] == {
        "code": "not_found",
        "message": "There is no such course.",
        "fields": {},
    }


# --- Bad input -----------------------------------------------------------------------------


async def test_sign_up_refusals_name_the_field_and_write_nothing(
    client: httpx.AsyncClient,
) -> None:
    await make_user("ann")
    token = await csrf_token(client, "/signup")

    async def sign_up(**fields: str) -> httpx.Response:
        data = {"display_name": "Someone", "password": PASSWORD, "csrf_token": token, **fields}
        return await client.post("/signup", data=data)

    taken = await sign_up(username="Ann")
    assert taken.status_code == 409
    assert "This username is taken" in taken.text
    assert await User.filter(username="ann").count() == 1

    short = await sign_up(username="newbie", password="short")
    assert short.status_code == 422
    match = re.search(
        r'<input id="f-password"[^>]*aria-describedby="f-password-error"[^>]*>\s*'
        r'<p class="error" id="f-password-error">([^<]*)</p>',
        short.text,
    )
    assert match, short.text
    assert "at least 10 characters" in match.group(1)
    assert 'value="newbie"' in short.text  # what was typed is kept
    assert PASSWORD not in short.text and 'value="short"' not in short.text

    invalid = await sign_up(username="no spaces!")
    assert invalid.status_code == 422
    assert 'id="f-username-error"' in invalid.text
    assert "lowercase letters" in invalid.text

    assert await User.all().count() == 1
    assert await AuthSession.all().count() == 0


async def test_course_with_empty_title_is_refused_and_nothing_is_created(
    client: httpx.AsyncClient,
) -> None:
    await make_user("ina", can_create_courses=True)
    await log_in(client, "ina")
    token = await csrf_token(client, "/courses/new")
    response = await client.post(
        "/courses/new", data={"title": "   ", "enrolment": "open", "csrf_token": token}
    )
    assert response.status_code == 422
    assert 'id="f-title-error"' in response.text
    assert "Title is required." in response.text
    assert await Course.all().count() == 0
    assert await Membership.all().count() == 0


async def test_joining_with_a_wrong_invite_code_is_404_and_joins_nothing(
    client: httpx.AsyncClient,
) -> None:
    course = await make_course(await make_user("ina", can_create_courses=True))
    await make_user("leo")
    await log_in(client, "leo")
    token = await csrf_token(client, "/courses")
    wrong = "ZZZZ-ZZZZZZ" if course.invite_code != "ZZZZZZZZZZ" else "YYYY-YYYYYY"
    response = await client.post("/courses/join", data={"invite_code": wrong, "csrf_token": token})
    assert response.status_code == 404
    assert "No course has this invite code" in response.text
    assert await Membership.all().count() == 1  # only the instructor


async def refused_role_changes(client: httpx.AsyncClient) -> list[tuple[httpx.Response, str]]:
    """An instructor tries an unknown role and demoting themselves, the only instructor.

    Returns each response with the message the instructor should read.
    """
    instructor = await make_user("ina", can_create_courses=True)
    learner = await make_user("leo")
    course = await make_course(instructor)
    await add_member(course, learner)
    await log_in(client, "ina")
    url = f"/courses/{course.slug}/staff/members"
    token = await csrf_token(client, url)

    bogus = await client.post(
        url, data={"username": "leo", "role": "overlord", "csrf_token": token}
    )
    assert bogus.status_code == 422
    assert (await Membership.get(user_id=learner.id)).role == Role.LEARNER

    demote = await client.post(
        url, data={"username": "ina", "role": "learner", "csrf_token": token}
    )
    assert demote.status_code == 409
    assert (await Membership.get(user_id=instructor.id)).role == Role.INSTRUCTOR
    return [
        (bogus, "Choose learner, mentor or instructor."),
        (demote, "A course needs at least one instructor."),
    ]


async def test_role_changes_refuse_unknown_roles_and_losing_the_last_instructor(
    client: httpx.AsyncClient,
) -> None:
    assert len(await refused_role_changes(client)) == 2


async def test_refused_role_changes_tell_the_instructor_why(client: httpx.AsyncClient) -> None:
    for response, message in await refused_role_changes(client):
        assert message in response.text


# --- Open redirect -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["//evil.example", "https://evil.example", "/\\evil.example", "///evil.example"]
)
async def test_log_in_never_redirects_off_site(client: httpx.AsyncClient, target: str) -> None:
    await make_user("ann")
    page = await client.get("/login", params={"next": target})
    assert page.status_code == 200
    assert 'name="next" value="/courses"' in page.text
    token = await csrf_token(client, "/login")
    response = await client.post(
        "/login",
        data={"username": "ann", "password": PASSWORD, "next": target, "csrf_token": token},
    )
    assert response.status_code == 303
    location = response.headers["location"]
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc, location
    assert location.startswith("/") and not location.startswith("//")
    assert "evil.example" not in location


async def test_log_in_follows_a_same_site_next(client: httpx.AsyncClient) -> None:
    await make_user("ann")
    page = await client.get("/login", params={"next": "/notifications"})
    assert 'name="next" value="/notifications"' in page.text
    token = await csrf_token(client, "/login")
    response = await client.post(
        "/login",
        data={
            "username": "ann",
            "password": PASSWORD,
            "next": "/notifications",
            "csrf_token": token,
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/notifications"


# --- Garbage never gives a server error ------------------------------------------------------


class NoServerErrors:
    """Sends requests and remembers every one that was answered with a 5xx."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.failures: list[str] = []

    async def send(self, label: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, url, **kwargs)
        if response.status_code >= 500:
            self.failures.append(f"{label}: {response.status_code}")
        return response

    def assert_none(self) -> None:
        assert self.failures == [], f"server errors: {self.failures}"


async def test_garbage_from_anonymous_visitors_never_causes_a_server_error(
    app: Starlette,
) -> None:
    async with browser(app, raise_app_exceptions=False) as c:
        token = await csrf_token(c, "/login")
        fuzz = NoServerErrors(c)
        urlencoded = {"Content-Type": "application/x-www-form-urlencoded"}
        huge = "x" * 300_000

        # Bodies that are not UTF-8, or not what they claim to be.
        await fuzz.send(
            "latin-1 log-in",
            "POST",
            "/login",
            headers=urlencoded,
            content=b"username=\xff\xfe\xfd&password=\xe9t\xe9&csrf_token=" + token.encode(),
        )
        await fuzz.send(
            "latin-1 names",
            "POST",
            "/signup",
            headers=urlencoded,
            content=b"\xff\xfe=\x80\x81&\xc3\x28=1&csrf_token=" + token.encode(),
        )
        await fuzz.send(
            "latin-1 without token",
            "POST",
            "/signup",
            headers=urlencoded,
            content=b"\xff\xfe=\x80\x81",
        )
        await fuzz.send(
            "broken multipart",
            "POST",
            "/login",
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
            content=b'--xyz\r\nContent-Disposition: form-data; name="\xff"\r\n\r\n\xfe\r\n--x',
        )
        no_boundary = await fuzz.send(
            "multipart without boundary",
            "POST",
            "/login",
            headers={"Content-Type": "multipart/form-data"},
            content=b"garbage",
        )
        assert no_boundary.status_code == 400
        assert "could not be read" in no_boundary.text

        # Huge and impossible values.
        await fuzz.send(
            "huge log-in",
            "POST",
            "/login",
            data={"username": huge, "password": huge, "csrf_token": token},
        )
        await fuzz.send(
            "huge sign-up",
            "POST",
            "/signup",
            data={
                "username": huge,
                "display_name": huge,
                "password": huge,
                "email": huge,
                "csrf_token": token,
            },
        )
        await fuzz.send(
            "long e-mail",
            "POST",
            "/signup",
            data={
                "username": "newbie",
                "display_name": "Newbie",
                "password": PASSWORD,
                "email": "a@" + "b" * 300 + ".example",
                "csrf_token": token,
            },
        )
        await fuzz.send(
            "huge multipart part",
            "POST",
            "/login",
            data={"username": "y" * (2 * 1024 * 1024), "csrf_token": token},
            files={"attachment": ("a.txt", b"hello")},
        )
        await fuzz.send("huge query", "GET", "/login", params={"next": "/" + "x" * 60_000})
        for field in ("username", "display_name", "email", "password"):
            values = {
                "username": "nully",
                "display_name": "Nully",
                "password": PASSWORD,
                "email": "n@example.org",
            }
            values[field] = values[field][:2] + "\x00" + values[field][2:]
            response = await fuzz.send(
                f"NUL in {field}", "POST", "/signup", data={**values, "csrf_token": token}
            )
            assert response.status_code == 422, field
        nul_login = await fuzz.send(
            "NUL log-in",
            "POST",
            "/login",
            data={"username": "a\x00b", "password": "x", "csrf_token": token},
        )
        assert nul_login.status_code == 422

        # Methods a route does not accept: 405 with a message.
        for method, path, headers in (
            ("GET", "/courses/some-course/join", {}),
            ("PUT", "/login", {"X-CSRF-Token": token}),
            ("DELETE", "/courses", {"X-CSRF-Token": token}),
            ("BREW", "/signup", {"X-CSRF-Token": token}),
            ("PATCH", "/api/v1/me", {"Authorization": "Bearer agora_nothing"}),
        ):
            response = await fuzz.send(f"{method} {path}", method, path, headers=headers)
            assert response.status_code == 405, (method, path)
            if path.startswith("/api/"):
                assert response.json()["error"]["code"] == "method_not_allowed"
            else:
                assert "does not accept that kind of request" in response.text

        # Malformed cookies and authorization headers.
        for n, cookie in enumerate(
            (
                'agora_session="unterminated; agora_csrf=;;;==;',
                "agora_session=" + "a" * 5000,
                "agora_session=%ff%fe; agora_csrf=\x7f\x01",
                "=; ; agora_session",
            )
        ):
            response = await fuzz.send(f"cookie {n}", "GET", "/courses", headers={"Cookie": cookie})
            assert response.status_code == 303  # still anonymous: off to the log-in page
        for authorization in (
            "Bearer",
            "Bearer ",
            "Basic Zm9vOmJhcg==",
            "Bearer agora_" + "x" * 10_000,
            "Bearer agora_\x00\x01",
            "Token",
            "Bearer  agora_ spaced out",
        ):
            me = await fuzz.send(
                f"authorization {authorization[:20]!r}",
                "GET",
                "/api/v1/me",
                headers={"Authorization": authorization},
            )
            assert me.status_code == 401
        await fuzz.send(
            "latin-1 authorization",
            "GET",
            "/api/v1/me",
            headers=[(b"authorization", b"Bearer agora_\xff\xfe")],
        )

        # Paths: traversal out of the static folder, NUL and absurd lengths.
        for path in (
            "/static/%2e%2e/core/settings.py",
            "/static/..%2fcore%2fsettings.py",
            "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/static/....//core/settings.py",
            "/static/%00",
        ):
            response = await fuzz.send(path, "GET", path)
            assert response.status_code in (400, 404), path
            assert "AGORA_SECRET_KEY" not in response.text
            assert "root:" not in response.text
        await fuzz.send("NUL in a path", "GET", "/courses/a%00b")
        await fuzz.send("NUL in an API path", "GET", "/api/v1/courses/a%00b/staff/members")

        fuzz.assert_none()
    assert await User.all().count() == 0
    assert await AuthSession.all().count() == 0


async def test_garbage_from_signed_in_users_never_causes_a_server_error(
    app: Starlette,
) -> None:
    user = await make_user("ina", can_create_courses=True)
    course = await make_course(user)
    api_token = await actions.issue_api_token(user, acting_user=None)
    api = bearer(api_token)
    async with browser(app, raise_app_exceptions=False) as c:
        await log_in(c, "ina")
        token = await csrf_token(c, "/courses")
        fuzz = NoServerErrors(c)
        members = f"/courses/{course.slug}/staff/members"
        api_members = f"/api/v1/courses/{course.slug}/staff/members"

        for label, value in (("long", "u" * 5000), ("NUL", "u\x00")):
            await fuzz.send(f"{label} course slug", "GET", f"/courses/{quote(value[:200])}")
            await fuzz.send(
                f"{label} staff slug", "GET", f"/courses/{quote(value[:200])}/staff/members"
            )
            await fuzz.send(
                f"{label} API slug",
                "GET",
                f"/api/v1/courses/{quote(value[:200])}/staff/members",
                headers=api,
            )
            await fuzz.send(
                f"{label} member",
                "POST",
                members,
                data={"username": value, "role": "learner", "csrf_token": token},
            )
            await fuzz.send(
                f"{label} role",
                "POST",
                members,
                data={"username": "ina", "role": value, "csrf_token": token},
            )
            await fuzz.send(
                f"{label} invite code",
                "POST",
                "/courses/join",
                data={"invite_code": value, "csrf_token": token},
            )
            await fuzz.send(
                f"{label} invite code for a course",
                "POST",
                f"/courses/{course.slug}/join",
                data={"invite_code": value, "csrf_token": token},
            )
            await fuzz.send(
                f"{label} course",
                "POST",
                "/courses/new",
                data={
                    "title": value,
                    "slug": value,
                    "description": value,
                    "enrolment": value,
                    "csrf_token": token,
                },
            )
            await fuzz.send(
                f"{label} API member",
                "POST",
                api_members,
                json={"username": value[:64], "role": "learner"},
                headers=api,
            )
            await fuzz.send(
                f"{label} API join",
                "POST",
                "/api/v1/courses/join",
                json={"invite_code": value[:40]},
                headers=api,
            )
            await fuzz.send(
                f"{label} API course",
                "POST",
                "/api/v1/courses",
                json={"title": value[:200], "description": value * 2},
                headers=api,
            )
        await fuzz.send(
            "lone surrogate",
            "POST",
            "/api/v1/courses",
            headers={**api, "Content-Type": "application/json"},
            content=b'{"title": "\\ud800"}',
        )
        await fuzz.send(
            "deeply nested JSON",
            "POST",
            "/api/v1/courses",
            headers={**api, "Content-Type": "application/json"},
            content=b"[" * 100_000 + b"]" * 100_000,
        )
        fuzz.assert_none()

    # Nothing was created or changed by any of it.
    assert await Course.all().count() == 1
    assert await Membership.filter(course_id=course.id).count() == 1
    assert (await Membership.get(course_id=course.id)).role == Role.INSTRUCTOR
    assert await User.all().count() == 1
