"""peer_review.actions: setting up assignments, submitting, calibrating, reviewing, feedback,
the course record, and the outbox work that follows (grades, near-duplicate flags).

Each database test covers one flow end to end (the database is reset for every test, which
is most of a test's cost).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.models import Notification, OutboxEvent
from peer_review import actions
from peer_review.models import (
    Assignment,
    CalibrationAnswer,
    FlagState,
    Grade,
    GradeSource,
    LatePolicy,
    Participation,
    Review,
    ReviewStatus,
    SimilarityFlag,
    Submission,
)
from peer_review.queries import course_record, load_rubric, progress, reviews_of
from peer_review.rubric import RawAnswer
from tests.conftest import drain_jobs
from tests.peer_review.factories import (
    COMMENT,
    Cast,
    Clock,
    answers_at,
    assignment_input,
    default_rubric,
    essay,
    make_assignment,
    review_once,
    submit_all,
)

# ---------------------------------------------------------------- setting up


async def test_instructors_create_assignments_checked_field_by_field(
    cast: Cast, clock: Clock
) -> None:
    data = assignment_input(clock.now)
    for user in (cast.mentor, cast.learners[0], cast.outsider):
        with pytest.raises(PermissionDenied):
            await actions.create_assignment(cast.course, data, acting_user=user)
    bad = assignment_input(
        clock.now, title="x", instructions="   ", attempt_limit=0, reviews_wanted=11,
        submission_due_at=clock.now - timedelta(days=2), spot_check_rate=0.9,
        late_policy="penalty", late_grace_hours=0, late_penalty_percent=0,
    )  # fmt: skip
    with pytest.raises(InvalidInput) as caught:
        await actions.create_assignment(cast.course, bad, acting_user=cast.instructor)
    assert set(caught.value.fields) == {
        "title", "instructions", "attempt_limit", "reviews_wanted", "submission_due_at",
        "spot_check_rate", "late_grace_hours", "late_penalty_percent",
    }  # fmt: skip
    late_beyond_reviews = assignment_input(clock.now, late_policy="accept", late_grace_hours=120)
    with pytest.raises(InvalidInput) as caught:
        await actions.create_assignment(
            cast.course, late_beyond_reviews, acting_user=cast.instructor
        )
    assert set(caught.value.fields) == {"late_grace_hours"}
    assert await Assignment.all().count() == 0

    assignment = await actions.create_assignment(cast.course, data, acting_user=cast.instructor)
    stored = await Assignment.get(id=assignment.id)
    assert (stored.reviews_required, stored.reviews_wanted, stored.attempt_limit) == (3, 3, 2)
    assert stored.lease_hours == 8 and stored.late_policy == LatePolicy.REFUSE
    assert stored.is_published is False
    assert "<strong>evidence</strong>" in stored.instructions_html
    changed = assignment_input(clock.now, title="Essay two", reviews_wanted=4)
    await actions.update_assignment(assignment, changed, acting_user=cast.instructor)
    assert (await Assignment.get(id=assignment.id)).reviews_wanted == 4
    with pytest.raises(PermissionDenied):
        await actions.update_assignment(assignment, changed, acting_user=cast.mentor)


async def test_rubric_and_calibration_samples_before_publishing(cast: Cast, clock: Clock) -> None:
    assignment = await make_assignment(cast, clock.now, publish=False, calibration_required=1)
    rubric = await actions.set_rubric(assignment, default_rubric()[:1], acting_user=cast.instructor)
    assert [c.title for c in rubric.criteria] == ["Argument"]
    assert [lv.points for lv in rubric.criteria[0].levels] == [0, 1, 2, 3]
    with pytest.raises(PermissionDenied):
        await actions.set_rubric(assignment, default_rubric(), acting_user=cast.mentor)
    rubric = await actions.set_rubric(assignment, default_rubric(), acting_user=cast.instructor)
    argument, clarity = rubric.criteria
    with pytest.raises(InvalidInput) as caught:
        await actions.add_calibration_sample(
            assignment, title="Sample", body=essay(2),
            reference={argument.id: RawAnswer((argument.levels[1].id,), "short")},
            acting_user=cast.instructor,
        )  # fmt: skip
    assert set(caught.value.fields) == {
        f"comment-{argument.id}",
        f"level-{clarity.id}",
        f"comment-{clarity.id}",
    }
    with pytest.raises(Conflict, match="calibration samples"):
        await actions.publish_assignment(assignment, acting_user=cast.instructor)
    sample = await actions.add_calibration_sample(
        assignment, title="Sample", body=essay(2), reference=answers_at(rubric, [1, 2]),
        acting_user=cast.instructor,
    )  # fmt: skip
    assert sample.reference_levels() == {
        argument.id: argument.levels[1].id,
        clarity.id: clarity.levels[2].id,
    }
    # Samples depend on the rubric: it can no longer change under them.
    with pytest.raises(Conflict):
        await actions.set_rubric(assignment, default_rubric(), acting_user=cast.instructor)
    with pytest.raises(NotFound):
        await actions.submit(assignment, body=essay(9), acting_user=cast.learners[0])
    await actions.publish_assignment(assignment, acting_user=cast.instructor)
    assert (await Assignment.get(id=assignment.id)).is_published


async def test_learners_calibrate_before_reviewing_and_agreement_is_recorded(
    cast: Cast, clock: Clock
) -> None:
    assignment = await make_assignment(cast, clock.now, publish=False, calibration_required=1)
    rubric = await load_rubric(assignment.id)
    sample = await actions.add_calibration_sample(
        assignment, title="Sample", body=essay(3), reference=answers_at(rubric, [2, 1]),
        acting_user=cast.instructor,
    )  # fmt: skip
    await actions.publish_assignment(assignment, acting_user=cast.instructor)
    await submit_all(assignment, cast.learners[:2])
    learner = cast.learners[0]
    with pytest.raises(Conflict) as caught:
        await actions.review_next(assignment, acting_user=learner)
    assert "calibration" in caught.value.fields
    answer = await actions.grade_calibration_sample(
        sample, answers=answers_at(rubric, [3, 1]), acting_user=learner
    )
    argument, clarity = rubric.criteria
    assert answer.distances == {str(argument.id): 1, str(clarity.id): 0}
    assert answer.agreement_rate == 0.5
    with pytest.raises(Conflict):
        await actions.grade_calibration_sample(
            sample, answers=answers_at(rubric, [2, 1]), acting_user=learner
        )
    assert await CalibrationAnswer.all().count() == 1
    assert (await progress(assignment, learner)).calibrated
    assert await actions.review_next(assignment, acting_user=learner) is not None


# ---------------------------------------------------------------- submissions and reviews


async def test_submit_then_review_next_hands_out_one_lease_at_a_time(
    cast: Cast, clock: Clock
) -> None:
    assignment = await make_assignment(cast, clock.now)
    first, second = cast.learners[:2]
    submission = await actions.submit(assignment, body=essay(7), acting_user=second)
    assert submission.attempt == 1 and submission.is_current and not submission.is_late
    assert submission.word_count == 120 and "<p>" in submission.body_html
    assert "peer_review.check_similarity" in await OutboxEvent.all().values_list("kind", flat=True)
    for user in (cast.mentor, cast.outsider):
        with pytest.raises((PermissionDenied, NotFound)):
            await actions.submit(assignment, body=essay(8), acting_user=user)
    with pytest.raises(Conflict, match="Submit your own work"):
        await actions.review_next(assignment, acting_user=first)
    # The only submission is second's own: nothing to hand out, and that is no error.
    assert await actions.review_next(assignment, acting_user=second) is None
    await actions.submit(assignment, body=essay(11), acting_user=first)
    review = await actions.review_next(assignment, acting_user=first)
    assert review is not None and review.status == ReviewStatus.LEASED
    assert review.submission_id == submission.id  # type: ignore[attr-defined]
    assert review.lease_expires_at == clock.now + timedelta(hours=8)
    again = await actions.review_next(assignment, acting_user=first)
    assert again is not None and again.id == review.id
    participation = await Participation.get(assignment_id=assignment.id, learner_id=first.id)
    assert participation.locked_at == clock.now
    await review_once(assignment, first)
    assert await actions.review_next(assignment, acting_user=first) is None


async def test_the_review_window_is_enforced(cast: Cast, clock: Clock) -> None:
    assignment = await make_assignment(
        cast, clock.now, review_opens_at=clock.now + timedelta(hours=2)
    )
    await submit_all(assignment, cast.learners[:2])
    with pytest.raises(Conflict, match="Reviewing opens"):
        await actions.review_next(assignment, acting_user=cast.learners[0])
    clock.advance(hours=3)
    review = await actions.review_next(assignment, acting_user=cast.learners[0])
    assert review is not None
    clock.advance(days=3)
    with pytest.raises(Conflict, match="over"):
        await actions.review_next(assignment, acting_user=cast.learners[1])
    rubric = await load_rubric(assignment.id)
    with pytest.raises(Conflict, match="over"):
        await actions.submit_review(
            review, answers=answers_at(rubric, [3, 2]), overall=COMMENT,
            acting_user=cast.learners[0],
        )  # fmt: skip


async def test_drafts_are_kept_and_only_the_reviewer_writes_them(cast: Cast, clock: Clock) -> None:
    assignment = await make_assignment(cast, clock.now)
    await submit_all(assignment, cast.learners[:2])
    review = await actions.review_next(assignment, acting_user=cast.learners[0])
    assert review is not None
    argument = (await load_rubric(assignment.id)).criteria[0]
    partial = {argument.id: RawAnswer((argument.levels[1].id,), "half a thought")}
    await actions.save_review_draft(
        review, answers=partial, overall="so far", acting_user=cast.learners[0]
    )
    stored = await Review.get(id=review.id)
    assert stored.draft["answers"][str(argument.id)] == {
        "levels": [argument.levels[1].id],
        "comment": "half a thought",
    }
    assert stored.draft["overall"] == "so far"
    with pytest.raises(PermissionDenied):
        await actions.save_review_draft(
            review, answers=partial, overall="", acting_user=cast.learners[1]
        )
    with pytest.raises(InvalidInput) as caught:
        await actions.save_review_draft(
            review, answers={}, overall="x" * 6000, acting_user=cast.learners[0]
        )
    assert set(caught.value.fields) == {"overall"}
    # An incomplete submission is refused and leaves the draft as it was.
    with pytest.raises(InvalidInput):
        await actions.submit_review(
            review, answers=partial, overall="", acting_user=cast.learners[0]
        )
    assert (await Review.get(id=review.id)).draft == stored.draft


async def test_authors_see_reviews_anonymously_rate_and_flag_them(cast: Cast, clock: Clock) -> None:
    assignment = await make_assignment(cast, clock.now)
    author, reviewer = cast.learners[:2]
    await actions.submit(assignment, body=essay(20), acting_user=author)
    await actions.submit(assignment, body=essay(21), acting_user=reviewer)
    review = await review_once(assignment, reviewer, [2, 1])
    assert review.status == ReviewStatus.SUBMITTED
    assert review.percent == pytest.approx(100 * (2 * 2 + 1) / (2 * 3 + 2))
    with pytest.raises(Conflict):
        await actions.submit_review(review, answers={}, overall=COMMENT, acting_user=reviewer)
    await drain_jobs()
    notes = await Notification.filter(user_id=author.id, kind="peer_review")
    assert any("reviewed your submission" in n.message for n in notes)
    submission = await Submission.get(author_id=author.id)
    seen = await reviews_of(submission, viewer=author)
    assert [(r.label, r.reviewer_id) for r in seen] == [("Reviewer 1", None)]
    assert (await reviews_of(submission, viewer=cast.mentor))[0].reviewer_id == reviewer.id
    with pytest.raises(PermissionDenied):
        await reviews_of(submission, viewer=cast.learners[2])

    with pytest.raises(InvalidInput):
        await actions.rate_review(review, helpfulness=6, acting_user=author)
    with pytest.raises(PermissionDenied):
        await actions.rate_review(review, helpfulness=4, acting_user=reviewer)
    await actions.rate_review(review, helpfulness=4, acting_user=author)
    await actions.rate_review(review, helpfulness=2, acting_user=author)
    assert (await Review.get(id=review.id)).helpfulness == 2
    with pytest.raises(InvalidInput) as caught:
        await actions.flag_review(review, reason="bad", acting_user=author)
    assert set(caught.value.fields) == {"reason"}
    await actions.flag_review(
        review, reason="It scores a section my essay does not have.", acting_user=author
    )
    stored = await Review.get(id=review.id)
    assert stored.flag_state == FlagState.OPEN and stored.flagged_at == clock.now
    with pytest.raises(Conflict):
        await actions.flag_review(review, reason="Flagging it a second time.", acting_user=author)


# ---------------------------------------------------------------- outbox work and the record


async def test_grades_arrive_through_the_outbox_and_fill_the_course_record(
    cast: Cast, clock: Clock
) -> None:
    assignment = await make_assignment(cast, clock.now, reviews_wanted=2, reviews_required=2)
    learners = cast.learners[:3]
    first, second, third = await submit_all(assignment, learners)
    levels = {learners[0].id: [3, 2], learners[1].id: [1, 0], learners[2].id: [2, 1]}
    for learner in learners:
        await review_once(assignment, learner, levels[learner.id])
    await drain_jobs()
    for submission in (first, second, third):
        reviews = await Review.filter(submission_id=submission.id, status="submitted").count()
        grade = await Grade.get_or_none(submission_id=submission.id)
        assert (grade is not None and grade.final_percent is not None) == (reviews >= 2)
    for learner in learners:
        await review_once(assignment, learner, levels[learner.id])
    await drain_jobs()
    # With three learners and two reviews each, everyone reviews both classmates. Per
    # criterion the median of two scores is their mean rounded up (ORA2).
    expected = {first.id: 62.5, second.id: 100.0, third.id: 62.5}
    for grade in await Grade.all():
        assert grade.final_percent == pytest.approx(expected[grade.submission_id])  # type: ignore[attr-defined]
        assert grade.source == GradeSource.PEER and grade.review_count == 2
    author, classmate = learners[:2]
    told = await Notification.filter(user_id=author.id, message__contains="Your grade").count()
    assert told == 1

    record = await course_record(cast.course, author, viewer=author)
    assert [(r.title, r.final_percent, r.reviews_given) for r in record] == [("Essay one", 62.5, 2)]
    assert await course_record(cast.course, author, viewer=cast.mentor) == record
    for viewer in (classmate, cast.outsider, None):
        with pytest.raises(NotFound):
            await course_record(cast.course, author, viewer=viewer)
    await actions.set_record_public(cast.course, public=True, acting_user=author)
    assert await course_record(cast.course, author, viewer=None) == record
    await actions.set_record_public(cast.course, public=False, acting_user=author)
    with pytest.raises(NotFound):
        await course_record(cast.course, author, viewer=classmate)
    with pytest.raises(PermissionDenied):
        await actions.set_record_public(cast.course, public=True, acting_user=cast.outsider)


async def test_near_duplicates_are_flagged_for_staff_without_penalty(
    cast: Cast, clock: Clock
) -> None:
    prompt = essay(99, words=200)
    assignment = await make_assignment(cast, clock.now, instructions=prompt)
    original = essay(40, words=150)
    copied = original.replace("Analysis", "Study", 1) + "\n\nI added one last sentence here."
    first = await actions.submit(assignment, body=original, acting_user=cast.learners[0])
    second = await actions.submit(assignment, body=copied, acting_user=cast.learners[1])
    # Two who quote the whole prompt and add their own words have not copied each other.
    for i, learner in enumerate(cast.learners[2:4]):
        body = f"{prompt}\n\n{essay(50 + i, words=60)}"
        await actions.submit(assignment, body=body, acting_user=learner)
    await drain_jobs()
    flags = await SimilarityFlag.all()
    assert len(flags) == 1
    flag = flags[0]
    pair = (flag.submission_a_id, flag.submission_b_id)  # type: ignore[attr-defined]
    assert pair == (first.id, second.id) and flag.similarity > 0.8
    # Running the check again flags nothing new; nobody's grade or standing changed.
    await actions.check_similarity(await Submission.get(id=second.id), acting_user=None)
    assert await SimilarityFlag.all().count() == 1
    assert await Grade.all().count() == 0
    state = await progress(assignment, cast.learners[1])
    assert state.submission is not None and state.submission.id == second.id
