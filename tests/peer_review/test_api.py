"""The peer-review JSON API with bearer tokens: assignments, submit, review, results."""

from __future__ import annotations

import httpx
import pytest

from core.actions import issue_api_token
from core.models import User
from core.timeutil import utcnow
from peer_review import actions
from peer_review.queries import load_rubric
from tests.factories import reuse_password_hashes
from tests.peer_review.factories import COMMENT, Cast, answers_at, essay, make_assignment, make_cast


@pytest.fixture
async def cast(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> Cast:
    reuse_password_hashes(monkeypatch)
    return await make_cast()


async def _auth(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {await issue_api_token(user, acting_user=user)}"}


async def test_submit_review_and_results(client: httpx.AsyncClient, cast: Cast) -> None:
    assignment = await make_assignment(cast, utcnow(), reviews_required=1, reviews_wanted=1)
    prefix = f"/api/v1/courses/{cast.course.slug}"
    first, second = cast.learners[:2]
    h1, h2 = await _auth(first), await _auth(second)
    listed = await client.get(f"{prefix}/assignments", headers=h1)
    assert listed.status_code == 200 and listed.json()[0]["id"] == assignment.id
    detail = await client.get(f"{prefix}/assignments/{assignment.id}", headers=h1)
    assert len(detail.json()["rubric"]) == 2
    bad = await client.post(
        f"{prefix}/assignments/{assignment.id}/submissions", json={}, headers=h1
    )
    assert bad.status_code == 422 and "body" in bad.json()["error"]["fields"]
    for headers, seed in ((h1, 1), (h2, 2)):
        done = await client.post(
            f"{prefix}/assignments/{assignment.id}/submissions",
            json={"body": essay(seed)},
            headers=headers,
        )
        assert done.status_code == 201, done.text
    task = await client.post(f"{prefix}/assignments/{assignment.id}/reviews/next", headers=h1)
    assert task.status_code == 200
    review_id = task.json()["task"]["review_id"]
    rubric = await load_rubric(assignment.id)
    incomplete = await client.post(
        f"{prefix}/reviews/{review_id}", json={"answers": [], "overall": COMMENT}, headers=h1
    )
    assert incomplete.status_code == 422
    assert f"level-{rubric.criteria[0].id}" in incomplete.json()["error"]["fields"]
    answers = [
        {"criterion_id": c.id, "level_id": c.levels[-1].id, "comment": COMMENT}
        for c in rubric.criteria
    ]
    submitted = await client.post(
        f"{prefix}/reviews/{review_id}", json={"answers": answers, "overall": COMMENT}, headers=h1
    )
    assert submitted.status_code == 200 and submitted.json()["percent"] == 100.0
    other = await actions.review_next(assignment, acting_user=second)
    assert other is not None
    await actions.submit_review(
        other, answers=answers_at(rubric, [-1, -1]), overall=COMMENT, acting_user=second
    )
    from tests.conftest import drain_jobs

    await drain_jobs()
    results = await client.get(f"{prefix}/assignments/{assignment.id}/results", headers=h1)
    body = results.json()
    assert body["final_percent"] == 100.0
    assert body["reviews"][0]["reviewer"] == "Reviewer 1"
    assert second.username not in results.text


async def test_outsider_and_anonymous(client: httpx.AsyncClient, cast: Cast) -> None:
    assignment = await make_assignment(cast, utcnow())
    prefix = f"/api/v1/courses/{cast.course.slug}"
    assert (await client.get(f"{prefix}/assignments")).status_code == 401
    outsider = await client.get(
        f"{prefix}/assignments/{assignment.id}", headers=await _auth(cast.outsider)
    )
    assert outsider.status_code == 403
