"""JSON search (/api/v1/search): the same filters, courses and checks as the search pages."""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from core.api import api_user, json_response
from search.backends import SearchError, SearchUnavailable
from search.views import (
    PER_PAGE,
    UNAVAILABLE_MESSAGE,
    HitView,
    SearchDown,
    member_scope,
    parse_filters,
    readable_course_scope,
    run_search,
)

log = logging.getLogger("agora.search")


class SearchAuthorOut(BaseModel):
    name: str
    username: str | None = Field(description="null when the author is anonymous to you")
    anonymous_to_classmates: bool = False


class SearchHitOut(BaseModel):
    post_id: int
    thread_id: int
    course: str = Field(description="The course's slug.")
    forum_id: int
    kind: str
    answered: bool
    title_html: str = Field(description="The thread title, HTML-escaped, matches in <mark>.")
    snippet_html: str = Field(description="Part of the post, HTML-escaped, matches in <mark>.")
    url: str
    author: SearchAuthorOut
    created_at: datetime


class SearchOut(BaseModel):
    total: int = Field(description="Matching posts (may be an estimate).")
    page: int
    pages: int
    per_page: int
    hits: list[SearchHitOut]


def hit_out(hit: HitView) -> SearchHitOut:
    return SearchHitOut(
        post_id=hit.post_id,
        thread_id=hit.thread_id,
        course=hit.course.slug,
        forum_id=hit.forum_id,
        kind=hit.kind,
        answered=hit.is_answered,
        title_html=hit.title_html,
        snippet_html=hit.snippet_html,
        url=hit.url,
        author=SearchAuthorOut(
            name=hit.author.name,
            username=hit.author.handle,
            anonymous_to_classmates=hit.author.anonymous_to_classmates,
        ),
        created_at=hit.created_at,
    )


async def search(request: Request) -> Response:
    user = api_user(request)
    slug = request.query_params.get("course", "").strip()
    if slug:
        scope = await readable_course_scope(user, slug)
    else:
        scope = await member_scope(user)
    filters = parse_filters(request.query_params, scope)
    try:
        results = await run_search(filters, scope, user)
    except SearchError as exc:
        if not isinstance(exc, SearchUnavailable):
            log.exception("search failed")
        raise SearchDown(UNAVAILABLE_MESSAGE) from None
    return json_response(
        SearchOut(
            total=results.total,
            page=results.page,
            pages=results.pages,
            per_page=PER_PAGE,
            hits=[hit_out(hit) for hit in results.hits],
        )
    )
