"""HTML pages of the core package: accounts, courses, members, notifications, health."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from core import actions, auth, ratelimit
from core.access import check_not_suspended
from core.errors import ActionError, InvalidInput, NotFound, PermissionDenied
from core.models import Course, Enrolment, Membership, Notification, Role, User
from core.templating import render

LOGIN_WINDOW = 15 * 60
SIGNUP_WINDOW = 60 * 60


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def safe_next(target: str | None, default: str = "/courses") -> str:
    """Only same-site paths: '/x' yes, '//evil.example' and 'https://…' no."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return default


async def form_fields(request: Request) -> dict[str, str]:
    form = await request.form()
    try:
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
    finally:
        await form.close()
    # PostgreSQL cannot store or even look up text with a NUL character in it.
    if any("\x00" in key or "\x00" in value for key, value in fields.items()):
        raise InvalidInput("Text cannot contain NUL characters.")
    return fields


def retry_after_headers(error: ActionError) -> dict[str, str]:
    """Retry-After for a rate-limit refusal shown on a form page (empty otherwise)."""
    retry_after = getattr(error, "retry_after", None)
    return {} if retry_after is None else {"Retry-After": str(retry_after)}


def current_user(request: Request) -> User | None:
    user: User | None = request.scope.get("user")
    return user


def login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)


def set_session_cookie(request: Request, response: Response, key: str, max_age: int) -> None:
    response.set_cookie(
        auth.SESSION_COOKIE,
        key,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


async def home(request: Request) -> Response:
    if current_user(request) is not None:
        return RedirectResponse("/courses", status_code=303)
    return render(request, "core/home.html")


async def signup(request: Request) -> Response:
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    headers: dict[str, str] = {}
    message = ""
    status = 200
    if request.method == "POST":
        values = await form_fields(request)
        settings = request.app.state.settings
        try:
            await ratelimit.hit(
                f"signup:{client_ip(request)}",
                limit=settings.signup_rate_limit,
                window_seconds=SIGNUP_WINDOW,
                what="sign-ups from this network",
            )
            username = values.get("username", "")
            user = await actions.create_user(
                username=username,
                # Optional: whoever leaves it empty is shown by their username.
                display_name=values.get("display_name", "").strip()
                or actions.normalize_username(username),
                password=values.get("password", ""),
                email=values.get("email") or None,
                acting_user=None,
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
            headers = retry_after_headers(error)
            if not values.get("display_name", "").strip():
                # Left empty, so any problem is the username's, and is reported there.
                errors.pop("display_name", None)
        else:
            return await _signed_in(request, user, safe_next(values.get("next")))
    values.pop("password", None)
    return render(
        request,
        "core/signup.html",
        {
            "values": values,
            "errors": errors,
            "message": message,
            "next": safe_next(request.query_params.get("next") or values.get("next")),
        },
        status_code=status,
        headers=headers,
    )


async def _signed_in(request: Request, user: User, target: str) -> Response:
    settings = request.app.state.settings
    old_key = request.cookies.get(auth.SESSION_COOKIE)
    if old_key:
        await auth.end_session(old_key)
    key = await auth.start_session(user, settings, user_agent=request.headers.get("user-agent", ""))
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, key, settings.session_max_days * 86400)
    return response


async def login(request: Request) -> Response:
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    headers: dict[str, str] = {}
    message = ""
    status = 200
    if request.method == "POST":
        values = await form_fields(request)
        settings = request.app.state.settings
        username = actions.normalize_username(values.get("username", ""))
        keys = (f"login-ip:{client_ip(request)}", f"login-user:{username}")
        try:
            for key in keys:
                await ratelimit.check(
                    key,
                    limit=settings.login_rate_limit,
                    window_seconds=LOGIN_WINDOW,
                    what="failed sign-in attempts",
                )
            try:
                user = await actions.check_credentials(
                    username=username, password=values.get("password", "")
                )
            except ActionError:
                for key in keys:
                    await ratelimit.record(key, window_seconds=LOGIN_WINDOW)
                raise
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
            headers = retry_after_headers(error)
        else:
            return await _signed_in(request, user, safe_next(values.get("next")))
    values.pop("password", None)
    return render(
        request,
        "core/login.html",
        {
            "values": values,
            "errors": errors,
            "message": message,
            "next": safe_next(request.query_params.get("next") or values.get("next")),
        },
        status_code=status,
        headers=headers,
    )


async def logout(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "core/logout.html")
    key = request.cookies.get(auth.SESSION_COOKIE)
    if key:
        await auth.end_session(key)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


async def course_list(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    memberships = (
        await Membership.filter(user_id=user.id).select_related("course").order_by("course__title")
    )
    open_courses = (
        await Course.filter(enrolment=Enrolment.OPEN)
        .exclude(id__in=[m.course.id for m in memberships])
        .limit(50)
    )
    return render(
        request,
        "core/course_list.html",
        {
            "memberships": memberships,
            "open_courses": open_courses,
            "join_errors": {},
            "join_message": "",
            "join_values": {},
        },
    )


async def join_with_code(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    values = await form_fields(request)
    try:
        membership = await actions.join_course(
            invite_code=values.get("invite_code", ""), acting_user=user
        )
    except ActionError as error:
        memberships = await Membership.filter(user_id=user.id).select_related("course")
        return render(
            request,
            "core/course_list.html",
            {
                "memberships": memberships,
                "open_courses": [],
                "join_errors": error.fields,
                "join_message": error.message,
                "join_values": values,
            },
            block="join_form",
            status_code=error.status_code,
        )
    await membership.fetch_related("course")
    target = f"/courses/{membership.course.slug}"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def course_new(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    if not user.may_create_courses():
        raise PermissionDenied("Your account cannot create courses. Ask an administrator.")
    values: dict[str, str] = {"enrolment": Enrolment.INVITE.value}
    errors: dict[str, str] = {}
    message = ""
    status = 200
    if request.method == "POST":
        values = await form_fields(request)
        try:
            course = await actions.create_course(
                title=values.get("title", ""),
                description=values.get("description", ""),
                slug=values.get("slug") or None,
                enrolment=values.get("enrolment", Enrolment.INVITE.value),
                acting_user=user,
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            return RedirectResponse(f"/courses/{course.slug}", status_code=303)
    return render(
        request,
        "core/course_new.html",
        {"values": values, "errors": errors, "message": message},
        status_code=status,
    )


async def _course_and_role(request: Request) -> tuple[Course, Role | None]:
    course = await Course.get_or_none(slug=request.path_params["slug"])
    if course is None:
        raise NotFound("There is no such course.")
    return course, await course.role_of(current_user(request))


async def course_home(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    course, role = await _course_and_role(request)
    if not course.can_be_read_by(user, role):
        return render(
            request,
            "core/course_join.html",
            {"course": course, "errors": {}, "message": ""},
            status_code=403,
        )
    await check_not_suspended(course, user)
    counts = {r.value: await Membership.filter(course_id=course.id, role=r).count() for r in Role}
    return render(
        request,
        "core/course_home.html",
        {
            "course": course,
            "role": role,
            "counts": counts,
            "can_manage": course.can_be_managed_by(user, role),
            "is_staff": user.is_admin or (role is not None and role.is_staff),
        },
    )


async def course_join(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    course, _ = await _course_and_role(request)
    values = await form_fields(request)
    try:
        await actions.join_course(
            course=course, invite_code=values.get("invite_code", ""), acting_user=user
        )
    except ActionError as error:
        return render(
            request,
            "core/course_join.html",
            {"course": course, "errors": error.fields, "message": error.message},
            status_code=error.status_code,
        )
    return RedirectResponse(f"/courses/{course.slug}", status_code=303)


async def _member_rows(course: Course) -> list[Membership]:
    return (
        await Membership.filter(course_id=course.id)
        .select_related("user")
        .order_by("role", "user__username")
    )


async def members(request: Request) -> Response:
    """Staff-only (guarded Mount): the member list, with role changes for instructors."""
    user = current_user(request)
    assert user is not None
    course: Course = request.state.course
    role: Role | None = request.state.role
    context: dict[str, Any] = {
        "course": course,
        "members": await _member_rows(course),
        "can_manage": course.can_be_managed_by(user, role),
        "roles": list(Role),
        "errors": {},
        "message": "",
        "values": {},
    }
    if request.method == "POST":
        values = await form_fields(request)
        context["values"] = values
        try:
            await actions.set_member_role(
                course,
                username=values.get("username", ""),
                role=values.get("role", ""),
                acting_user=user,
            )
        except ActionError as error:
            context.update(errors=error.fields, message=error.message)
            return render(
                request,
                "core/members.html",
                context,
                block="members",
                status_code=error.status_code,
            )
        context["members"] = await _member_rows(course)
        context["message"] = "Saved."
        context["values"] = {}
    return render(request, "core/members.html", context, block="members")


async def notifications(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    if request.method == "POST":
        await actions.mark_notifications_read(user, acting_user=user)
        return RedirectResponse("/notifications", status_code=303)
    items = await Notification.filter(user_id=user.id).limit(100)
    return render(request, "core/notifications.html", {"items": items})


async def healthz(request: Request) -> Response:
    """Database, job queue and search status as JSON; 503 when something is down."""
    from core import jobs

    report: dict[str, Any] = {}
    try:
        await Course.all().limit(1).values_list("id", flat=True)
        report["database"] = {"ok": True}
    except Exception as exc:
        report["database"] = {"ok": False, "detail": type(exc).__name__}
    queue = await jobs.dispatcher().health()
    if report["database"]["ok"]:
        queue["oldest_pending_seconds"] = await jobs.oldest_pending_age_seconds()
    report["jobs"] = queue
    from search import service as search_service

    report["search"] = await search_service.backend().health()
    ok = all(bool(part.get("ok")) for part in report.values())
    report["ok"] = ok
    return JSONResponse(report, status_code=200 if ok else 503)


async def course_settings(request: Request) -> Response:
    """Instructor-only (guarded Mount): course settings such as public moderator names."""
    user = current_user(request)
    assert user is not None
    course: Course = request.state.course
    values = await form_fields(request)
    await actions.set_public_moderator_names(
        course, values.get("public_moderator_names") == "on", acting_user=user
    )
    return RedirectResponse(f"/courses/{course.slug}", status_code=303)
