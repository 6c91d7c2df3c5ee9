"""Staff interventions in peer review are moderation acts: each writes exactly one entry to the
public log and one notice to the learner affected, in one transaction; a refused or failing one
writes neither (nor anything else)."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import pytest

from core.errors import ActionError, Conflict, InvalidInput, PermissionDenied
from core.models import Notification, OutboxEvent, User
from moderation import log
from moderation.models import Act, LogEntry, Notice, Source
from peer_review import actions, interventions
from peer_review.models import (
    FlagState,
    GradeOverride,
    Review,
    ReviewStatus,
    SimilarityFlag,
    SimilarityState,
    StaffGrade,
    Submission,
)
from peer_review.queries import load_rubric, staff_queue
from peer_review.rubric import Rubric
from tests.conftest import drain_jobs
from tests.peer_review.factories import (
    COMMENT,
    Cast,
    Clock,
    answers_at,
    essay,
    make_assignment,
    review_once,
)

REASON = "The review scores a section the essay does not have."


@dataclass(slots=True)
class World:
    cast: Cast
    rubric: Rubric
    submissions: dict[int, Submission]  # author id -> submission
    reviews: list[Review]
    flags: list[SimilarityFlag]

    def author_of(self, review: Review) -> User:
        submission_id = review.submission_id  # type: ignore[attr-defined]
        author_id = next(a for a, s in self.submissions.items() if s.id == submission_id)
        return next(u for u in self.cast.learners if u.id == author_id)


@pytest.fixture
async def world(cast: Cast, clock: Clock) -> World:
    """Four learners, two of whom copied the other two; everyone has reviewed once and every
    author has flagged the review of their work."""
    assignment = await make_assignment(cast, clock.now, reviews_wanted=1, reviews_required=1)
    a, b, c, d = cast.learners[:4]
    texts = {a.id: essay(1, 150), b.id: essay(2, 150)}
    texts[c.id] = texts[a.id] + "\n\nMy own closing words."
    texts[d.id] = texts[b.id] + "\n\nAnd mine."
    submissions = {}
    for learner in (a, b, c, d):
        submissions[learner.id] = await actions.submit(
            assignment, body=texts[learner.id], acting_user=learner
        )
    reviews = [await review_once(assignment, learner) for learner in (a, b, c, d)]
    await drain_jobs()
    world = World(cast, await load_rubric(assignment.id), submissions, reviews, [])
    for review in reviews:
        await actions.flag_review(review, reason=REASON, acting_user=world.author_of(review))
    world.flags = list(await SimilarityFlag.all().order_by("id"))
    assert len(world.flags) == 2
    return world


async def counts() -> dict[str, int]:
    return {
        "log": await LogEntry.all().count(),
        "notice": await Notice.all().count(),
        "outbox": await OutboxEvent.all().count(),
        "staff_grade": await StaffGrade.all().count(),
        "override": await GradeOverride.all().count(),
        "voided": await Review.filter(status=ReviewStatus.VOIDED).count(),
        "flag_open": await Review.filter(flag_state=FlagState.OPEN).count(),
        "similar_open": await SimilarityFlag.filter(state=SimilarityState.OPEN).count(),
    }


async def one_act(work: Awaitable[Any], act: Act, notified: list[int]) -> LogEntry:
    """Run an intervention: exactly one new log entry, of `act`, and one notice per person
    in `notified`, tied to that entry."""
    before = await LogEntry.all().count()
    notices_before = await Notice.all().count()
    await work
    entries = await LogEntry.filter(seq__gte=before).order_by("seq")
    assert [e.act for e in entries] == [act.value]
    notices = await Notice.filter(entry_seq=entries[0].seq).order_by("id")
    assert [n.user_id for n in notices] == notified  # type: ignore[attr-defined]
    assert await Notice.all().count() == notices_before + len(notified)
    for notice in notices:
        assert notice.act == act.value and notice.appeal_until is not None
        assert notice.reason == entries[0].reason
    return entries[0]


async def test_each_intervention_writes_one_log_entry_and_notifies_who_it_affects(
    world: World,
) -> None:
    cast = world.cast
    voided, upheld = world.reviews[0], world.reviews[1]
    reviewer_id = voided.reviewer_id  # type: ignore[attr-defined]
    entry = await one_act(
        actions.void_review(voided, reason=REASON, acting_user=cast.mentor),
        Act.VOID_REVIEW, [reviewer_id],
    )  # fmt: skip
    assert (entry.target_type, entry.target_id, entry.source) == (
        "review",
        voided.id,
        Source.FLAG.value,
    )
    assert (entry.actor_id, entry.actor_role, entry.reason) == (cast.mentor.id, "mentor", REASON)
    stored = await Review.get(id=voided.id)
    assert stored.status == ReviewStatus.VOIDED and stored.flag_state == FlagState.VOIDED
    assert stored.decision_seq == entry.seq

    author = world.author_of(upheld)
    entry = await one_act(
        actions.uphold_review(upheld, reason="The score matches the rubric's level.",
                              acting_user=cast.instructor),
        Act.UPHOLD_REVIEW, [author.id],
    )  # fmt: skip
    assert (await Review.get(id=upheld.id)).flag_state == FlagState.UPHELD

    target = world.submissions[cast.learners[2].id]
    entry = await one_act(
        actions.grade_submission(
            target, answers=answers_at(world.rubric, [1, 1], COMMENT), overall=COMMENT,
            reason="Checking the peer grade by hand.", acting_user=cast.mentor,
        ),
        Act.STAFF_GRADE, [cast.learners[2].id],
    )  # fmt: skip
    assert (entry.target_type, entry.target_id) == ("submission", target.id)
    assert (entry.old_value, entry.new_value) == ("none", "staff grade")
    assert await StaffGrade.filter(submission_id=target.id, entry_seq=entry.seq).exists()

    entry = await one_act(
        actions.override_grade(target, percent=80, reason="Regraded after the appeal.",
                               acting_user=cast.instructor),
        Act.OVERRIDE_GRADE, [cast.learners[2].id],
    )  # fmt: skip
    # The public log says what kind of change it was, never the grade. (Not a search of the
    # whole text: the digits of its time can hold any number.)
    public = json.loads(entry.canonical)
    assert (public["old_value"], public["new_value"]) == ("peer grade", "override")
    assert "80" not in public["reason"] and public["duration_seconds"] is None

    copied, cleared = world.flags
    copier = world.submissions[cast.learners[2].id]
    assert copier.id in (copied.submission_a_id, copied.submission_b_id)  # type: ignore[attr-defined]
    entry = await one_act(
        actions.decide_similarity(
            copied, confirmed=True, responsible=[copier.id], rule_code="R4",
            reason="Same text as an earlier submission, submitted later.",
            acting_user=cast.instructor,
        ),
        Act.PLAGIARISM_DECISION, [cast.learners[2].id],
    )  # fmt: skip
    assert (entry.rule_code, entry.new_value, entry.target_type) == (
        "R4",
        "confirmed",
        "similarity",
    )
    # Clearing a pair accuses nobody, so nobody gets a notice; the log still records it.
    await one_act(
        actions.decide_similarity(
            cleared, confirmed=False, reason="They worked from the same shared notes.",
            acting_user=cast.instructor,
        ),
        Act.PLAGIARISM_DECISION, [],
    )  # fmt: skip
    assert (await SimilarityFlag.get(id=cleared.id)).state == SimilarityState.CLEARED

    await drain_jobs()
    assert (await log.verify_log()).ok
    # The author of the voided review's target heard that their flag was acted on.
    flagger = world.author_of(voided)
    assert await Notification.filter(user_id=flagger.id, message__contains="was voided").exists()
    queue = await staff_queue(await target.assignment)
    assert [r.id for r in queue.flagged_reviews] == [r.id for r in world.reviews[2:]]
    assert queue.similarity_flags == []


async def refused(error: type[ActionError], work: Awaitable[Any]) -> None:
    before = await counts()
    with pytest.raises(error):
        await work
    assert await counts() == before


async def test_a_refused_or_failing_intervention_writes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    cast = world.cast
    review = world.reviews[0]
    learner = cast.learners[3]
    submission = world.submissions[cast.learners[0].id]
    await refused(InvalidInput, actions.void_review(review, reason="bad", acting_user=cast.mentor))
    await refused(PermissionDenied, actions.void_review(review, reason=REASON, acting_user=learner))
    await refused(
        PermissionDenied, actions.void_review(review, reason=REASON, acting_user=cast.outsider)
    )
    # Overrides and plagiarism decisions are for instructors.
    await refused(
        PermissionDenied,
        actions.override_grade(submission, percent=50, reason=REASON, acting_user=cast.mentor),
    )
    await refused(
        InvalidInput,
        actions.override_grade(submission, percent=101, reason=REASON, acting_user=cast.instructor),
    )
    await refused(
        PermissionDenied,
        actions.decide_similarity(world.flags[0], confirmed=True, responsible=[submission.id],
                                  reason=REASON, acting_user=cast.mentor),
    )  # fmt: skip
    await refused(
        InvalidInput,
        actions.decide_similarity(world.flags[0], confirmed=True, responsible=[],
                                  reason=REASON, acting_user=cast.instructor),
    )  # fmt: skip
    await refused(
        InvalidInput,
        actions.grade_submission(submission, answers={}, overall="", reason=REASON,
                                 acting_user=cast.mentor),
    )  # fmt: skip
    await actions.uphold_review(review, reason=REASON, acting_user=cast.instructor)
    await refused(
        Conflict, actions.uphold_review(review, reason=REASON, acting_user=cast.instructor)
    )

    # A failure after the log entry is written rolls the entry back with everything else.
    async def broken_notice(**_: object) -> None:
        raise RuntimeError("the notice could not be written")

    monkeypatch.setattr(interventions, "_notify", broken_notice)
    before = await counts()
    with pytest.raises(RuntimeError):
        await actions.void_review(review, reason=REASON, acting_user=cast.mentor)
    with pytest.raises(RuntimeError):
        await actions.override_grade(
            submission, percent=70, reason=REASON, acting_user=cast.instructor
        )
    assert await counts() == before
    assert (await Review.get(id=review.id)).status == ReviewStatus.SUBMITTED
    assert (await log.verify_log()).ok
