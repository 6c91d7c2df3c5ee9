"""ASGI middleware: who is asking, CSRF protection and security headers."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from http.cookies import SimpleCookie
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tortoise.exceptions import ValidationError

from core.auth import SESSION_COOKIE, resume_session, unread_count, user_for_token
from core.settings import Settings

CSRF_COOKIE = "agora_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
MAX_FORM_BYTES = 25 * 1024 * 1024

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# Powerful browser features Agora never uses, refused for every page and anything it embeds.
# Only names the browser knows: an unknown one is reported as an error on every page.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer", "autoplay", "bluetooth", "browsing-topics", "camera",
        "display-capture", "encrypted-media", "geolocation", "gyroscope", "hid",
        "idle-detection", "magnetometer", "microphone", "midi", "payment",
        "publickey-credentials-get", "screen-wake-lock", "serial", "usb",
        "xr-spatial-tracking",
    )
)  # fmt: skip


def _cookies(scope: Scope) -> dict[str, str]:
    raw = Headers(scope=scope).get("cookie", "")
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def wants_json(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return path.startswith("/api/")


async def _send_error(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    if wants_json(scope):
        body = json.dumps({"error": {"code": code, "message": message, "fields": {}}}).encode()
        content_type = b"application/json"
    else:
        from html import escape

        body = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>Request refused</title>"
            f"<main><h1>Request refused</h1><p>{escape(message)}</p>"
            '<p><a href="/">Home</a></p></main></html>'
        ).encode()
        content_type = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Sets scope["user"] from a bearer token or the session cookie (None when anonymous)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:  # no route has one, and PostgreSQL cannot look it up
            await _send_error(scope, send, 404, "not_found", "There is nothing at this address.")
            return
        scope["user"] = None
        scope["auth_session"] = None
        scope["auth_via"] = None
        authorization = Headers(scope=scope).get("authorization", "")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            scope["auth_via"] = "token"
            if scheme.lower() == "bearer":
                scope["user"] = await user_for_token(token.strip())
        else:
            key = _cookies(scope).get(SESSION_COOKIE, "")
            # Pages show the unread count in their header; it comes with the session lookup.
            page = scope["method"] == "GET" and not scope["path"].startswith("/api/")
            session = await resume_session(key, self.settings, count_unread=page) if key else None
            if session is not None:
                scope["user"] = session.user
                scope["auth_session"] = session
                scope["auth_via"] = "session"
                if page:
                    scope["unread_notifications"] = unread_count(session)
        await _refusing_overlong_values(self.app, scope, receive, send)


async def _refusing_overlong_values(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run `app`, answering 422 when a sent value is too long for its column.

    Tortoise checks a CharField's max_length on lookups as well as on saves, so a
    3,000-character username in a log-in form would otherwise be a server error.
    """
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except ValidationError:
        if started:
            raise
        await _send_error(
            scope, send, 422, "invalid", "Something you sent is too long or not allowed here."
        )


def csrf_token_for(cookie_value: str, secret: str) -> str:
    return hmac.new(secret.encode(), cookie_value.encode(), hashlib.sha256).hexdigest()


class CsrfMiddleware:
    """Every unsafe request from a browser carries a token bound to its CSRF cookie.

    Requests authenticated by a bearer token are exempt: they send no cookies, so another
    site cannot forge them.
    """

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        cookie = _cookies(scope).get(CSRF_COOKIE, "")
        fresh = not (16 <= len(cookie) <= 100)
        if fresh:
            cookie = secrets.token_urlsafe(32)
        expected = csrf_token_for(cookie, self.secret)
        scope["csrf_token"] = expected

        if scope["method"] not in SAFE_METHODS and scope.get("auth_via") != "token":
            refusal = self._origin_problem(scope)
            if refusal is None:
                try:
                    receive, refusal = await self._check_token(scope, receive, expected, fresh)
                except HTTPException as exc:  # a malformed or oversized form body
                    message = f"The form could not be read: {exc.detail}"
                    await _send_error(scope, send, exc.status_code, "bad_request", message)
                    return
            if refusal is not None:
                await _send_error(scope, send, 403, "csrf", refusal)
                return

        if not fresh:
            await self.app(scope, receive, send)
            return

        secure = scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                value = f"{CSRF_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax"
                if secure:
                    value += "; Secure"
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"set-cookie", value.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    @staticmethod
    def _origin_problem(scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if not origin or origin == "null":
            return None if origin is None else "Requests from another site are not accepted."
        host = headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            return "Requests from another site are not accepted."
        return None

    async def _check_token(
        self, scope: Scope, receive: Receive, expected: str, fresh: bool
    ) -> tuple[Receive, str | None]:
        expired = "This form has expired or came from another site. Reload the page and try again."
        if fresh:
            return receive, expired
        sent = Headers(scope=scope).get(CSRF_HEADER)
        if sent is not None:
            ok = hmac.compare_digest(sent, expected)
            return receive, None if ok else expired
        content_type = Headers(scope=scope).get("content-type", "")
        if not content_type.startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            return receive, expired
        body, too_large = await _read_body(receive)
        if too_large:
            return receive, "The upload is too large."
        replay = _replayer(body)
        form = await Request(scope, replay).form(max_files=20, max_fields=2000)
        try:
            token = form.get(CSRF_FIELD)
        finally:
            await form.close()
        ok = isinstance(token, str) and hmac.compare_digest(token, expected)
        return _replayer(body), None if ok else expired


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replayer(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class SecurityHeadersMiddleware:
    """A strict CSP and the usual hardening and privacy headers on every response.

    Nothing a page loads may come from another origin, no referrer leaves the site, and
    links are not resolved ahead of a click.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in (
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"x-dns-prefetch-control", b"off"),
                    (b"permissions-policy", PERMISSIONS_POLICY.encode()),
                ):
                    if name not in present:
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
