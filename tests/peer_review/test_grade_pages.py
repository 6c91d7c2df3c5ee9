"""Learners see their calibrated grade with its interval; instructors see the charts."""

from __future__ import annotations

import httpx
import pytest

from peer_review.models import Assignment
from tests.factories import log_in, reuse_password_hashes
from tests.peer_review.factories import Clock, make_cast
from tests.peer_review.test_calibrated import LEARNERS, _simulate_assignment


@pytest.fixture
async def simulated(
    client: httpx.AsyncClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    reuse_password_hashes(monkeypatch)
    cast = await make_cast(LEARNERS)
    return {"cast": cast, **await _simulate_assignment(cast, clock)}


async def test_a_learner_sees_grade_interval_explanation_and_how_they_grade(
    app: object, simulated: dict[str, object]
) -> None:
    cast = simulated["cast"]
    assignment = simulated["assignment"]
    assert isinstance(assignment, Assignment)
    generous = simulated["generous"]
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        await log_in(browser, generous.username)  # type: ignore[attr-defined]
        url = f"/courses/{cast.course.slug}/assignments/{assignment.id}/results"  # type: ignore[attr-defined]
        page = await browser.get(url)
    assert page.status_code == 200, page.text
    assert "90% sure" in page.text
    assert 'class="chart grade-interval"' in page.text
    assert "How you grade" in page.text
    assert "more generously than staff" in page.text


async def test_the_staff_queue_charts_grades_and_reviewers(
    app: object, simulated: dict[str, object]
) -> None:
    cast = simulated["cast"]
    assignment = simulated["assignment"]
    assert isinstance(assignment, Assignment)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        await log_in(browser, cast.instructor.username)  # type: ignore[attr-defined]
        url = f"/courses/{cast.course.slug}/staff/assignments/{assignment.id}/queue"  # type: ignore[attr-defined]
        page = await browser.get(url)
    assert page.status_code == 200, page.text
    assert "Grade distribution" in page.text
    assert "Uncertain peer grades" in page.text
    assert f"Submission {simulated['zeroed']}" in page.text
    assert page.text.count("<svg") >= 2
