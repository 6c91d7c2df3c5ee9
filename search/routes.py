"""Routes of search: the two search pages and the JSON search endpoint."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from core.api import ApiRoute
from search import endpoints, views

routes: list[BaseRoute] = [
    Route("/search", views.site_search, name="search"),
    Route("/courses/{slug}/search", views.course_search, name="course_search"),
]

api_routes: list[BaseRoute] = [
    ApiRoute(
        "/api/v1/search",
        endpoints.search,
        method="GET",
        response=endpoints.SearchOut,
        tag="search",
        summary="Search the forums of my courses (?q=, course=SLUG, forum_id=, kind=, "
        "unanswered=, author=, from=, to=, page=).",
    ),
]
