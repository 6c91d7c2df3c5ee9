"""Search pages: one course (/courses/{slug}/search) and all of my courses (/search).

Which courses a search covers is decided here, from the asker's memberships, and never read
from the request (DESIGN.md invariant 7):

- a course page (or the API's ?course=) searches that one course, for whoever may read its
  forums (`course.can_be_read_by`: members, and site admins, who can open every course's forums
  anyway, so search shows them nothing they could not already read);
- the site-wide page searches every course the asker is a member of, and only those: an admin
  is not flooded with every course on the site;
- a course where the asker is suspended is left out, as its forums are closed to them.

Hits are checked against the database before they are shown: a post hidden a moment ago,
whose indexing job has not run yet, is not shown, and anonymous authors are presented through
forum.presenters like everywhere else.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from core.access import course_member
from core.errors import ActionError, InvalidInput, NotAuthenticated, PermissionDenied
from core.models import Course, Membership, Role, User
from core.templating import is_htmx, render
from core.timeutil import utcnow
from forum.models import Forum, Post, ThreadKind
from forum.presenters import Author, author_for
from search import service
from search.backends import (
    DEFAULT_PER_PAGE,
    MAX_QUERY_CHARS,
    MAX_RESULT_WINDOW,
    THREAD_KINDS,
    SearchError,
    SearchQuery,
    SearchUnavailable,
)
from search.tasks import is_indexable

log = logging.getLogger("agora.search")

PER_PAGE = DEFAULT_PER_PAGE
MAX_PAGE = MAX_RESULT_WINDOW // PER_PAGE
MAX_AUTHOR_CHARS = 64
RETRY_AFTER_SECONDS = 30
UNAVAILABLE_MESSAGE = (
    "Search is temporarily unavailable; your posts are safe and will be searchable when it is back."
)
# The query parameters of a search, the same for the pages and the API.
FIELDS: tuple[str, ...] = ("q", "forum_id", "kind", "unanswered", "author", "from", "to")
_TRUE = frozenset({"1", "true", "on", "yes"})
_FALSE = frozenset({"", "0", "false", "off", "no"})
_HANDLE = re.compile(r"[\w.\-]+")


class SearchDown(ActionError):
    """The engine is unavailable: the API answers 503 with Retry-After."""

    status_code = 503
    code = "search_unavailable"
    retry_after = RETRY_AFTER_SECONDS


@dataclass(frozen=True, slots=True)
class Filters:
    """A parsed, valid search request (without the courses: those come from the Scope)."""

    text: str = ""
    forum_id: int | None = None
    kind: str | None = None
    unanswered: bool = False
    author: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    page: int = 1

    @property
    def is_blank(self) -> bool:
        """Nothing asked for yet (a first visit to the page)."""
        return not (
            self.text.strip()
            or self.forum_id is not None
            or self.kind
            or self.unanswered
            or self.author
            or self.date_from
            or self.date_to
        )

    def query(self, course_ids: list[int]) -> SearchQuery:
        after = None if self.date_from is None else datetime.combine(self.date_from, time(), UTC)
        before = None
        if self.date_to is not None and self.date_to < date.max:
            # "to" includes the whole day.
            before = datetime.combine(self.date_to + timedelta(days=1), time(), UTC)
        return SearchQuery(
            text=self.text,
            course_ids=course_ids,
            forum_id=self.forum_id,
            thread_kind=self.kind,  # type: ignore[arg-type]
            unanswered_only=self.unanswered,
            author_handle=self.author,
            created_after=after,
            created_before=before,
            page=self.page,
            per_page=PER_PAGE,
        )


@dataclass(slots=True)
class Scope:
    """The courses a search covers, the asker's role in each, and their forums."""

    courses: dict[int, Course]
    roles: dict[int, Role | None]
    forums: dict[int, Forum] = field(default_factory=dict)

    def forum_groups(self) -> list[tuple[Course, list[Forum]]]:
        by_course: dict[int, list[Forum]] = {}
        for forum in self.forums.values():
            by_course.setdefault(forum.course_id, []).append(forum)  # type: ignore[attr-defined]
        return [
            (course, sorted(by_course.get(cid, []), key=lambda f: (f.position, f.id)))
            for cid, course in sorted(self.courses.items(), key=lambda c: (c[1].title, c[0]))
        ]


async def _suspended_course_ids(user: User) -> set[int]:
    from moderation.models import Sanction, SanctionKind

    now = utcnow()
    sanctions = await Sanction.filter(user_id=user.id, kind=SanctionKind.SUSPENSION, lifted_at=None)
    return {s.course_id for s in sanctions if s.is_active(now)}  # type: ignore[attr-defined]


async def _with_forums(scope: Scope) -> Scope:
    forums = await Forum.filter(course_id__in=sorted(scope.courses))
    scope.forums = {f.id: f for f in forums}
    return scope


async def member_scope(user: User) -> Scope:
    """Every course the user is a member of and not suspended from."""
    memberships = await Membership.filter(user_id=user.id).select_related("course")
    suspended = await _suspended_course_ids(user)
    kept = [m for m in memberships if m.course.id not in suspended]
    return await _with_forums(
        Scope(
            courses={m.course.id: m.course for m in kept},
            roles={m.course.id: Role(m.role) for m in kept},
        )
    )


async def course_scope(course: Course, role: Role | None) -> Scope:
    """One course, for someone already allowed to read it."""
    return await _with_forums(Scope(courses={course.id: course}, roles={course.id: role}))


async def readable_course_scope(user: User, slug: str) -> Scope:
    """One course named by the asker (API ?course=): 403 unless they may read its forums."""
    course = await Course.get_or_none(slug=slug.strip().lower()) if slug.strip() else None
    role = await course.role_of(user) if course is not None else None
    if course is None or not course.can_be_read_by(user, role):
        # The same answer whether the course exists or not.
        raise PermissionDenied(
            "You can search only courses you are a member of.",
            fields={"course": "not one of your courses"},
        )
    if course.id in await _suspended_course_ids(user):
        raise PermissionDenied(
            f"You are suspended from {course.title}. Your standing page (/me/standing) shows "
            "the rule, the reason and how to appeal.",
        )
    return await course_scope(course, role)


def _date(raw: str, name: str, label: str, errors: dict[str, str]) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = f"{label} must be a date like 2025-03-01."
        return None


def parse_filters(params: Mapping[str, str], scope: Scope) -> Filters:
    """The search a request asks for, or InvalidInput naming each bad parameter."""
    raw = {name: (params.get(name) or "") for name in (*FIELDS, "page")}
    errors: dict[str, str] = {}
    if any("\x00" in value for value in raw.values()):
        raise InvalidInput("Text cannot contain NUL characters.")
    text = raw["q"]
    if len(text) > MAX_QUERY_CHARS:
        errors["q"] = (
            f"Search text is limited to {MAX_QUERY_CHARS} characters; this has {len(text)}."
        )
    forum_id: int | None = None
    if raw["forum_id"].strip():
        try:
            forum_id = int(raw["forum_id"])
        except ValueError:
            forum_id = None
        if forum_id is None or forum_id not in scope.forums:
            errors["forum_id"] = "Choose one of the forums of the courses you are searching."
            forum_id = None
    kind = raw["kind"].strip().lower() or None
    if kind is not None and kind not in THREAD_KINDS:
        errors["kind"] = "Choose discussion or question."
        kind = None
    unanswered = raw["unanswered"].strip().lower()
    if unanswered not in _TRUE | _FALSE:
        errors["unanswered"] = "Unanswered is true or false."
    author = raw["author"].strip().removeprefix("@").lower() or None
    if author is not None and (len(author) > MAX_AUTHOR_CHARS or not _HANDLE.fullmatch(author)):
        errors["author"] = "An author is a username, like @ada."
        author = None
    date_from = _date(raw["from"].strip(), "from", "From", errors)
    date_to = _date(raw["to"].strip(), "to", "To", errors)
    if date_from and date_to and date_from > date_to:
        errors["to"] = "To must be the same day as From or later."
    page = 1
    if raw["page"].strip():
        try:
            page = int(raw["page"])
        except ValueError:
            errors["page"] = "The page must be a whole number."
        else:
            if page < 1:
                errors["page"] = "Pages are numbered from 1."
            elif page > MAX_PAGE:
                errors["page"] = (
                    f"Only the first {MAX_RESULT_WINDOW} results can be paged through; add words "
                    "or filters to narrow the search."
                )
    if errors:
        message = (
            next(iter(errors.values()))
            if len(errors) == 1
            else ("Please correct the marked search fields.")
        )
        raise InvalidInput(message, fields=errors)
    return Filters(
        text=text,
        forum_id=forum_id,
        kind=kind,
        unanswered=unanswered in _TRUE,
        author=author,
        date_from=date_from,
        date_to=date_to,
        page=page,
    )


@dataclass(frozen=True, slots=True)
class HitView:
    """One result as pages and the API show it; only title_html/snippet_html hold markup."""

    post_id: int
    thread_id: int
    course: Course
    forum_id: int
    forum_title: str
    kind: str
    is_answered: bool
    title_html: str
    snippet_html: str
    url: str
    author: Author
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ResultPage:
    total: int
    page: int
    pages: int
    hits: list[HitView]


async def run_search(filters: Filters, scope: Scope, viewer: User) -> ResultPage:
    """Search the scope's courses; raises SearchUnavailable when the engine is down."""
    if not scope.courses:
        return ResultPage(total=0, page=filters.page, pages=0, hits=[])
    try:
        results = await service.backend().search(filters.query(sorted(scope.courses)))
    except ValueError as exc:  # parse_filters should have caught it
        raise InvalidInput(f"This search cannot be run: {exc}") from None
    ids = [hit.post_id for hit in results.hits]
    posts = {p.id: p for p in await Post.filter(id__in=ids).select_related("author", "thread")}
    hits: list[HitView] = []
    for hit in results.hits:
        post = posts.get(hit.post_id)
        if post is None or not is_indexable(post):
            continue  # changed since it was indexed; its job will catch the index up
        thread = post.thread
        course_id: int = thread.course_id  # type: ignore[attr-defined]
        course = scope.courses.get(course_id)
        if course is None or course_id != hit.course_id:
            continue
        forum = scope.forums.get(thread.forum_id)  # type: ignore[attr-defined]
        hits.append(
            HitView(
                post_id=post.id,
                thread_id=thread.id,
                course=course,
                forum_id=thread.forum_id,  # type: ignore[attr-defined]
                forum_title=forum.title if forum is not None else "",
                kind=ThreadKind(thread.kind).value,
                is_answered=thread.accepted_post_id is not None,
                title_html=hit.title_html,
                snippet_html=hit.snippet_html,
                url=f"/courses/{course.slug}/threads/{thread.id}#post-{post.id}",
                author=author_for(
                    post.author, post.is_anonymous, viewer, scope.roles.get(course_id)
                ),
                created_at=post.created_at,
            )
        )
    pages = min(math.ceil(results.total / PER_PAGE), MAX_PAGE)
    return ResultPage(total=results.total, page=filters.page, pages=pages, hits=hits)


def _page_url(action: str, values: Mapping[str, str], page: int) -> str:
    params = [(name, values[name]) for name in FIELDS if values.get(name)]
    if page > 1:
        params.append(("page", str(page)))
    return f"{action}?{urlencode(params)}" if params else action


async def _search_page(
    request: Request, user: User, scope: Scope, *, course: Course | None
) -> Response:
    action = f"/courses/{course.slug}/search" if course is not None else "/search"
    values = {name: request.query_params.get(name, "") for name in FIELDS}
    context: dict[str, Any] = {
        "course": course,
        "action": action,
        "values": values,
        "errors": {},
        "message": "",
        "results": None,
        "unavailable": False,
        "has_courses": bool(scope.courses),
        "forum_groups": scope.forum_groups(),
        "kinds": sorted(THREAD_KINDS),
        "max_chars": MAX_QUERY_CHARS,
        "prev_url": None,
        "next_url": None,
    }
    status, headers = 200, None
    try:
        filters = parse_filters(request.query_params, scope)
        if not filters.is_blank and scope.courses:
            results = await run_search(filters, scope, user)
            context["results"] = results
            if results.page > 1:
                context["prev_url"] = _page_url(action, values, results.page - 1)
            if results.page < results.pages:
                context["next_url"] = _page_url(action, values, results.page + 1)
    except InvalidInput as error:
        context["errors"], context["message"], status = error.fields, error.message, 422
    except SearchError as exc:
        # SearchUnavailable (the engine cannot be reached) or another engine failure: either
        # way the forums work and the posts are safe, only searching is not possible now.
        if isinstance(exc, SearchUnavailable):
            log.warning("search unavailable for %s: %s", request.url.path, exc)
        else:
            log.exception("search failed for %s", request.url.path)
        context["unavailable"] = True
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        # htmx does not swap a 5xx answer into the page (see base.html), so a fragment says
        # it with 200; the page itself, with or without JavaScript, is a 503.
        status = 200 if is_htmx(request) else 503
    return render(
        request,
        "search/search.html",
        context,
        block="results",
        status_code=status,
        headers=headers,
    )


async def course_search(request: Request) -> Response:
    """Search one course's forums (members of the course)."""
    course, user, role = await course_member(request)
    return await _search_page(request, user, await course_scope(course, role), course=course)


async def site_search(request: Request) -> Response:
    """Search every course I am a member of."""
    user: User | None = request.scope.get("user")
    if user is None:
        raise NotAuthenticated("Sign in to search your courses.")
    return await _search_page(request, user, await member_scope(user), course=None)
