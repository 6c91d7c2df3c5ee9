"""Rules that keep peer review honest: a submission locks once its author has seen a peer's
work, attempts are limited, filler is refused with a clear message, deadlines follow the late
policy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import Conflict, InvalidInput
from peer_review import actions
from peer_review.content import check_text, real_words, visible_text
from peer_review.models import Submission
from peer_review.queries import progress
from tests.peer_review.factories import Cast, Clock, essay, make_assignment

# ---------------------------------------------------------------- real content (pure)


def test_real_words_skip_numbers_punctuation_and_repeated_characters() -> None:
    assert real_words("It's 42 — a well-known fact!!! aaaa zzzzzz ok I") == [
        "it's", "a", "well-known", "fact", "ok", "i"
    ]  # fmt: skip
    assert real_words("Ωμέγα и слово 漢字") == ["ωμέγα", "и", "слово", "漢字"]


def test_visible_text_drops_markup_and_link_targets() -> None:
    text = visible_text("# Title\n\n[a link](https://example.com/very/long/path) and `code`")
    assert "https" not in text and "Title" in text and "code" in text


@pytest.mark.parametrize(
    "filler",
    [
        "." * 600,
        "a" * 600,
        "- - - - - - - - - - - - - - - - - - - - - - - - - -",
        " ".join(["lorem"] * 80),
        " ".join(["word"] * 9),
        "1 2 3 4 5 6 7 8 9 10 " * 10,
        ("This paragraph is pasted again and again to pad the text out. " * 12),
    ],
)
def test_filler_is_refused_with_a_clear_message(filler: str) -> None:
    verdict = check_text(filler, min_words=50)
    assert verdict.problem is not None
    assert "repeat" in verdict.problem or "real word" in verdict.problem


def test_real_prose_passes_and_short_prose_is_told_how_short() -> None:
    assert check_text(essay(1, 120), min_words=100).ok
    verdict = check_text("Too short to count as an essay.", min_words=100)
    assert verdict.words == 7 and verdict.problem is not None
    assert "7 real words" in verdict.problem and "at least 100" in verdict.problem


# ---------------------------------------------------------------- through the actions


async def test_filler_is_refused_per_field_and_attempts_are_limited(
    cast: Cast, clock: Clock
) -> None:
    assignment = await make_assignment(cast, clock.now, min_words=50)
    learner = cast.learners[0]
    for body, expected in [
        ("a" * 400, "real words"),
        (" ".join(["essay"] * 200), "repeats"),
        ("Three short words.", "3 real words"),
        ("", "empty"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            await actions.submit(assignment, body=body, acting_user=learner)
        assert set(caught.value.fields) == {"body"}
        assert expected in caught.value.fields["body"], caught.value.fields["body"]
    # A refused submission costs no attempt.
    assert (await progress(assignment, learner)).attempts_used == 0
    first = await actions.submit(assignment, body=essay(1), acting_user=learner)
    second = await actions.submit(assignment, body=essay(2), acting_user=learner)
    assert (second.attempt, second.is_current) == (2, True)
    old = await Submission.get(id=first.id)
    assert old.is_current is False and old.superseded_at == clock.now
    with pytest.raises(Conflict, match="all 2 attempts"):
        await actions.submit(assignment, body=essay(3), acting_user=learner)
    state = await progress(assignment, learner)
    assert (state.attempts_used, state.attempts_left, state.may_resubmit) == (2, 0, False)
    assert await Submission.filter(author_id=learner.id).count() == 2


async def test_opening_a_peers_work_locks_ones_own(cast: Cast, clock: Clock) -> None:
    assignment = await make_assignment(cast, clock.now, attempt_limit=3)
    copier, author, third = cast.learners[:3]
    await actions.submit(assignment, body=essay(4), acting_user=copier)
    await actions.submit(assignment, body=essay(5), acting_user=author)
    review = await actions.review_next(assignment, acting_user=copier)
    assert review is not None
    # Nothing submitted yet counts as "seen": the lock is on, even before any review is done.
    with pytest.raises(Conflict, match="opened a classmate's submission"):
        await actions.submit(assignment, body=essay(6), acting_user=copier)
    assert (await progress(assignment, copier)).locked
    # The author whose work was handed out cannot swap it under the reviewer either.
    with pytest.raises(Conflict, match="started reviewing"):
        await actions.submit(assignment, body=essay(7), acting_user=author)
    state = await progress(assignment, author)
    assert state.under_review and not state.may_resubmit
    # Someone who has seen nobody's work may still replace theirs.
    await actions.submit(assignment, body=essay(8), acting_user=third)
    await actions.submit(assignment, body=essay(9), acting_user=third)
    assert await Submission.filter(author_id=copier.id).count() == 1


async def test_late_policy_refuse_accept_and_grace_period(cast: Cast, clock: Clock) -> None:
    strict = await make_assignment(cast, clock.now, title="Strict")
    lenient = await make_assignment(
        cast, clock.now, title="Lenient", late_policy="accept", late_grace_hours=12
    )
    early, late, later = cast.learners[:3]
    await actions.submit(strict, body=essay(10), acting_user=early)
    clock.advance(days=1, minutes=1)
    with pytest.raises(Conflict, match="submissions are closed"):
        await actions.submit(strict, body=essay(11), acting_user=late)
    taken = await actions.submit(lenient, body=essay(12), acting_user=late)
    assert taken.is_late
    clock.advance(hours=12)
    with pytest.raises(Conflict, match="submissions are closed"):
        await actions.submit(lenient, body=essay(13), acting_user=later)
    before_open = await make_assignment(
        cast, clock.now, title="Soon", submission_opens_at=clock.now + timedelta(hours=1),
        review_opens_at=clock.now + timedelta(hours=1),
    )  # fmt: skip
    with pytest.raises(Conflict, match="Submissions open"):
        await actions.submit(before_open, body=essay(14), acting_user=early)
    assert await Submission.all().count() == 2
