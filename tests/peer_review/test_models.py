"""peer_review.models and peer_review.queries: permission methods, windows, and what the
read-only queries show to whom."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.models import Role, User
from peer_review import actions
from peer_review.models import (
    Assignment,
    LatePolicy,
    Review,
    ReviewStatus,
    Submission,
    is_staff,
)
from peer_review.queries import progress, staff_queue
from tests.peer_review.factories import (
    Cast,
    Clock,
    make_assignment,
    review_once,
    submit_all,
)

NOW = datetime(2030, 3, 1, 12, tzinfo=UTC)


def user(*, admin: bool = False, active: bool = True, pk: int = 1) -> User:
    return User(id=pk, username=f"u{pk}", display_name="U", password_hash="", is_admin=admin,
                is_active=active)  # fmt: skip


def assignment(**values: object) -> Assignment:
    base: dict[str, object] = {
        "submission_opens_at": NOW - timedelta(days=1),
        "submission_due_at": NOW,
        "review_opens_at": NOW - timedelta(days=1),
        "review_due_at": NOW + timedelta(days=2),
        "is_published": True,
    }
    base.update(values)
    return Assignment(**base)


def test_who_manages_sees_and_works_on_an_assignment() -> None:
    published, draft = assignment(), assignment(is_published=False)
    learner, admin, suspended = user(), user(admin=True), user(active=False)
    assert published.can_be_managed_by(user(), Role.INSTRUCTOR)
    assert not published.can_be_managed_by(user(), Role.MENTOR)
    assert published.can_be_managed_by(admin, None)
    assert not published.can_be_managed_by(suspended, Role.INSTRUCTOR)
    assert published.can_be_seen_by(learner, Role.LEARNER)
    assert not draft.can_be_seen_by(learner, Role.LEARNER)
    assert draft.can_be_seen_by(learner, Role.MENTOR)
    assert not published.can_be_seen_by(None, None) and not published.can_be_seen_by(learner, None)
    assert published.can_be_worked_on_by(learner, Role.LEARNER)
    assert not published.can_be_worked_on_by(learner, Role.MENTOR)
    assert not draft.can_be_worked_on_by(learner, Role.LEARNER)
    assert not published.can_be_worked_on_by(suspended, Role.LEARNER)
    assert (
        is_staff(admin, None) and not is_staff(learner, Role.LEARNER) and not is_staff(None, None)
    )


def test_windows_and_the_late_deadline() -> None:
    strict = assignment()
    assert strict.late_until == NOW
    assert strict.takes_submissions_at(NOW) and not strict.takes_submissions_at(
        NOW + timedelta(seconds=1)
    )
    lenient = assignment(late_policy=LatePolicy.ACCEPT, late_grace_hours=6)
    assert lenient.late_until == NOW + timedelta(hours=6)
    assert lenient.takes_submissions_at(NOW + timedelta(hours=5))
    assert not assignment(is_published=False).takes_submissions_at(NOW)
    assert strict.takes_reviews_at(NOW + timedelta(days=2))
    assert not strict.takes_reviews_at(NOW + timedelta(days=2, seconds=1))
    assert assignment(lease_hours=8).lease == timedelta(hours=8)


def test_who_may_read_a_submission_and_edit_a_review() -> None:
    author, other = user(pk=1), user(pk=2)
    submission = Submission()
    submission.author_id = author.id  # type: ignore[attr-defined]
    assert submission.can_be_read_by(author, Role.LEARNER, reviewing=False)
    assert not submission.can_be_read_by(other, Role.LEARNER, reviewing=False)
    assert submission.can_be_read_by(other, Role.LEARNER, reviewing=True)
    assert submission.can_be_read_by(other, Role.MENTOR, reviewing=False)
    assert not submission.can_be_read_by(None, None, reviewing=True)
    review = Review(status=ReviewStatus.LEASED, lease_expires_at=NOW)
    review.reviewer_id = other.id  # type: ignore[attr-defined]
    assert review.can_be_edited_by(other) and not review.can_be_edited_by(author)
    assert review.is_live_lease(NOW - timedelta(seconds=1)) and not review.is_live_lease(NOW)
    review.status = ReviewStatus.SUBMITTED
    assert not review.can_be_edited_by(other)


# ---------------------------------------------------------------- queries


async def test_progress_and_the_staff_queue_after_the_review_deadline(
    cast: Cast, clock: Clock
) -> None:
    assignment = await make_assignment(cast, clock.now, reviews_wanted=2, reviews_required=1)
    a, b, c = cast.learners[:3]
    s_a, s_b, s_c = await submit_all(assignment, [a, b, c])
    start = await progress(assignment, a)
    assert (start.attempts_used, start.attempts_left, start.reviews_given) == (1, 1, 0)
    assert start.may_resubmit and start.calibrated and start.grade is None
    await review_once(assignment, a)
    await review_once(assignment, b)
    held = await actions.review_next(assignment, acting_user=c)
    done = await progress(assignment, a)
    assert done.reviews_given == 1 and done.locked and done.active_review is None
    assert (await progress(assignment, c)).active_review == held
    assert (await staff_queue(assignment)).short_of_reviews == []
    clock.advance(days=3, seconds=1)
    queue = await staff_queue(assignment)
    # Two reviews done and one lease lapsed: every submission is short of the two wanted.
    assert {s.id for s in queue.short_of_reviews} == {s_a.id, s_b.id, s_c.id}
    assert queue.flagged_reviews == [] and queue.similarity_flags == []
