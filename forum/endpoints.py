"""JSON API of the forums. Authors come from forum.presenters, so anonymity holds here too."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from core.api import api_user, json_response, parse_body
from core.errors import InvalidInput, NotFound, PermissionDenied
from core.models import Course, Role, User
from forum import actions
from forum.models import Forum, Post, Revision, Thread, post_in_course, thread_in_course
from forum.presenters import (
    THREADS_PER_PAGE,
    Author,
    PostView,
    author_for,
    post_view,
    thread_for_viewer,
    thread_page,
)


class AuthorOut(BaseModel):
    name: str
    username: str | None = Field(description="null when the author is anonymous to you")
    anonymous_to_classmates: bool = False


class PostOut(BaseModel):
    id: int
    thread_id: int
    parent_id: int | None
    author: AuthorOut
    body_markdown: str
    body_html: str
    created_at: datetime
    edited_at: datetime | None
    revision_count: int
    deleted: bool
    endorsed: bool
    votes: int
    voted: bool
    accepted: bool
    replies: list[PostOut] = []


class RevisionOut(BaseModel):
    edited_at: datetime
    editor: AuthorOut
    previous_markdown: str
    previous_title: str | None
    by_staff: bool


class PostDetailOut(PostOut):
    revisions: list[RevisionOut]


class ThreadOut(BaseModel):
    id: int
    forum_id: int
    kind: str
    title: str
    author: AuthorOut
    created_at: datetime
    last_activity_at: datetime
    reply_count: int
    answered: bool
    locked: bool
    pinned: bool


class ThreadDetailOut(ThreadOut):
    opening: PostOut
    posts: list[PostOut]
    page: int
    pages: int


class ThreadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    forum_id: int
    kind: Literal["discussion", "question"] = "discussion"
    title: str = Field(min_length=1, max_length=400)
    body: str = Field(min_length=1, max_length=40_000)
    anonymous: bool = False


class PostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=40_000)
    parent_id: int | None = None
    anonymous: bool = False


class PostEditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=40_000)
    title: str | None = Field(default=None, max_length=400)


class VoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    up: bool = True


def author_out(author: Author) -> AuthorOut:
    return AuthorOut(
        name=author.name,
        username=author.handle,
        anonymous_to_classmates=author.anonymous_to_classmates,
    )


def post_out(view: PostView) -> PostOut:
    return PostOut(
        id=view.id,
        thread_id=view.thread_id,
        parent_id=view.parent_id,
        author=author_out(view.author),
        body_markdown=view.body_markdown,
        body_html=str(view.body_html),
        created_at=view.created_at,
        edited_at=view.edited_at,
        revision_count=view.revision_count,
        deleted=view.is_deleted,
        endorsed=view.is_endorsed,
        votes=view.vote_count,
        voted=view.voted,
        accepted=view.is_accepted,
        replies=[post_out(reply) for reply in view.replies],
    )


async def _member(request: Request) -> tuple[Course, User, Role | None]:
    user = api_user(request)
    course = await Course.get_or_none(slug=request.path_params["slug"])
    if course is None:
        raise NotFound("There is no such course.")
    role = await course.role_of(user)
    if not course.can_be_read_by(user, role):
        raise PermissionDenied("Join this course first.")
    return course, user, role


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(
            f"{name} must be a whole number.", fields={name: "not a number"}
        ) from None


async def _thread_out(
    thread: Thread, user: User, role: Role | None, *, author_loaded: bool = False
) -> ThreadOut:
    if not author_loaded:
        await thread.fetch_related("author")
    return ThreadOut(
        id=thread.id,
        forum_id=thread.forum_id,  # type: ignore[attr-defined]
        kind=thread.kind.value,
        title=thread.title,
        author=author_out(author_for(thread.author, thread.is_anonymous, user, role)),
        created_at=thread.created_at,
        last_activity_at=thread.last_activity_at,
        reply_count=thread.reply_count,
        answered=thread.accepted_post_id is not None,
        locked=thread.is_locked,
        pinned=thread.is_pinned,
    )


async def list_threads(request: Request) -> Response:
    course, user, role = await _member(request)
    forum_id = _int_param(request, "forum_id", None)
    page = max(1, _int_param(request, "page", 1) or 1)
    threads = Thread.filter(course_id=course.id)
    if forum_id is not None:
        threads = threads.filter(forum_id=forum_id)
    rows = (
        await threads.order_by("-is_pinned", "-last_activity_at", "-id")
        .offset((page - 1) * THREADS_PER_PAGE)
        .limit(THREADS_PER_PAGE)
        .select_related("author")
    )
    return json_response(
        [await _thread_out(thread, user, role, author_loaded=True) for thread in rows]
    )


async def _detail(thread: Thread, user: User, role: Role | None, page: int) -> ThreadDetailOut:
    data = await thread_page(thread, user, role, page)
    base = await _thread_out(thread, user, role)
    return ThreadDetailOut(
        **base.model_dump(),
        opening=post_out(data.opening),
        posts=[post_out(p) for p in data.posts],
        page=data.page.number,
        pages=data.page.count,
    )


async def create_thread(request: Request) -> Response:
    course, user, role = await _member(request)
    body = await parse_body(request, ThreadIn)
    forum = await Forum.get_or_none(id=body.forum_id, course_id=course.id)
    if forum is None:
        raise InvalidInput(
            "There is no such forum in this course.", fields={"forum_id": "unknown forum"}
        )
    thread = await actions.start_thread(
        forum,
        kind=body.kind,
        title=body.title,
        body=body.body,
        anonymous=body.anonymous,
        acting_user=user,
    )
    return json_response(await _detail(thread, user, role, 1), status_code=201)


async def get_thread(request: Request) -> Response:
    course, user, role = await _member(request)
    thread = await thread_for_viewer(request.path_params["thread_id"], user, course_id=course.id)
    page = _int_param(request, "page", 1) or 1
    return json_response(await _detail(thread, user, role, page))


async def create_post(request: Request) -> Response:
    course, user, role = await _member(request)
    thread = await thread_in_course(course, request.path_params["thread_id"])
    body = await parse_body(request, PostIn)
    parent = None
    if body.parent_id is not None:
        parent = await Post.get_or_none(id=body.parent_id, thread_id=thread.id)
        if parent is None:
            raise InvalidInput(
                "There is no such post in this thread.", fields={"parent_id": "unknown post"}
            )
    post = await actions.reply(
        thread, body=body.body, parent=parent, anonymous=body.anonymous, acting_user=user
    )
    return json_response(post_out(await post_view(post, user, role)), status_code=201)


async def get_post(request: Request) -> Response:
    course, user, role = await _member(request)
    post = await post_in_course(course, request.path_params["post_id"])
    view = await post_view(post, user, role)
    revisions = (
        await Revision.filter(post_id=post.id).order_by("id").select_related("editor")
        if view.body_visible
        else []
    )
    detail = PostDetailOut(
        **post_out(view).model_dump(),
        revisions=[
            RevisionOut(
                edited_at=r.edited_at,
                previous_markdown=r.previous_markdown,
                previous_title=r.previous_title,
                by_staff=r.by_staff,
                editor=author_out(
                    author_for(
                        r.editor,
                        post.is_anonymous and r.editor is not None and post.is_by(r.editor),
                        user,
                        role,
                    )
                ),
            )
            for r in revisions
        ],
    )
    return json_response(detail)


async def edit_post(request: Request) -> Response:
    course, user, role = await _member(request)
    post = await post_in_course(course, request.path_params["post_id"])
    body = await parse_body(request, PostEditIn)
    post = await actions.edit_post(post, body=body.body, title=body.title, acting_user=user)
    return json_response(post_out(await post_view(post, user, role)))


async def vote(request: Request) -> Response:
    course, user, role = await _member(request)
    post = await post_in_course(course, request.path_params["post_id"])
    body = await parse_body(request, VoteIn)
    post = await actions.set_vote(post, up=body.up, acting_user=user)
    return json_response(post_out(await post_view(post, user, role)))
