from __future__ import annotations

import httpx

from tests.factories import log_in, make_user


async def test_login_page_renders(client: httpx.AsyncClient) -> None:
    response = await client.get("/login")
    assert response.status_code == 200
    assert "Log in" in response.text


async def test_log_in_and_see_courses(client: httpx.AsyncClient) -> None:
    await make_user("ann")
    response = await log_in(client, "ann")
    assert response.status_code == 303
    page = await client.get("/courses")
    assert page.status_code == 200
    assert "My courses" in page.text
