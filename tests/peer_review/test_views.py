"""The peer-review pages through the real app: forms with CSRF, permissions, errors in place."""

from __future__ import annotations

import re

import httpx
import pytest

from peer_review import actions
from peer_review.models import Assignment, CalibrationSample, Review, Submission
from peer_review.queries import load_rubric
from tests.conftest import csrf_token
from tests.factories import log_in, reuse_password_hashes
from tests.peer_review.factories import (
    COMMENT,
    Cast,
    answers_at,
    essay,
    make_assignment,
    make_cast,
    submit_all,
)


@pytest.fixture
async def cast(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> Cast:
    reuse_password_hashes(monkeypatch)
    return await make_cast()


async def _post(client: httpx.AsyncClient, page: str, url: str, **data: str) -> httpx.Response:
    token = await csrf_token(client, page)
    return await client.post(url, data={"csrf_token": token, **data})


async def test_learner_gets_403_on_staff_pages(client: httpx.AsyncClient, cast: Cast) -> None:
    from core.timeutil import utcnow

    assignment = await make_assignment(cast, utcnow())
    await log_in(client, cast.learners[0].username)
    slug = cast.course.slug
    for path in (
        "assignments/new",
        f"assignments/{assignment.id}/rubric",
        f"assignments/{assignment.id}/queue",
    ):
        response = await client.get(f"/courses/{slug}/staff/{path}")
        assert response.status_code == 403, path


async def test_instructor_builds_assignment_with_rubric_errors(
    client: httpx.AsyncClient, cast: Cast
) -> None:
    await log_in(client, cast.instructor.username)
    slug = cast.course.slug
    page = f"/courses/{slug}/staff/assignments/new"
    response = await _post(
        client,
        page,
        page,
        title="Essay",
        instructions="Write about **evidence**.",
        submission_opens_at="2020-01-01T00:00",
        submission_due_at="2999-01-01T00:00",
        review_due_at="2999-02-01T00:00",
        reviews_required="1",
        reviews_wanted="1",
        calibration_required="1",
        attempt_limit="2",
        late_policy="refuse",
        late_grace_hours="0",
        late_penalty_percent="0",
        min_words="20",
        comment_min_chars="10",
        lease_hours="8",
        spot_check_rate="0",
    )
    assert response.status_code == 303, response.text
    rubric_url = response.headers["location"]
    assignment = await Assignment.get(course_id=cast.course.id)
    # Adding a level is a plain POST that saves nothing.
    response = await _post(
        client,
        rubric_url,
        rubric_url,
        criteria_count="1",
        **{"c0-level_count": "2", "op": "add_level:0"},
    )
    assert response.status_code == 200
    assert 'name="c0-l2-points"' in response.text
    # Points out of order: the error sits next to the field.
    response = await _post(
        client,
        rubric_url,
        rubric_url,
        criteria_count="1",
        op="save",
        **{
            "c0-title": "Argument",
            "c0-weight": "1",
            "c0-comment": "optional",
            "c0-level_count": "2",
            "c0-l0-points": "2",
            "c0-l0-label": "Weak",
            "c0-l1-points": "1",
            "c0-l1-label": "Strong",
        },
    )
    assert response.status_code == 422
    assert re.search(r'id="f-c0-l1-points-error">Order the levels', response.text)
    response = await _post(
        client,
        rubric_url,
        rubric_url,
        criteria_count="1",
        op="save",
        **{
            "c0-title": "Argument",
            "c0-weight": "1",
            "c0-comment": "optional",
            "c0-level_count": "2",
            "c0-l0-points": "0",
            "c0-l0-label": "Weak",
            "c0-l1-points": "1",
            "c0-l1-label": "Strong",
        },
    )
    assert response.status_code == 200 and "Rubric saved." in response.text
    rubric = await load_rubric(assignment.id)
    criterion = rubric.criteria[0]
    samples_url = f"/courses/{slug}/staff/assignments/{assignment.id}/samples"
    response = await _post(
        client,
        samples_url,
        samples_url,
        title="A sample",
        body=essay(1, 40),
        **{
            f"level-{criterion.id}": str(criterion.levels[1].id),
            f"comment-{criterion.id}": "Strong because it cites evidence.",
        },
    )
    assert response.status_code == 200 and "Sample added." in response.text
    assert await CalibrationSample.filter(assignment_id=assignment.id).count() == 1
    response = await _post(
        client,
        f"/courses/{slug}/staff/assignments/{assignment.id}",
        f"/courses/{slug}/staff/assignments/{assignment.id}/publish",
    )
    assert response.status_code == 303
    assert (await Assignment.get(id=assignment.id)).is_published


async def test_learner_submits_reviews_and_sees_results(
    client: httpx.AsyncClient, cast: Cast
) -> None:
    from core.timeutil import utcnow

    assignment = await make_assignment(cast, utcnow(), reviews_required=1, reviews_wanted=1)
    slug = cast.course.slug
    base = f"/courses/{slug}/assignments/{assignment.id}"
    others = await submit_all(assignment, cast.learners[1:])
    await log_in(client, cast.learners[0].username)
    response = await client.get(f"/courses/{slug}/assignments")
    assert response.status_code == 200 and assignment.title in response.text
    response = await _post(client, f"{base}/submit", f"{base}/submit", body="too short")
    assert response.status_code == 422
    assert 'id="f-body-error"' in response.text
    response = await client.post(
        f"{base}/submit",
        data={"csrf_token": await csrf_token(client, f"{base}/submit"), "body": essay(7)},
        files={"attachments": ("notes.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")},
    )
    assert response.status_code == 303, response.text
    page = await client.get(base)
    assert "Review a classmate" in page.text
    # What people wrote is shown in the same wrapper as forum posts, which htmx ignores.
    assert '<div class="user-content" hx-disable>' in page.text
    link = re.search(r'href="(/courses/[^"]+/attachments/\d+)"', page.text)
    assert link
    download = await client.get(link.group(1))
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    response = await _post(client, base, f"{base}/review-next")
    assert response.status_code == 303
    review_url = response.headers["location"]
    rubric = await load_rubric(assignment.id)
    argument, clarity = rubric.criteria
    # Missing clarity level and a low argument score without a comment: errors in place,
    # and the draft is kept.
    response = await _post(
        client,
        review_url,
        review_url,
        op="submit",
        overall=COMMENT,
        **{f"level-{argument.id}": str(argument.levels[0].id)},
    )
    assert response.status_code == 422
    assert f'id="r-level-{clarity.id}-error"' in response.text
    assert f'id="r-comment-{argument.id}-error"' in response.text
    review = await Review.get(reviewer_id=cast.learners[0].id)
    assert review.draft["overall"] == COMMENT
    again = await client.get(review_url)
    assert COMMENT in again.text
    assert '<div class="markup peer-work"><div class="user-content" hx-disable>' in again.text
    response = await _post(
        client,
        review_url,
        review_url,
        op="submit",
        overall=COMMENT,
        **{
            f"level-{argument.id}": str(argument.levels[-1].id),
            f"level-{clarity.id}": str(clarity.levels[-1].id),
        },
    )
    assert response.status_code == 303
    # Another learner reviews learner 0's work; then the grade shows.
    mine = await Submission.get(author_id=cast.learners[0].id)
    for learner in cast.learners[1:]:
        got = await actions.review_next(assignment, acting_user=learner)
        if got is not None and got.submission_id == mine.id:  # type: ignore[attr-defined]
            await actions.submit_review(
                got, answers=answers_at(rubric, [-1, -1]), overall=COMMENT, acting_user=learner
            )
            break
    from tests.conftest import drain_jobs

    await drain_jobs()
    results = await client.get(f"{base}/results")
    assert results.status_code == 200
    assert "Reviewer 1" in results.text
    for learner in cast.learners[1:]:
        assert learner.username not in results.text
    assert others


async def test_no_500_on_odd_input(client: httpx.AsyncClient, cast: Cast) -> None:
    from core.timeutil import utcnow

    assignment = await make_assignment(cast, utcnow())
    slug = cast.course.slug
    await log_in(client, cast.instructor.username)
    for url in (
        f"/courses/{slug}/staff/assignments/{assignment.id}/rubric",
        f"/courses/{slug}/staff/assignments/new",
        f"/courses/{slug}/staff/assignments/{assignment.id}/samples",
    ):
        response = await _post(
            client, url, url, criteria_count="x", op="add_level:x", percent="abc"
        )
        assert response.status_code < 500, url
    for url in (
        f"/courses/{slug}/assignments/999",
        f"/courses/{slug}/reviews/999",
        f"/courses/{slug}/attachments/999",
    ):
        assert (await client.get(url)).status_code == 404
