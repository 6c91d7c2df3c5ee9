"""The guard in front of every privileged Mount (CONVENTIONS.md habit 4)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from core.middleware import _send_error, wants_json
from core.models import Course, Role


class CourseStaffGuard:
    """Lets through only the course's staff with one of `roles` (admins always)."""

    def __init__(self, app: ASGIApp, roles: frozenset[Role]) -> None:
        self.app = app
        self.roles = roles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user = scope.get("user")
        if user is None:
            if wants_json(scope):
                await _send_error(scope, send, 401, "not_authenticated", "Sign in first.")
                return
            target = quote(scope["path"], safe="/")
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", f"/login?next={target}".encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        slug = scope.get("path_params", {}).get("slug", "")
        course = await Course.get_or_none(slug=slug)
        if course is None:
            await _send_error(scope, send, 404, "not_found", "There is no such course.")
            return
        role = await course.role_of(user)
        if not (user.is_admin or role in self.roles) or not user.is_active:
            await _send_error(
                scope, send, 403, "forbidden", "This page is for the course's staff only."
            )
            return
        scope.setdefault("state", {})
        scope["state"]["course"] = course
        scope["state"]["role"] = role
        await self.app(scope, receive, send)
