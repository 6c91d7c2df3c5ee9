"""The JSON API as a script or another program sees it: tokens, courses, members, OpenAPI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from core import actions, passwords
from core.api import ApiRoute
from core.models import ApiToken, Course, Membership, Notification, Role, User
from core.timeutil import utcnow
from tests.conftest import drain_jobs
from tests.factories import make_course, make_user


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters: these tests are about the web layer, not the hash's cost."""
    quick = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", quick)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", quick.hash("agora-timing-equaliser"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the API's error shape with this status and code; returns the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"].strip()
    assert isinstance(error["fields"], dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in error["fields"].items())
    return error  # type: ignore[no-any-return]


async def token_for(user: User) -> str:
    return await actions.issue_api_token(user, name="test", acting_user=None)


# --- Token authentication ------------------------------------------------------------------


async def test_me_with_a_token(client: httpx.AsyncClient) -> None:
    user = await make_user("ann", display_name="Ann Example")
    token = await token_for(user)
    response = await client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "username": "ann",
        "display_name": "Ann Example",
        "is_admin": False,
        "can_create_courses": False,
    }
    # Only the digest is stored.
    stored = await ApiToken.get(user_id=user.id)
    assert stored.token_hash != token and token not in stored.token_hash


async def test_no_token_or_a_bad_one_is_401(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.get("/api/v1/me"), 401, "not_authenticated")
    assert "Bearer" in error["message"]
    assert error["fields"] == {}

    for header in ("Bearer nonsense", "Bearer agora_" + "A" * 43, "Basic YW5uOnB3"):
        assert_error(
            await client.get("/api/v1/me", headers={"Authorization": header}),
            401,
            "not_authenticated",
        )


async def test_a_revoked_token_stops_working(client: httpx.AsyncClient) -> None:
    user = await make_user("ann")
    token = await token_for(user)
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
    await ApiToken.filter(user_id=user.id).update(revoked_at=utcnow())
    assert_error(await client.get("/api/v1/me", headers=bearer(token)), 401, "not_authenticated")


async def test_one_users_revoked_token_leaves_another_token_working(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user("ann")
    old, new = await token_for(user), await token_for(user)
    stored_old = await ApiToken.filter(user_id=user.id).order_by("id").first()
    assert stored_old is not None
    await ApiToken.filter(id=stored_old.id).update(revoked_at=utcnow())
    assert (await client.get("/api/v1/me", headers=bearer(old))).status_code == 401
    assert (await client.get("/api/v1/me", headers=bearer(new))).status_code == 200


# --- Courses -------------------------------------------------------------------------------


async def test_creating_a_course_needs_the_permission(client: httpx.AsyncClient) -> None:
    token = await token_for(await make_user("leo"))
    response = await client.post("/api/v1/courses", json={"title": "Mine"}, headers=bearer(token))
    assert_error(response, 403, "forbidden")
    assert await Course.all().count() == 0


async def test_create_a_course_and_see_it_listed(client: httpx.AsyncClient) -> None:
    user = await make_user("ina", can_create_courses=True)
    token = await token_for(user)
    response = await client.post(
        "/api/v1/courses",
        json={"title": "Distributed Systems", "description": "Clocks.", "enrolment": "open"},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    created = response.json()
    course = await Course.get(slug=created["slug"])
    assert created == {
        "slug": course.slug,
        "title": "Distributed Systems",
        "description": "Clocks.",
        "enrolment": "open",
        "role": "instructor",
        "invite_code": course.invite_code,
    }
    assert await Membership.filter(
        course_id=course.id, user_id=user.id, role=Role.INSTRUCTOR
    ).exists()

    listing = await client.get("/api/v1/courses", headers=bearer(token))
    assert listing.status_code == 200
    assert listing.json() == [created]


async def test_invalid_course_bodies_are_refused_field_by_field(
    client: httpx.AsyncClient,
) -> None:
    token = await token_for(await make_user("ina", can_create_courses=True))
    headers = bearer(token)

    async def create(**kwargs: Any) -> dict[str, Any]:
        kwargs["headers"] = {**headers, **kwargs.get("headers", {})}
        response = await client.post("/api/v1/courses", **kwargs)
        return assert_error(response, 422, "invalid")

    missing = await create(json={"description": "no title"})
    assert set(missing["fields"]) == {"title"}

    extra = await create(json={"title": "Fine", "surprise": True})
    assert set(extra["fields"]) == {"surprise"}

    too_long = await create(json={"title": "t" * 201})
    assert set(too_long["fields"]) == {"title"}
    assert "200" in too_long["fields"]["title"]

    bogus = await create(json={"title": "Fine", "enrolment": "bogus"})
    assert set(bogus["fields"]) == {"enrolment"}

    several = await create(json={"enrolment": "bogus", "slug": 5})
    assert {"title", "enrolment", "slug"} <= set(several["fields"])

    not_json = await create(
        content=b"title=Fine", headers={**headers, "Content-Type": "application/json"}
    )
    assert "JSON" in not_json["message"]

    array = await create(json=[{"title": "Fine"}])
    assert "JSON object" in array["message"]

    empty = await create(content=b"")
    assert "JSON object" in empty["message"]

    assert await Course.all().count() == 0
    assert await Membership.all().count() == 0


async def test_join_with_the_invite_code(client: httpx.AsyncClient) -> None:
    course = await make_course(await make_user("ina", can_create_courses=True), title="Algebra")
    learner = await make_user("leo")
    token = await token_for(learner)

    wrong_code = "ZZZZZZZZZZ" if course.invite_code != "ZZZZZZZZZZ" else "YYYYYYYYYY"
    wrong = await client.post(
        "/api/v1/courses/join", json={"invite_code": wrong_code}, headers=bearer(token)
    )
    error = assert_error(wrong, 404, "not_found")
    assert set(error["fields"]) == {"invite_code"}
    assert not await Membership.filter(user_id=learner.id).exists()

    # Codes are read aloud and typed: case and dashes do not matter.
    typed = f"{course.invite_code[:4].lower()}-{course.invite_code[4:].lower()}"
    response = await client.post(
        "/api/v1/courses/join", json={"invite_code": typed}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    joined = response.json()
    assert joined["slug"] == course.slug
    assert joined["role"] == "learner"
    assert joined["invite_code"] is None

    listing = await client.get("/api/v1/courses", headers=bearer(token))
    assert listing.status_code == 200
    (item,) = listing.json()
    assert item["slug"] == course.slug
    assert item["role"] == "learner"
    assert item["invite_code"] is None
    assert course.invite_code not in listing.text


# --- Members (staff) -----------------------------------------------------------------------


async def test_an_instructor_adds_a_member_who_is_notified(client: httpx.AsyncClient) -> None:
    instructor = await make_user("ina", can_create_courses=True)
    course = await make_course(instructor, title="Topology")
    mentor = await make_user("mona", display_name="Mona")
    token = await token_for(instructor)
    url = f"/api/v1/courses/{course.slug}/staff/members"

    response = await client.post(
        url, json={"username": "mona", "role": "mentor"}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    added = response.json()
    assert added["username"] == "mona"
    assert added["display_name"] == "Mona"
    assert added["role"] == "mentor"
    assert added["joined_at"]

    await drain_jobs()
    notes = await Notification.filter(user_id=mentor.id)
    assert len(notes) == 1
    assert "Topology" in notes[0].message and "mentor" in notes[0].message
    assert notes[0].link == f"/courses/{course.slug}"
    assert await Notification.filter(user_id=instructor.id).count() == 0

    listing = await client.get(url, headers=bearer(token))
    assert listing.status_code == 200
    assert [(m["username"], m["role"]) for m in listing.json()] == [
        ("ina", "instructor"),
        ("mona", "mentor"),
    ]


async def test_member_changes_refuse_bad_input(client: httpx.AsyncClient) -> None:
    instructor = await make_user("ina", can_create_courses=True)
    course = await make_course(instructor)
    token = await token_for(instructor)
    url = f"/api/v1/courses/{course.slug}/staff/members"

    bad_role = await client.post(
        url, json={"username": "ina", "role": "overlord"}, headers=bearer(token)
    )
    assert set(assert_error(bad_role, 422, "invalid")["fields"]) == {"role"}

    nobody = await client.post(
        url, json={"username": "ghost", "role": "learner"}, headers=bearer(token)
    )
    assert set(assert_error(nobody, 404, "not_found")["fields"]) == {"username"}

    last = await client.post(
        url, json={"username": "ina", "role": "learner"}, headers=bearer(token)
    )
    assert set(assert_error(last, 409, "conflict")["fields"]) == {"role"}
    assert (await Membership.get(user_id=instructor.id)).role == Role.INSTRUCTOR
    await drain_jobs()
    assert await Notification.all().count() == 0


# --- OpenAPI -------------------------------------------------------------------------------


def api_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, ApiRoute]]:
    for route in routes:
        if isinstance(route, ApiRoute):
            yield prefix + route.path, route
        elif isinstance(route, Mount):
            yield from api_routes(route.routes, prefix + route.path)


def openapi_path(path: str) -> str:
    """A Starlette path as an OpenAPI path template: '{id:int}' becomes '{id}'."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


async def test_openapi_document_describes_every_api_route(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    response = await client.get("/api/v1/openapi.json")  # no token: it is public
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()

    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] and document["info"]["version"]
    paths = document["paths"]
    schemas = document["components"]["schemas"]
    assert isinstance(paths, dict) and isinstance(schemas, dict)

    routes = [(openapi_path(path), route) for path, route in api_routes(app.routes)]
    assert len(routes) >= 7
    assert any("/staff/" in path for path, _ in routes)  # mounted routes are included
    expected = {(path, route.method) for path, route in routes}
    documented = {(path, method) for path, operations in paths.items() for method in operations}
    assert documented == expected

    for path, route in routes:
        operation = paths[path][route.method]
        assert operation["summary"]
        assert str(route.status_code) in operation["responses"]
        if route.method in {"post", "put", "patch"}:
            assert route.body is not None or route.bodyless, (
                f"{route.method} {path} declares no body model"
            )
        if route.body is not None:
            body = operation["requestBody"]
            assert body["required"] is True
            assert "$ref" in body["content"]["application/json"]["schema"]
        else:
            assert "requestBody" not in operation
        template_params = set(re.findall(r"\{(\w+)\}", path))
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == template_params, path
        if route.public:
            assert "security" not in operation
        else:
            assert operation["security"] == [{"bearer": []}]
            assert "401" in operation["responses"]

    all_refs = list(refs(document))
    assert all_refs
    for ref in all_refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref

    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids))
