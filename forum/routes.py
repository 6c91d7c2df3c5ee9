"""Routes of the forums; staff routes are mounted under the guarded prefixes by core/app.py."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from core.api import ApiRoute
from forum import (
    cards,  # noqa: F401  (registers the template global `post_card`)
    endpoints,
    views,
)

routes: list[BaseRoute] = [
    Route("/courses/{slug}/forums", views.forum_index, name="forums"),
    Route("/courses/{slug}/forums/{forum_id:int}", views.forum_page, name="forum"),
    Route(
        "/courses/{slug}/forums/{forum_id:int}/new",
        views.new_thread,
        methods=["GET", "POST"],
        name="new_thread",
    ),
    Route("/courses/{slug}/threads/{thread_id:int}", views.thread_view, name="thread"),
    Route(
        "/courses/{slug}/threads/{thread_id:int}/reply", views.reply, methods=["POST"], name="reply"
    ),
    Route(
        "/courses/{slug}/threads/{thread_id:int}/subscription",
        views.subscription,
        methods=["POST"],
        name="subscription",
    ),
    Route(
        "/courses/{slug}/posts/{post_id:int}/edit",
        views.edit_post,
        methods=["GET", "POST"],
        name="edit_post",
    ),
    Route("/courses/{slug}/posts/{post_id:int}/history", views.history, name="post_history"),
    Route("/courses/{slug}/posts/{post_id:int}/vote", views.vote, methods=["POST"], name="vote"),
    Route(
        "/courses/{slug}/posts/{post_id:int}/accept", views.accept, methods=["POST"], name="accept"
    ),
    Route(
        "/courses/{slug}/posts/{post_id:int}/delete",
        views.delete,
        methods=["POST"],
        name="delete_post",
    ),
]

staff_routes: list[BaseRoute] = [
    Route("/forums", views.manage_forums, methods=["GET", "POST"], name="manage_forums"),
]

moderate_routes: list[BaseRoute] = [
    Route("/posts/{post_id:int}/endorse", views.endorse, methods=["POST"], name="endorse"),
]

api_routes: list[BaseRoute] = [
    ApiRoute(
        "/api/v1/courses/{slug}/threads",
        endpoints.list_threads,
        method="GET",
        response=endpoints.ThreadOut,
        many=True,
        tag="forum",
        summary="Threads of a course, newest activity first (?forum_id=, ?page=).",
    ),
    ApiRoute(
        "/api/v1/courses/{slug}/threads",
        endpoints.create_thread,
        method="POST",
        body=endpoints.ThreadIn,
        response=endpoints.ThreadDetailOut,
        status_code=201,
        tag="forum",
        summary="Start a discussion or ask a question.",
    ),
    ApiRoute(
        "/api/v1/courses/{slug}/threads/{thread_id:int}",
        endpoints.get_thread,
        method="GET",
        response=endpoints.ThreadDetailOut,
        tag="forum",
        summary="A thread with one page of posts (?page=).",
    ),
    ApiRoute(
        "/api/v1/courses/{slug}/threads/{thread_id:int}/posts",
        endpoints.create_post,
        method="POST",
        body=endpoints.PostIn,
        response=endpoints.PostOut,
        status_code=201,
        tag="forum",
        summary="Reply to a thread or to one of its answers.",
    ),
    ApiRoute(
        "/api/v1/courses/{slug}/posts/{post_id:int}",
        endpoints.get_post,
        method="GET",
        response=endpoints.PostDetailOut,
        tag="forum",
        summary="A post with its revision history.",
    ),
    ApiRoute(
        "/api/v1/courses/{slug}/posts/{post_id:int}",
        endpoints.edit_post,
        method="PATCH",
        body=endpoints.PostEditIn,
        response=endpoints.PostOut,
        tag="forum",
        summary="Edit a post (a revision keeps the previous text).",
    ),
    ApiRoute(
        "/api/v1/courses/{slug}/posts/{post_id:int}/vote",
        endpoints.vote,
        method="POST",
        body=endpoints.VoteIn,
        response=endpoints.PostOut,
        tag="forum",
        summary="Upvote a post, or take the upvote back with up=false.",
    ),
]
