"""Routes of the core package: pages, the JSON API, and what it adds to the staff areas.

`staff_routes` and `api_staff_routes` are mounted by core/app.py under the guarded
/courses/{slug}/staff prefixes, together with the other packages' staff routes.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from core import account_views, endpoints, export_views, notification_views, profile_views, views
from core.api import ApiRoute

routes: list[BaseRoute] = [
    Route("/", views.home, name="home"),
    Route("/signup", views.signup, methods=["GET", "POST"], name="signup"),
    Route("/login", views.login, methods=["GET", "POST"], name="login"),
    Route("/logout", views.logout, methods=["GET", "POST"], name="logout"),
    Route("/courses", views.course_list, name="courses"),
    Route("/courses/new", views.course_new, methods=["GET", "POST"], name="course_new"),
    Route("/courses/join", views.join_with_code, methods=["POST"], name="join_with_code"),
    Route("/courses/{slug}", views.course_home, name="course_home"),
    Route("/courses/{slug}/join", views.course_join, methods=["POST"], name="course_join"),
    Route("/notifications", views.notifications, methods=["GET", "POST"], name="notifications"),
    Route("/healthz", views.healthz, name="healthz"),
    *profile_views.routes,
    *export_views.routes,
    *account_views.routes,
    *notification_views.routes,
]

api_routes: list[BaseRoute] = [
    ApiRoute(
        "/api/v1/openapi.json",
        endpoints.openapi,
        method="GET",
        public=True,
        summary="This document.",
    ),
    ApiRoute(
        "/api/v1/me",
        endpoints.me,
        method="GET",
        response=endpoints.MeOut,
        summary="The account the token belongs to.",
    ),
    ApiRoute(
        "/api/v1/courses",
        endpoints.my_courses,
        method="GET",
        response=endpoints.CourseOut,
        many=True,
        summary="Courses I belong to, with my role.",
    ),
    ApiRoute(
        "/api/v1/courses",
        endpoints.create_course,
        method="POST",
        body=endpoints.CourseIn,
        response=endpoints.CourseOut,
        status_code=201,
        summary="Create a course; I become its instructor.",
    ),
    ApiRoute(
        "/api/v1/courses/join",
        endpoints.join,
        method="POST",
        body=endpoints.JoinIn,
        response=endpoints.CourseOut,
        summary="Join a course with its invite code.",
    ),
]

staff_routes: list[BaseRoute] = [
    Route("/members", views.members, methods=["GET", "POST"], name="members"),
    Route("/settings", views.course_settings, methods=["POST"], name="course_settings"),
]

api_staff_routes: list[BaseRoute] = [
    ApiRoute(
        "/members",
        endpoints.list_members,
        method="GET",
        response=endpoints.MemberOut,
        many=True,
        summary="The course's members (instructors only).",
    ),
    ApiRoute(
        "/members",
        endpoints.add_member,
        method="POST",
        body=endpoints.MemberIn,
        response=endpoints.MemberOut,
        status_code=201,
        summary="Add a member with a role, or change a member's role (instructors only).",
    ),
]
