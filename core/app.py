"""The application factory: settings in, a Starlette app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from core import routes as core_routes
from core.errors import ActionError, NotAuthenticated
from core.guards import CourseStaffGuard
from core.middleware import AuthMiddleware, CsrfMiddleware, SecurityHeadersMiddleware, wants_json
from core.models import Role
from core.runtime import start, stop
from core.settings import Settings, load_settings
from core.templating import STATIC_DIR, render
from search.backends import SearchBackend

log = logging.getLogger("agora")


INSTRUCTORS = frozenset({Role.INSTRUCTOR})
STAFF = frozenset({Role.MENTOR, Role.INSTRUCTOR})


def all_routes() -> list[BaseRoute]:
    """Every package's routes; privileged ones only inside the guarded Mounts below."""
    from forum import routes as forum_routes
    from moderation import routes as moderation_routes
    from peer_review import routes as peer_review_routes
    from search import routes as search_routes

    packages = (core_routes, forum_routes, moderation_routes, search_routes, peer_review_routes)

    def collect(name: str) -> list[BaseRoute]:
        return [route for package in packages for route in getattr(package, name, [])]

    return [
        *collect("routes"),
        *collect("api_routes"),
        Mount(
            "/courses/{slug}/staff",
            routes=collect("staff_routes"),
            middleware=[Middleware(CourseStaffGuard, roles=INSTRUCTORS)],
            name="staff",
        ),
        Mount(
            "/courses/{slug}/moderate",
            routes=collect("moderate_routes"),
            middleware=[Middleware(CourseStaffGuard, roles=STAFF)],
            name="moderate",
        ),
        Mount(
            "/api/v1/courses/{slug}/staff",
            routes=collect("api_staff_routes"),
            middleware=[Middleware(CourseStaffGuard, roles=INSTRUCTORS)],
            name="api_staff",
        ),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]


def _error_response(
    request: Request, status: int, code: str, message: str, fields: dict[str, str] | None = None
) -> Response:
    if wants_json(request.scope):
        body = {"error": {"code": code, "message": message, "fields": fields or {}}}
        return JSONResponse(body, status_code=status)
    return render(
        request, "core/error.html", {"status": status, "message": message}, status_code=status
    )


async def _action_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ActionError)
    if isinstance(exc, NotAuthenticated) and not wants_json(request.scope):
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    response = _error_response(request, exc.status_code, exc.code, exc.message, exc.fields)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


_HTTP_MESSAGES = {
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This address does not accept that kind of request."),
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, message = _HTTP_MESSAGES.get(exc.status_code, ("error", str(exc.detail)))
    return _error_response(request, exc.status_code, code, message)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_response(
        request,
        500,
        "server_error",
        "Something went wrong on our side. Nothing you sent was lost; please try again.",
    )


def create_app(
    settings: Settings | None = None,
    *,
    search: SearchBackend | None = None,
    housekeeping: bool | None = None,
) -> Starlette:
    """Build the web application; the lifespan opens the database and the job dispatcher.

    Periodic upkeep runs in the web process when jobs do (no Redis); by default only for the
    site `agora serve` starts, whose settings come from the environment.
    """
    if housekeeping is None:
        housekeeping = settings is None
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await start(settings, search=search, housekeeping=housekeeping)
        # Deliver what an earlier process left behind (e.g. it stopped mid-delivery).
        await runtime.dispatcher.wake()
        sweeper = runtime.dispatcher.start_sweeping(settings.outbox_sweep_seconds)
        try:
            yield
        finally:
            sweeper.cancel()
            await stop(runtime)

    app = Starlette(
        routes=all_routes(),
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(AuthMiddleware, settings=settings),
            Middleware(CsrfMiddleware, secret=settings.secret_key),
        ],
        exception_handlers={
            ActionError: _action_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings

    return app
