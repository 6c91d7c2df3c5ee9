"""Moderation pages for members: flagging a post, one's standing, notices and appeals.

Also the package's route lists: `moderate_routes` (mentors and instructors) and
`staff_routes` (instructors) are mounted by core/app.py behind CourseStaffGuard; their pages
are in moderation/staff_views.py. The pages here check the signed-in user themselves (a
suspended member still reaches their standing page).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from core.access import course_member
from core.errors import ActionError, Conflict, NotFound
from core.models import User
from core.templating import render
from core.views import form_fields
from forum.models import Post, PostState, is_staff
from forum.presenters import body_is_visible
from moderation import actions, presenters
from moderation.models import Flag, Notice
from moderation.staff_views import (
    POST_ACTS,
    THREAD_ACTS,
    appeal_decision,
    appeal_queue,
    done,
    endpoint_for,
    flag_decision,
    flag_queue,
    lift,
    post_act,
    rules_page,
    sanction,
    thread_act,
)

FLAG_THANKS = "Thanks — a moderator will look at it; you'll be told the outcome."


# --- learners: flag a post -------------------------------------------------------------


async def flag(request: Request) -> Response:
    course, user, role = await course_member(request)
    post = await Post.get_or_none(id=request.path_params["post_id"], thread__course_id=course.id)
    if post is None:
        raise NotFound("There is no such post in this course.")
    if post.is_deleted:
        raise Conflict("Its author deleted this post; there is nothing left to flag.")
    # The excerpt below must not show a hidden or removed text to those who may not read it.
    if not body_is_visible(post, user, role) or (
        post.state != PostState.VISIBLE and not is_staff(user, role)
    ):
        raise Conflict("A moderator has already acted on this post; the thread shows why.")
    preview = await presenters.post_preview(course, post, user, role)
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    message, status, sent = "", 200, False
    already = await Flag.filter(post_id=post.id, flagger_id=user.id, resolved_at=None).exists()
    if request.method == "POST":
        values = await form_fields(request)
        try:
            await actions.flag_post(
                post,
                category=values.get("category", ""),
                text=values.get("text", ""),
                acting_user=user,
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            sent = True
    return render(
        request,
        "moderation/flag.html",
        {
            "course": course,
            "preview": preview,
            "categories": list(presenters.FLAG_LABELS.items()),
            "values": values,
            "errors": errors,
            "message": message,
            "sent": sent,
            "already": already,
            "thanks": FLAG_THANKS,
        },
        block="flag_form",
        status_code=status,
    )


# --- the affected person: standing, notices, appeals -----------------------------------


async def standing(request: Request) -> Response:
    """Everything moderation did to or for the signed-in user, in every course."""
    user: User | None = request.scope.get("user")
    if user is None:
        return RedirectResponse("/login?next=/me/standing", status_code=303)
    data = await presenters.standing_of(user)
    return render(
        request,
        "moderation/standing.html",
        {
            "notices": data.notices,
            "sanctions": data.sanctions,
            "appeals": data.appeals,
            "flags": data.flags,
            "act_names": presenters.ACT_NAMES,
        },
    )


async def notice_page(request: Request) -> Response:
    """One notice in full, with the appeal form while the window is open."""
    user: User | None = request.scope.get("user")
    if user is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    notice = await Notice.get_or_none(id=request.path_params["notice_id"], user_id=user.id)
    if notice is None:
        raise NotFound("There is no such notice.")
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    message, status = "", 200
    if request.method == "POST":
        values = await form_fields(request)
        try:
            await actions.appeal(notice, text=values.get("text", ""), acting_user=user)
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            return done(request, f"/me/standing#notice-{notice.id}")
    (item,) = await presenters.notice_items([notice])
    return render(
        request,
        "moderation/notice.html",
        {
            "item": item,
            "values": values,
            "errors": errors,
            "message": message,
            "act_names": presenters.ACT_NAMES,
        },
        block="appeal_form",
        status_code=status,
    )


# --- route lists (core/app.py mounts the privileged ones behind CourseStaffGuard) -------

routes: list[BaseRoute] = [
    Route(
        "/courses/{slug}/posts/{post_id:int}/flag", flag, methods=["GET", "POST"], name="flag_post"
    ),
    Route("/me/standing", standing, name="standing"),
    Route("/me/notices/{notice_id:int}", notice_page, name="notice"),
    Route(
        "/me/notices/{notice_id:int}/appeal", notice_page, methods=["GET", "POST"], name="appeal"
    ),
]

moderate_routes: list[BaseRoute] = [
    *(
        Route(
            f"/posts/{{post_id:int}}/{act}",
            endpoint_for(post_act, act),
            methods=["GET", "POST"],
            name=f"{act}_post",
        )
        for act in POST_ACTS
    ),
    *(
        Route(
            f"/threads/{{thread_id:int}}/{act}",
            endpoint_for(thread_act, act),
            methods=["GET", "POST"],
            name=f"{act}_thread",
        )
        for act in THREAD_ACTS
    ),
    Route("/members/{username}/sanction", sanction, methods=["GET", "POST"], name="sanction"),
    Route("/sanctions/{sanction_id:int}/lift", lift, methods=["GET", "POST"], name="lift_sanction"),
    Route("/flags", flag_queue, name="flag_queue"),
    Route("/flags/{flag_id:int}", flag_decision, methods=["POST"], name="flag_decision"),
    Route("/appeals", appeal_queue, name="appeal_queue"),
    Route("/appeals/{appeal_id:int}", appeal_decision, methods=["POST"], name="appeal_decision"),
]

staff_routes: list[BaseRoute] = [
    Route("/rules", rules_page, methods=["GET", "POST"], name="rules"),
]
