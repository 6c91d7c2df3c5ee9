"""Moderation pages for the course's staff: acts on posts, threads and members, the flag and
appeal queues, and the rules list.

core/app.py mounts them behind CourseStaffGuard (moderation.views holds the route lists): the
guard leaves the course and the role in request.state. Every change is a call to
moderation.actions, or moderation.rules for the rules list.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.errors import ActionError, Conflict, InvalidInput, NotAuthenticated, NotFound
from core.models import Course, Membership, Role, User
from core.templating import is_htmx, render
from core.views import form_fields
from forum.models import Forum, Post, Thread
from moderation import actions, presenters
from moderation import rules as rule_actions
from moderation.log import timestamp
from moderation.models import Appeal, Flag, LogEntry, Rule, Sanction, SanctionKind, Source

# --- shared pieces ---------------------------------------------------------------------


def signed_in(request: Request) -> User:
    user: User | None = request.scope.get("user")
    if user is None:
        raise NotAuthenticated("Sign in first.")
    return user


def done(request: Request, target: str) -> Response:
    """After a successful act: a normal redirect, or HX-Redirect for htmx."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _citable_rules(course: Course) -> list[Rule]:
    return [r for r in await actions.ensure_default_rules(course) if not r.retired]


def _act_context(
    course: Course,
    *,
    heading: str,
    explanation: str,
    action_url: str,
    back_url: str,
    submit_label: str,
    rules: list[Rule],
    values: dict[str, str],
    errors: dict[str, str],
    message: str,
    preview: presenters.PostPreview | None = None,
    facts: list[tuple[str, str]] | None = None,
    forums: list[Forum] | None = None,
) -> dict[str, Any]:
    return {
        "course": course,
        "heading": heading,
        "explanation": explanation,
        "action_url": action_url,
        "back_url": back_url,
        "submit_label": submit_label,
        "rules": rules,
        "values": values,
        "errors": errors,
        "message": message,
        "preview": preview,
        "facts": facts or [],
        "forums": forums,
    }


# --- acts on posts and threads (moderate_routes) ---------------------------------------

_PostAct = Callable[..., Awaitable[LogEntry]]
POST_ACTS: dict[str, tuple[_PostAct, str, str]] = {
    "hide": (
        actions.hide_post,
        "Hide post",
        "Learners see a notice with the rule and reason instead of the text; the author "
        "and the staff still see it. The author is told and can appeal.",
    ),
    "unhide": (actions.unhide_post, "Unhide post", "The post becomes visible to everyone again."),
    "remove": (
        actions.remove_post,
        "Remove post",
        "Only the course's staff still see the text (kept for appeals). The author is "
        "told and can appeal.",
    ),
    "restore": (
        actions.restore_post,
        "Restore post",
        "The removed post becomes visible to everyone again.",
    ),
}


async def post_act(request: Request, act: str) -> Response:
    course: Course = request.state.course
    role: Role | None = request.state.role
    user = signed_in(request)
    post = await Post.get_or_none(id=request.path_params["post_id"], thread__course_id=course.id)
    if post is None:
        raise NotFound("There is no such post in this course.")
    work, heading, explanation = POST_ACTS[act]
    values = {"rule": request.query_params.get("rule", ""), "reason": ""}
    errors: dict[str, str] = {}
    message, status = "", 200
    if request.method == "POST":
        values = await form_fields(request)
        try:
            await work(
                post,
                rule_code=values.get("rule", ""),
                reason=values.get("reason", ""),
                acting_user=user,
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            return done(request, await presenters.post_url(course, post))
    preview = await presenters.post_preview(course, post, user, role)
    context = _act_context(
        course,
        heading=heading,
        explanation=explanation,
        action_url=request.url.path,
        back_url=preview.url,
        submit_label=heading,
        rules=await _citable_rules(course),
        values=values,
        errors=errors,
        message=message,
        preview=preview,
    )
    return render(request, "moderation/act.html", context, block="act_form", status_code=status)


THREAD_ACTS = {
    "lock": ("Lock thread", "Learners can no longer reply; they see that it is locked."),
    "unlock": ("Unlock thread", "Members can reply again."),
    "pin": ("Pin thread", "The thread stays at the top of its forum."),
    "unpin": ("Unpin thread", "The thread is ordered by activity again."),
    "move": ("Move thread", "The thread moves to another forum of this course."),
}


async def thread_act(request: Request, act: str) -> Response:
    course: Course = request.state.course
    user = signed_in(request)
    thread = await Thread.get_or_none(id=request.path_params["thread_id"], course_id=course.id)
    if thread is None:
        raise NotFound("There is no such thread in this course.")
    forum = await Forum.get(id=thread.forum_id)  # type: ignore[attr-defined]
    forums = None
    if act == "move":
        forums = list(await Forum.filter(course_id=course.id).exclude(id=forum.id))
    heading, explanation = THREAD_ACTS[act]
    values = {"rule": request.query_params.get("rule", ""), "reason": "", "forum": ""}
    errors: dict[str, str] = {}
    message, status = "", 200
    back_url = f"/courses/{course.slug}/threads/{thread.id}"
    if request.method == "POST":
        values = await form_fields(request)
        rule, reason = values.get("rule", ""), values.get("reason", "")
        try:
            if act in {"lock", "unlock"}:
                await actions.lock_thread(
                    thread, locked=act == "lock", rule_code=rule, reason=reason, acting_user=user
                )
            elif act in {"pin", "unpin"}:
                await actions.pin_thread(
                    thread, pinned=act == "pin", rule_code=rule, reason=reason, acting_user=user
                )
            else:
                target = await _forum_choice(course, values.get("forum", ""))
                await actions.move_thread(
                    thread, target, rule_code=rule, reason=reason, acting_user=user
                )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            return done(request, back_url)
    facts = [
        ("Thread", thread.title),
        ("Forum", forum.title),
        (
            "State",
            ", ".join(
                word
                for word, on in (("locked", thread.is_locked), ("pinned", thread.is_pinned))
                if on
            )
            or "open",
        ),
    ]
    context = _act_context(
        course,
        heading=heading,
        explanation=explanation,
        action_url=request.url.path,
        back_url=back_url,
        submit_label=heading,
        rules=await _citable_rules(course),
        values=values,
        errors=errors,
        message=message,
        facts=facts,
        forums=forums,
    )
    return render(request, "moderation/act.html", context, block="act_form", status_code=status)


def small_id(raw: str) -> int | None:
    """A form's id field as an int, or None for anything that cannot be a row id."""
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else None


async def _forum_choice(course: Course, raw: str) -> Forum:
    forum = None
    if (forum_id := small_id(raw)) is not None:
        forum = await Forum.get_or_none(id=forum_id, course_id=course.id)
    if forum is None:
        message = "Choose one of this course's forums."
        raise InvalidInput(message, fields={"forum": message})
    return forum


def endpoint_for(work: Callable[[Request, str], Awaitable[Response]], act: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return await work(request, act)

    endpoint.__name__ = endpoint.__qualname__ = f"{work.__name__}_{act}"
    return endpoint


# --- sanctions -------------------------------------------------------------------------


def _days(raw: str, kind: str) -> float | None:
    if kind == SanctionKind.WARNING.value:
        return None
    try:
        return float(raw.strip().replace(",", "."))
    except ValueError:
        message = "Give the duration in days, for example 1 or 0.5."
        raise InvalidInput(message, fields={"days": message}) from None


async def sanction(request: Request) -> Response:
    course: Course = request.state.course
    user = signed_in(request)
    member = await User.get_or_none(username=request.path_params["username"])
    membership = None
    if member is not None:
        membership = await Membership.get_or_none(course_id=course.id, user_id=member.id)
    if member is None or membership is None:
        raise NotFound("There is no such member in this course.")
    values = {
        "kind": SanctionKind.WARNING.value,
        "days": "1",
        "rule": request.query_params.get("rule", ""),
        "reason": "",
    }
    errors: dict[str, str] = {}
    message, status = "", 200
    page = f"/courses/{course.slug}/moderate/members/{member.username}/sanction"
    if request.query_params.get("recorded") == "1":
        message = f"Recorded in the log; @{member.username} has been told."
    if request.method == "POST":
        values = await form_fields(request)
        kind = values.get("kind", "")
        try:
            if kind not in {k.value for k in SanctionKind}:
                text = "Choose a warning, a silence or a suspension."
                raise InvalidInput(text, fields={"kind": text})
            await actions.sanction_user(
                course,
                member,
                kind,
                rule_code=values.get("rule", ""),
                reason=values.get("reason", ""),
                days=_days(values.get("days", ""), kind),
                acting_user=user,
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            return done(request, page + "?recorded=1")
    return render(
        request,
        "moderation/sanction.html",
        {
            "course": course,
            "member": member,
            "member_role": Role(membership.role),
            "kinds": list(SanctionKind),
            "rules": await _citable_rules(course),
            "sanctions": await presenters.sanction_rows(course, member.id),
            "values": values,
            "errors": errors,
            "message": message,
            "action_url": page,
        },
        block="sanction_form",
        status_code=status,
    )


async def lift(request: Request) -> Response:
    course: Course = request.state.course
    user = signed_in(request)
    row = await Sanction.get_or_none(id=request.path_params["sanction_id"], course_id=course.id)
    if row is None:
        raise NotFound("There is no such sanction in this course.")
    member = await User.get(id=row.user_id)  # type: ignore[attr-defined]
    back = f"/courses/{course.slug}/moderate/members/{member.username}/sanction"
    values = {"rule": "", "reason": ""}
    entry = await LogEntry.get_or_none(seq=row.entry_seq)
    if entry is not None:
        values["rule"] = entry.rule_code
    errors: dict[str, str] = {}
    message, status = "", 200
    if row.lifted_at is not None and request.method == "GET":
        message = "This sanction was already lifted."
    if request.method == "POST":
        values = await form_fields(request)
        try:
            await actions.lift_sanction(
                row,
                rule_code=values.get("rule", ""),
                reason=values.get("reason", ""),
                acting_user=user,
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            return done(request, back)
    ends = f"{row.ends_at:%Y-%m-%d %H:%M} UTC" if row.ends_at else "no end"
    facts = [
        ("Member", f"{member.display_name} (@{member.username})"),
        ("Sanction", f"{SanctionKind(row.kind).value}, until {ends}"),
    ]
    if entry is not None:
        facts.append(("Cited", f"{entry.rule_code}: “{entry.reason}”"))
    context = _act_context(
        course,
        heading="Lift sanction",
        explanation="Ends the sanction now (or withdraws a warning); the member is told.",
        action_url=request.url.path,
        back_url=back,
        submit_label="Lift sanction",
        rules=await _citable_rules(course),
        values=values,
        errors=errors,
        message=message,
        facts=facts,
    )
    return render(request, "moderation/act.html", context, block="act_form", status_code=status)


# --- the flag queue --------------------------------------------------------------------


async def _flags_page(
    request: Request,
    course: Course,
    user: User,
    role: Role | None,
    *,
    failed: int | None = None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str = "",
    done: str = "",
    status: int = 200,
) -> Response:
    rules = await _citable_rules(course)
    items = await presenters.open_flags(course, user, role, rules)
    return render(
        request,
        "moderation/flags.html",
        {
            "course": course,
            "items": items,
            "rules": rules,
            "failed": failed,
            "values": values or {},
            "errors": errors or {},
            "message": message,
            "done": done,
        },
        block="queue",
        status_code=status,
    )


FLAG_DONE = {
    "hide": "The post is hidden; its author and the flaggers have been told.",
    "remove": "The post is removed; its author and the flaggers have been told.",
    "dismiss": "The flag is dismissed; the flagger has been told.",
}


async def flag_queue(request: Request) -> Response:
    course: Course = request.state.course
    done = FLAG_DONE.get(request.query_params.get("done", ""), "")
    return await _flags_page(request, course, signed_in(request), request.state.role, done=done)


async def flag_decision(request: Request) -> Response:
    course: Course = request.state.course
    role: Role | None = request.state.role
    user = signed_in(request)
    flag = await Flag.get_or_none(id=request.path_params["flag_id"], course_id=course.id)
    if flag is None:
        raise NotFound("There is no such flag in this course.")
    values = await form_fields(request)
    act = values.get("act", "")
    rule, reason = values.get("rule", ""), values.get("reason", "")
    try:
        if act == "dismiss":
            await actions.dismiss_flag(flag, rule_code=rule, reason=reason, acting_user=user)
        elif act in {"hide", "remove"}:
            post = await Post.get_or_none(id=flag.post_id)
            if post is None:
                raise Conflict("The post is gone; dismiss the flag instead.")
            work = actions.hide_post if act == "hide" else actions.remove_post
            await work(post, rule_code=rule, reason=reason, acting_user=user, source=Source.FLAG)
        else:
            raise InvalidInput("Choose hide, remove or dismiss.")
    except ActionError as error:
        return await _flags_page(
            request,
            course,
            user,
            role,
            failed=flag.id,
            values=values,
            errors=error.fields,
            message=error.message,
            status=error.status_code,
        )
    if is_htmx(request):
        return await _flags_page(request, course, user, role, done=FLAG_DONE[act])
    return RedirectResponse(f"/courses/{course.slug}/moderate/flags?done={act}", status_code=303)


# --- the appeal queue ------------------------------------------------------------------


async def _appeals_page(
    request: Request,
    course: Course,
    user: User,
    *,
    failed: int | None = None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str = "",
    done: str = "",
    status: int = 200,
) -> Response:
    pending, decided = await presenters.course_appeals(course, user)
    return render(
        request,
        "moderation/appeals.html",
        {
            "course": course,
            "pending": pending,
            "decided": decided,
            "failed": failed,
            "values": values or {},
            "errors": errors or {},
            "message": message,
            "done": done,
            "stamp": timestamp,
        },
        block="queue",
        status_code=status,
    )


APPEAL_DONE = {
    "uphold": "The act stands; the appellant has been told.",
    "overturn": "The act is reversed and both entries are in the log; the appellant has been told.",
}


async def appeal_queue(request: Request) -> Response:
    course: Course = request.state.course
    done = APPEAL_DONE.get(request.query_params.get("done", ""), "")
    return await _appeals_page(request, course, signed_in(request), done=done)


async def appeal_decision(request: Request) -> Response:
    course: Course = request.state.course
    user = signed_in(request)
    row = await Appeal.get_or_none(id=request.path_params["appeal_id"], course_id=course.id)
    if row is None:
        raise NotFound("There is no such appeal in this course.")
    values = await form_fields(request)
    outcome = values.get("outcome", "")
    try:
        if outcome not in APPEAL_DONE:
            text = "Choose whether the act stands or is overturned."
            raise InvalidInput(text, fields={"outcome": text})
        await actions.decide_appeal(
            row,
            overturn=outcome == "overturn",
            decision=values.get("decision", ""),
            acting_user=user,
        )
    except ActionError as error:
        return await _appeals_page(
            request,
            course,
            user,
            failed=row.id,
            values=values,
            errors=error.fields,
            message=error.message,
            status=error.status_code,
        )
    if is_htmx(request):
        return await _appeals_page(request, course, user, done=APPEAL_DONE[outcome])
    return RedirectResponse(
        f"/courses/{course.slug}/moderate/appeals?done={outcome}", status_code=303
    )


# --- the rules (staff_routes: instructors) ---------------------------------------------


async def rules_page(request: Request) -> Response:
    course: Course = request.state.course
    user = signed_in(request)
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    message, status, failed = "", 200, ""
    if request.method == "POST":
        values = await form_fields(request)
        op = values.get("op", "")
        failed = values.get("rule_id", "") or "new"
        try:
            if op == "add":
                rule = await rule_actions.add_rule(
                    course,
                    code=values.get("code", ""),
                    text=values.get("text", ""),
                    acting_user=user,
                )
                message = f"Rule {rule.code} added."
            elif op in {"edit", "retire", "restore"}:
                found = None
                if (rule_id := small_id(values.get("rule_id", ""))) is not None:
                    found = await Rule.get_or_none(id=rule_id, course_id=course.id)
                if found is None:
                    raise NotFound("There is no such rule in this course.")
                if op == "edit":
                    await rule_actions.edit_rule(
                        found, text=values.get("text", ""), acting_user=user
                    )
                    message = f"Rule {found.code} saved."
                else:
                    await rule_actions.set_rule_retired(
                        found, retired=op == "retire", acting_user=user
                    )
                    message = f"Rule {found.code} {'retired' if op == 'retire' else 'restored'}."
            else:
                raise InvalidInput("Choose what to do with the rules.")
            values, failed = {}, ""
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
    return render(
        request,
        "moderation/rules.html",
        {
            "course": course,
            "rules": await actions.ensure_default_rules(course),
            "values": values,
            "errors": errors,
            "message": message,
            "failed": failed,
        },
        block="rules",
        status_code=status,
    )
