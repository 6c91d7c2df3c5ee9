"""Routes of peer review; staff routes are mounted under the guarded prefix by core/app.py."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from core.api import ApiRoute
from core.templating import environment
from forum.markup import wrap_user_html
from peer_review import endpoints, staff, views

# Work, samples and instructions people wrote are shown as forum posts are: their sanitized
# HTML inside a wrapper that htmx ignores.
environment.filters["user_html"] = wrap_user_html

GET_POST = ["GET", "POST"]
A = "/courses/{slug}/assignments/{assignment_id:int}"

routes: list[BaseRoute] = [
    Route("/courses/{slug}/assignments", views.assignment_list, name="assignments"),
    Route(A, views.assignment_page, name="assignment"),
    Route(f"{A}/submit", views.submit_page, methods=GET_POST, name="submit_work"),
    Route(f"{A}/calibrate", views.calibrate, methods=GET_POST, name="calibrate"),
    Route(f"{A}/review-next", views.review_next, methods=GET_POST, name="review_next"),
    Route(f"{A}/results", views.results, name="results"),
    Route(
        "/courses/{slug}/reviews/{review_id:int}",
        views.review_page,
        methods=GET_POST,
        name="review",
    ),
    Route(
        "/courses/{slug}/reviews/{review_id:int}/rate",
        views.rate,
        methods=["POST"],
        name="rate_review",
    ),
    Route(
        "/courses/{slug}/reviews/{review_id:int}/flag",
        views.flag,
        methods=["POST"],
        name="flag_review",
    ),
    Route("/courses/{slug}/record/{username}", views.record_page, name="course_record"),
    Route(
        "/courses/{slug}/record", views.record_visibility, methods=["POST"], name="record_public"
    ),
    Route(
        "/courses/{slug}/attachments/{attachment_id:int}",
        views.download,
        name="attachment",
    ),
]

S = "/assignments/{assignment_id:int}"

staff_routes: list[BaseRoute] = [
    Route("/assignments/new", staff.assignment_form, methods=GET_POST, name="new_assignment"),
    Route(S, staff.assignment_form, methods=GET_POST, name="edit_assignment"),
    Route(f"{S}/publish", staff.publish, methods=["POST"], name="publish_assignment"),
    Route(f"{S}/rubric", staff.rubric_editor, methods=GET_POST, name="rubric_editor"),
    Route(f"{S}/samples", staff.samples, methods=GET_POST, name="calibration_samples"),
    Route(f"{S}/queue", staff.queue, name="review_queue"),
    Route(f"{S}/similar/{{flag_id:int}}", staff.similar, methods=GET_POST, name="similar_pair"),
    Route("/submissions/{submission_id:int}", staff.submission_page, name="staff_submission"),
    Route(
        "/submissions/{submission_id:int}/grade",
        staff.grade,
        methods=["POST"],
        name="staff_grade",
    ),
    Route(
        "/submissions/{submission_id:int}/override",
        staff.override,
        methods=["POST"],
        name="override_grade",
    ),
    Route(
        "/reviews/{review_id:int}/void",
        staff.review_decision,
        methods=["POST"],
        name="void_review",
    ),
    Route(
        "/reviews/{review_id:int}/uphold",
        staff.review_decision,
        methods=["POST"],
        name="uphold_review",
    ),
]

P = "/api/v1/courses/{slug}"

api_routes: list[BaseRoute] = [
    ApiRoute(
        f"{P}/assignments",
        endpoints.list_assignments,
        method="GET",
        response=endpoints.AssignmentOut,
        many=True,
        tag="peer_review",
        summary="Assignments of a course you may see.",
    ),
    ApiRoute(
        f"{P}/assignments/{{assignment_id:int}}",
        endpoints.get_assignment,
        method="GET",
        response=endpoints.AssignmentDetailOut,
        tag="peer_review",
        summary="An assignment with its rubric.",
    ),
    ApiRoute(
        f"{P}/assignments/{{assignment_id:int}}/submissions",
        endpoints.submit,
        method="POST",
        body=endpoints.SubmissionIn,
        response=endpoints.SubmissionOut,
        status_code=201,
        tag="peer_review",
        summary="Hand in work (text; attachments through the web form).",
    ),
    ApiRoute(
        f"{P}/assignments/{{assignment_id:int}}/reviews/next",
        endpoints.next_review,
        method="POST",
        response=endpoints.NextReviewOut,
        tag="peer_review",
        bodyless=True,
        summary="The next submission to review (locks your own submission).",
    ),
    ApiRoute(
        f"{P}/reviews/{{review_id:int}}",
        endpoints.submit_review,
        method="POST",
        body=endpoints.ReviewIn,
        response=endpoints.ReviewOut,
        tag="peer_review",
        summary="Submit a review; the rubric is enforced and each problem named.",
    ),
    ApiRoute(
        f"{P}/assignments/{{assignment_id:int}}/results",
        endpoints.my_results,
        method="GET",
        response=endpoints.ResultsOut,
        tag="peer_review",
        summary="Your grade and the reviews you received (reviewers anonymous).",
    ),
]
