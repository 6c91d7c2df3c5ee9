"""HTML pages of the forums. htmx requests get a block of the same page template."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from math import ceil
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.access import course_member
from core.errors import ActionError, NotFound, PermissionDenied
from core.models import Course, Role, User
from core.templating import is_htmx, render
from core.views import form_fields
from forum import actions
from forum.models import (
    Forum,
    Post,
    Revision,
    Thread,
    ThreadKind,
    forum_in_course,
    post_in_course,
    thread_in_course,
)
from forum.presenters import (
    POSTS_PER_PAGE,
    Author,
    author_for,
    body_is_visible,
    course_forums,
    thread_for_viewer,
    thread_page,
    thread_summaries,
)
from moderation.actions import ensure_default_rules


def _page_number(request: Request, values: dict[str, str] | None = None) -> int:
    raw = (values or {}).get("page") or request.query_params.get("page", "1")
    try:
        return max(1, int(raw))
    except ValueError:
        return 1


async def forum_index(request: Request) -> Response:
    course, user, role = await course_member(request)
    return render(
        request,
        "forum/index.html",
        {
            "course": course,
            "forums": await course_forums(course),
            "can_manage": Forum(course=course).can_be_managed_by(user, role),
        },
    )


async def forum_page(request: Request) -> Response:
    course, user, role = await course_member(request)
    forum = await forum_in_course(course, request.path_params["forum_id"])
    threads, page = await thread_summaries(forum, user, role, _page_number(request))
    return render(
        request,
        "forum/forum.html",
        {"course": course, "forum": forum, "threads": threads, "page": page},
        block="threads",
    )


async def new_thread(request: Request) -> Response:
    course, user, role = await course_member(request)
    forum = await forum_in_course(course, request.path_params["forum_id"])
    values: dict[str, str] = {"kind": request.query_params.get("kind", "discussion")}
    errors: dict[str, str] = {}
    message, status = "", 200
    if request.method == "POST":
        values = await form_fields(request)
        try:
            thread = await actions.start_thread(
                forum,
                kind=values.get("kind", ""),
                title=values.get("title", ""),
                body=values.get("body", ""),
                anonymous=values.get("anonymous") == "on",
                acting_user=user,
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            return RedirectResponse(f"/courses/{course.slug}/threads/{thread.id}", status_code=303)
    return render(
        request,
        "forum/new_thread.html",
        {
            "course": course,
            "forum": forum,
            "values": values,
            "errors": errors,
            "message": message,
            "kinds": list(ThreadKind),
            "may_be_anonymous": forum.allow_anonymous and role == Role.LEARNER,
        },
        status_code=status,
    )


async def _thread_response(
    request: Request,
    course: Course,
    thread: Thread,
    user: User,
    role: Role | None,
    *,
    page_number: int,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    message: str = "",
    values: dict[str, str] | None = None,
    mark_read: bool = False,
    fresh: bool = False,
) -> Response:
    """The thread page or its posts block (`fresh`: `thread` was just read with its forum)."""
    if not fresh:
        thread = await thread_for_viewer(thread.id, user)
    data = await thread_page(thread, user, role, page_number, forum=thread.forum)
    # Nothing was posted since the last visit: moving its time on would change no marker.
    seen = data.last_seen_at
    if mark_read and (seen is None or max(thread.last_activity_at, data.newest_at) > seen):
        await actions.mark_visited(thread, acting_user=user)
    forum = data.forum
    return render(
        request,
        "forum/thread.html",
        {
            "course": course,
            "data": data,
            "forum": forum,
            "errors": errors or {},
            "message": message,
            "values": values or {},
            "may_be_anonymous": forum.allow_anonymous and role == Role.LEARNER,
        },
        block="posts",
        status_code=status_code,
    )


async def thread_view(request: Request) -> Response:
    course, user, role = await course_member(request)
    thread = await thread_for_viewer(request.path_params["thread_id"], user, course_id=course.id)
    return await _thread_response(
        request,
        course,
        thread,
        user,
        role,
        page_number=_page_number(request),
        mark_read=not is_htmx(request),
        fresh=True,
    )


def _after_post(request: Request, course: Course, thread: Thread, post_id: int, page: int) -> str:
    suffix = f"?page={page}" if page > 1 else ""
    return f"/courses/{course.slug}/threads/{thread.id}{suffix}#post-{post_id}"


async def reply(request: Request) -> Response:
    course, user, role = await course_member(request)
    thread = await thread_in_course(course, request.path_params["thread_id"])
    values = await form_fields(request)
    page = _page_number(request, values)
    parent = None
    if values.get("parent_id"):
        try:
            parent = await post_in_course(course, int(values["parent_id"]))
        except ValueError:
            raise NotFound("There is no such post in this course.") from None
    try:
        post, answers = await actions.reply_and_count(
            thread,
            body=values.get("body", ""),
            parent=parent,
            anonymous=values.get("anonymous") == "on",
            acting_user=user,
        )
    except ActionError as error:
        return await _thread_response(
            request,
            course,
            thread,
            user,
            role,
            page_number=page,
            status_code=error.status_code,
            errors=error.fields,
            message=error.message,
            values=values,
        )
    if answers is not None:
        # A new answer comes last: show the page it landed on, not the one the form was on.
        page = max(1, ceil(answers / POSTS_PER_PAGE))
    if is_htmx(request):
        return await _thread_response(request, course, thread, user, role, page_number=page)
    return RedirectResponse(_after_post(request, course, thread, post.id, page), status_code=303)


async def edit_post(request: Request) -> Response:
    course, user, role = await course_member(request)
    post = await post_in_course(course, request.path_params["post_id"])
    thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
    values = {"body": post.body_markdown, "title": thread.title}
    errors: dict[str, str] = {}
    message, status = "", 200
    page = _page_number(request)
    if request.method == "POST":
        values = await form_fields(request)
        page = _page_number(request, values)
        try:
            await actions.edit_post(
                post,
                body=values.get("body", ""),
                title=values.get("title") if post.is_opening else None,
                acting_user=user,
                rule_code=values.get("rule", ""),
                reason=values.get("reason", ""),
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            if is_htmx(request):
                return await _thread_response(request, course, thread, user, role, page_number=page)
            return RedirectResponse(
                _after_post(request, course, thread, post.id, page), status_code=303
            )
    elif not post.can_be_edited_by(user, role):
        raise PermissionDenied("You can edit only your own posts.")
    moderating = not post.is_by(user)
    rules = await ensure_default_rules(course) if moderating else []
    return render(
        request,
        "forum/edit.html",
        {
            "course": course,
            "thread": thread,
            "post": post,
            "values": values,
            "errors": errors,
            "message": message,
            "page": page,
            "moderating": moderating,
            "rules": rules,
        },
        block="edit_form",
        status_code=status,
    )


async def _simple_post_action(request: Request, work: Any) -> Response:
    course, user, role = await course_member(request)
    post = await post_in_course(course, request.path_params["post_id"])
    thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
    values = await form_fields(request)
    page = _page_number(request, values)
    await work(post, thread, user, values)
    if is_htmx(request):
        return await _thread_response(request, course, thread, user, role, page_number=page)
    return RedirectResponse(_after_post(request, course, thread, post.id, page), status_code=303)


async def vote(request: Request) -> Response:
    async def work(post: Post, thread: Thread, user: User, values: dict[str, str]) -> None:
        await actions.set_vote(post, up=values.get("up") != "0", acting_user=user)

    return await _simple_post_action(request, work)


async def accept(request: Request) -> Response:
    async def work(post: Post, thread: Thread, user: User, values: dict[str, str]) -> None:
        chosen = None if values.get("clear") == "1" else post
        await actions.accept_answer(thread, chosen, acting_user=user)

    return await _simple_post_action(request, work)


async def delete(request: Request) -> Response:
    async def work(post: Post, thread: Thread, user: User, values: dict[str, str]) -> None:
        await actions.delete_own_post(post, acting_user=user)

    return await _simple_post_action(request, work)


async def endorse(request: Request) -> Response:
    """Staff-only (guarded Mount)."""

    async def work(post: Post, thread: Thread, user: User, values: dict[str, str]) -> None:
        await actions.endorse(post, endorsed=values.get("endorsed") != "0", acting_user=user)

    return await _simple_post_action(request, work)


async def subscription(request: Request) -> Response:
    course, user, _ = await course_member(request)
    thread = await thread_in_course(course, request.path_params["thread_id"])
    values = await form_fields(request)
    subscribed = await actions.set_subscription(
        thread, subscribed=values.get("subscribed") == "1", acting_user=user
    )
    if is_htmx(request):
        return render(
            request,
            "forum/thread.html",
            {"course": course, "data": {"thread": thread, "subscribed": subscribed}},
            block="subscription",
        )
    return RedirectResponse(f"/courses/{course.slug}/threads/{thread.id}", status_code=303)


@dataclass(slots=True)
class HistoryEntry:
    number: int
    editor: Author
    edited_at: Any
    by_staff: bool
    title_change: tuple[str, str] | None
    lines: list[tuple[str, str]]


def _diff(before: str, after: str) -> list[tuple[str, str]]:
    """Changed lines with a little context, as (kind, text): kind is '+', '-' or ' '."""
    result: list[tuple[str, str]] = []
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=2):
        if line.startswith(("---", "+++", "@@")):
            if line.startswith("@@") and result:
                result.append(("…", ""))
            continue
        result.append((line[:1], line[1:]))
    return result


async def history(request: Request) -> Response:
    course, user, role = await course_member(request)
    post = await post_in_course(course, request.path_params["post_id"])
    thread = await Thread.get(id=post.thread_id)  # type: ignore[attr-defined]
    await post.fetch_related("author")
    if not body_is_visible(post, user, role):
        raise PermissionDenied("This post is hidden or removed, so its history is not shown.")
    revisions = await Revision.filter(post_id=post.id).order_by("id").select_related("editor")
    # Each revision keeps the text before an edit; the text after it is the next one's, or
    # the post's own for the last. A post never edited has none, and an empty history.
    later_texts = [r.previous_markdown for r in revisions[1:]] + [post.body_markdown]
    later_titles = [r.previous_title for r in revisions[1:]] + [thread.title]
    if not revisions:
        later_texts, later_titles = [], []
    entries = []
    for number, (revision, after, after_title) in enumerate(
        zip(revisions, later_texts, later_titles, strict=True), start=1
    ):
        # The author editing an anonymous post stays anonymous in its history.
        anonymous = (
            post.is_anonymous and revision.editor is not None and post.is_by(revision.editor)
        )
        title_change = None
        if post.is_opening and revision.previous_title and after_title != revision.previous_title:
            title_change = (revision.previous_title, after_title or "")
        entries.append(
            HistoryEntry(
                number=number,
                editor=author_for(revision.editor, anonymous, user, role),
                edited_at=revision.edited_at,
                by_staff=revision.by_staff,
                title_change=title_change,
                lines=_diff(revision.previous_markdown, after),
            )
        )
    return render(
        request,
        "forum/history.html",
        {
            "course": course,
            "thread": thread,
            "post": post,
            "entries": list(reversed(entries)),
            "author": author_for(post.author, post.is_anonymous, user, role),
        },
    )


async def manage_forums(request: Request) -> Response:
    """Instructor-only (guarded Mount): create, edit and order forums."""
    user: User = request.scope["user"]
    course: Course = request.state.course
    errors: dict[str, str] = {}
    message, status = "", 200
    values: dict[str, str] = {}
    if request.method == "POST":
        values = await form_fields(request)
        try:
            if values.get("forum_id"):
                forum = await forum_in_course(course, int(values["forum_id"]))
                if values.get("move") in {"up", "down"}:
                    await actions.move_forum(forum, up=values["move"] == "up", acting_user=user)
                else:
                    await actions.update_forum(
                        forum,
                        title=values.get("title", ""),
                        description=values.get("description", ""),
                        allow_anonymous=values.get("allow_anonymous") == "on",
                        acting_user=user,
                    )
            else:
                await actions.create_forum(
                    course,
                    title=values.get("title", ""),
                    description=values.get("description", ""),
                    allow_anonymous=values.get("allow_anonymous") == "on",
                    acting_user=user,
                )
            values, message = {}, "Saved."
        except (ActionError, ValueError) as error:
            if isinstance(error, ActionError):
                errors, message, status = error.fields, error.message, error.status_code
            else:
                message, status = "There is no such forum in this course.", 404
    return render(
        request,
        "forum/manage.html",
        {
            "course": course,
            "forums": await course_forums(course),
            "values": values,
            "errors": errors,
            "message": message,
        },
        block="forums",
        status_code=status,
    )
