"""Profiles, the account hub, signed-in browsers and the privacy statement."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from core import auth, profile
from core.actions import USERNAME_RE, normalize_username
from core.errors import ActionError, NotFound
from core.models import AuthSession, User
from core.profile import (
    ENDED_SESSION_DAYS,
    MAX_ABOUT_CHARS,
    MAX_LINK_CHARS,
    MAX_LINKS,
    about_paragraphs,
    link_label,
    profile_visible_to,
    shared_course_ids,
)
from core.settings import Settings
from core.templating import render
from core.views import current_user, form_fields, login_redirect

# The same words as any other missing page: a private profile must not reveal the account.
NOT_FOUND_MESSAGE = "There is nothing at this address."
PROFILE_LINK_REL = "nofollow ugc noopener noreferrer"


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """A course record the owner made public, in a course the viewer also belongs to."""

    course_title: str
    course_slug: str
    completed: int


async def _public_records(user: User, viewer: User | None) -> list[RecordSummary]:
    from peer_review.models import LearnerRecord
    from peer_review.queries import course_record

    if viewer is None:
        return []
    shared = await shared_course_ids(user, viewer)
    if not shared:
        return []
    records = (
        await LearnerRecord.filter(learner_id=user.id, is_public=True, course_id__in=list(shared))
        .select_related("course")
        .order_by("course__title")
    )
    summaries = []
    for record in records:
        rows = await course_record(record.course, user, viewer=viewer)
        summaries.append(RecordSummary(record.course.title, record.course.slug, len(rows)))
    return summaries


async def profile_page(request: Request) -> Response:
    viewer = current_user(request)
    username = normalize_username(request.path_params["username"])
    user = await User.get_or_none(username=username) if USERNAME_RE.fullmatch(username) else None
    if user is None or not await profile_visible_to(user, viewer):
        raise NotFound(NOT_FOUND_MESSAGE)
    links = [{"url": url, "label": link_label(url)} for url in user.links or []]
    return render(
        request,
        "core/profile.html",
        {
            "profile_user": user,
            "paragraphs": about_paragraphs(user.about or ""),
            "links": links,
            "link_rel": PROFILE_LINK_REL,
            "records": await _public_records(user, viewer),
            "own": viewer is not None and viewer.id == user.id,
        },
    )


async def me(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    return render(request, "core/me.html", {"user": user})


def _profile_values(user: User) -> dict[str, str]:
    return {
        "display_name": user.display_name,
        "about": user.about or "",
        "links": "\n".join(user.links or []),
        "profile_public": "on" if user.profile_public else "",
    }


async def profile_edit(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    values = _profile_values(user)
    errors: dict[str, str] = {}
    message = ""
    status = 200
    if request.method == "POST":
        values = await form_fields(request)
        try:
            await profile.update_profile(
                user,
                display_name=values.get("display_name", ""),
                about=values.get("about", ""),
                links=values.get("links", ""),
                public=values.get("profile_public") == "on",
                acting_user=user,
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            return RedirectResponse("/me/profile?saved=1", status_code=303)
    return render(
        request,
        "core/profile_edit.html",
        {
            "user": user,
            "values": values,
            "errors": errors,
            "message": message,
            "saved": request.method == "GET" and request.query_params.get("saved") == "1",
            "max_about": MAX_ABOUT_CHARS,
            "max_links": MAX_LINKS,
            "max_link_chars": MAX_LINK_CHARS,
        },
        status_code=status,
    )


def _current_session_id(request: Request) -> int | None:
    session: AuthSession | None = request.scope.get("auth_session")
    return session.id if session is not None else None


def _ended_message(raw: str | None) -> str:
    if raw is None or not raw.isdigit() or len(raw) > 6:
        return ""
    count = int(raw)
    if count == 0:
        return "No other browser was signed in."
    return f"Signed out {count} browser{'s' if count != 1 else ''}."


async def sessions(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    settings: Settings = request.app.state.settings
    rows = await profile.live_sessions(user, settings, current_id=_current_session_id(request))
    return render(
        request,
        "core/sessions.html",
        {
            "sessions": rows,
            "others": sum(1 for row in rows if not row.is_current),
            "message": _ended_message(request.query_params.get("ended")),
            "idle_days": settings.session_idle_minutes / 1440,
            "max_days": settings.session_max_days,
        },
    )


def _signed_out(target: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


async def sign_out_one(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    session_id: int = request.path_params["session_id"]
    await profile.sign_out_session(user, session_id, acting_user=user)
    if session_id == _current_session_id(request):
        return _signed_out("/")
    return RedirectResponse("/me/sessions?ended=1", status_code=303)


async def sign_out_others(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    ended = await profile.sign_out_other_sessions(
        user, keep_id=_current_session_id(request), acting_user=user
    )
    return RedirectResponse(f"/me/sessions?ended={ended}", status_code=303)


async def sign_out_everywhere(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    await profile.sign_out_all_sessions(user, acting_user=user)
    return _signed_out("/")


def _duration(minutes: int) -> str:
    """Minutes in the largest whole unit that fits: "7 days", "90 minutes"."""
    for size, unit in ((1440, "day"), (60, "hour")):
        if minutes % size == 0:
            count = minutes // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


async def privacy(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    return render(
        request,
        "core/privacy.html",
        {
            "session_idle": _duration(settings.session_idle_minutes),
            "session_max": _duration(settings.session_max_days * 1440),
            "ended_session_days": ENDED_SESSION_DAYS,
            "export_hours": settings.export_hours,
            "appeal_days": settings.appeal_days,
            "mail_host": _host(settings.smtp_url),
            "meili_host": _host(settings.meili_url),
            "uses_redis": settings.redis_url is not None,
            "postgres": not settings.is_sqlite,
        },
    )


routes: list[BaseRoute] = [
    Route("/users/{username}", profile_page, name="profile"),
    Route("/me", me, name="me"),
    Route("/me/profile", profile_edit, methods=["GET", "POST"], name="profile_edit"),
    Route("/me/sessions", sessions, name="sessions"),
    Route(
        "/me/sessions/{session_id:int}/sign-out",
        sign_out_one,
        methods=["POST"],
        name="sign_out_session",
    ),
    Route(
        "/me/sessions/sign-out-others", sign_out_others, methods=["POST"], name="sign_out_others"
    ),
    Route("/me/sessions/sign-out-all", sign_out_everywhere, methods=["POST"], name="sign_out_all"),
    Route("/privacy", privacy, name="privacy"),
]
