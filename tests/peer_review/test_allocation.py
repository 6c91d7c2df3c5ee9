"""peer_review.allocation: properties of "review next" over arbitrary orders of requests,
completions and expired leases, and the same rules through the action on a real database."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peer_review import actions
from peer_review.allocation import (
    Candidate,
    Choice,
    choose,
    max_assignment,
    short_of_reviews,
)
from peer_review.models import Review, ReviewStatus
from peer_review.queries import progress
from tests.peer_review.factories import (
    COMMENT,
    Cast,
    Clock,
    essay,
    make_assignment,
    review_once,
    submit_all,
)

LEASE = timedelta(hours=8)
START = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass
class Entry:
    status: str  # "leased" or "done"
    expires_at: datetime


@dataclass
class World:
    """An in-memory course: each reviewer authored the submission with the same number."""

    wanted: int
    quota: int
    authors: dict[int, int]
    late: set[int] = field(default_factory=set)
    staff_graded: set[int] = field(default_factory=set)
    now: datetime = START
    entries: dict[tuple[int, int], Entry] = field(default_factory=dict)

    @property
    def spot_checks(self) -> int:
        """Completed reviews of staff-graded submissions."""
        return sum(
            1 for (s, _), e in self.entries.items() if e.status == "done" and s in self.staff_graded
        )

    def live(self, entry: Entry) -> bool:
        return entry.status == "leased" and entry.expires_at > self.now

    def candidates(self) -> list[Candidate]:
        completed = {s: 0 for s in self.authors}
        leased = {s: 0 for s in self.authors}
        for (s, _), entry in self.entries.items():
            if entry.status == "done":
                completed[s] += 1
            elif self.live(entry):
                leased[s] += 1
        return [
            Candidate(s, a, completed[s], leased[s], s in self.late, s in self.staff_graded)
            for s, a in self.authors.items()
        ]

    def taken(self) -> dict[int, set[int]]:
        out: dict[int, set[int]] = {}
        for (s, r), entry in self.entries.items():
            if entry.status == "done" or self.live(entry):
                out.setdefault(r, set()).add(s)
        return out

    def given(self, reviewer: int) -> int:
        return sum(
            1
            for (_, r), e in self.entries.items()
            if r == reviewer and (e.status == "done" or self.live(e))
        )

    def owed(self) -> dict[int, int]:
        return {a: max(0, self.quota - self.given(a)) for a in self.authors.values()}

    def held(self, reviewer: int) -> int | None:
        return next(
            (s for (s, r), e in self.entries.items() if r == reviewer and self.live(e)), None
        )

    def request(self, reviewer: int, rng: random.Random, rate: float = 0.0) -> Choice | None:
        """What review_next does: the held lease, or a new one chosen by `choose`."""
        if (held := self.held(reviewer)) is not None:
            return Choice(held, False)
        taken = self.taken()
        choice = choose(
            self.candidates(), reviewer_id=reviewer, wanted=self.wanted, taken=taken,
            owed=self.owed(), spot_check_rate=rate, rng=rng,
        )  # fmt: skip
        if choice is None:
            return None
        author = self.authors[choice.submission_id]
        assert author != reviewer, "handed their own submission"
        assert choice.submission_id not in taken.get(reviewer, set()), "handed a taken one"
        assert choice.spot_check == (choice.submission_id in self.staff_graded)
        self.entries[(choice.submission_id, reviewer)] = Entry("leased", self.now + LEASE)
        return choice

    def complete(self, reviewer: int) -> None:
        held = self.held(reviewer)
        if held is not None:
            self.entries[(held, reviewer)].status = "done"

    def completed(self, submission: int) -> int:
        return sum(
            1 for (s, _), e in self.entries.items() if s == submission and e.status == "done"
        )

    def finish(self, order: list[int], rng: random.Random, rate: float = 0.0) -> None:
        """Every reviewer comes back until they have given their quota of reviews."""
        for reviewer in order:
            self.complete(reviewer)
        for reviewer in order:
            while self.given(reviewer) < self.quota:
                if self.request(reviewer, rng, rate) is None:
                    break
                self.complete(reviewer)


def make_world(n: int, k: int, *, late: int = 0, staff_graded: int = 0) -> World:
    authors = {s: s for s in range(n)}
    return World(
        wanted=k, quota=k, authors=authors, late=set(range(n - late, n)),
        staff_graded=set(range(staff_graded)),
    )  # fmt: skip


# A step: who acts, and what: 0 request, 1 complete, 2 let every live lease expire.
steps = st.lists(st.tuples(st.integers(0, 20), st.integers(0, 2)), max_size=60)


@st.composite
def course_shape(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(2, 10))
    k = draw(st.integers(1, min(4, n - 1)))
    return n, k


def run(world: World, plan: list[tuple[int, int]], seed: int, rate: float = 0.0) -> None:
    rng = random.Random(seed)
    reviewers = sorted(set(world.authors.values()))
    for who, what in plan:
        reviewer = reviewers[who % len(reviewers)]
        if what == 0 and world.given(reviewer) < world.quota:
            world.request(reviewer, rng, rate)
        elif what == 1:
            world.complete(reviewer)
        elif what == 2:
            world.now += LEASE + timedelta(seconds=1)
    order = reviewers[:]
    rng.shuffle(order)
    world.finish(order, rng, rate)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(course_shape(), steps, st.integers(0, 2**16))
def test_nobody_reviews_themselves_or_the_same_work_twice(
    shape: tuple[int, int], plan: list[tuple[int, int]], seed: int
) -> None:
    n, k = shape
    world = make_world(n, k)
    run(world, plan, seed)  # `request` asserts both on every hand-out
    done = [(s, r) for (s, r), e in world.entries.items() if e.status == "done"]
    assert len(done) == len(set(done))
    assert all(world.authors[s] != r for s, r in done)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(course_shape(), steps, st.integers(0, 2**16), st.integers(0, 3))
def test_every_on_time_submission_reaches_k_reviews_when_enough_reviewers_exist(
    shape: tuple[int, int], plan: list[tuple[int, int]], seed: int, late: int
) -> None:
    """Each of n >= k + 1 authors gives k reviews, in any order, with leases abandoned and
    expiring along the way: every submission, on time or late, ends with k reviews."""
    n, k = shape
    world = make_world(n, k, late=min(late, n - 1))
    run(world, plan, seed)
    assert all(world.given(r) == k for r in world.authors.values())
    assert [world.completed(s) for s in world.authors] == [k] * n


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(course_shape(), steps, st.integers(0, 2**16), st.integers(1, 3), st.floats(0, 1))
def test_spot_checks_come_only_from_spare_capacity(
    shape: tuple[int, int], plan: list[tuple[int, int]], seed: int, graded: int, rate: float
) -> None:
    """Staff-graded submissions go out blind, yet every other submission still gets k."""
    n, k = shape
    graded = min(graded, n - 1)
    world = make_world(n, k, staff_graded=graded)
    run(world, plan, seed, rate)
    for submission in world.authors:
        if submission not in world.staff_graded:
            assert world.completed(submission) >= k
    assert world.spot_checks <= graded * k


def test_spot_checks_are_handed_out_at_about_the_rate() -> None:
    rng = random.Random(4)
    world = make_world(40, 3, staff_graded=10)
    for reviewer in range(40):
        for _ in range(3):
            world.request(reviewer, rng, rate=0.2)
            world.complete(reviewer)
    # 10 graded submissions free 30 reviews of the 120 given; about a fifth are drawn.
    assert 12 <= world.spot_checks <= 30


@settings(max_examples=100, deadline=None)
@given(course_shape(), st.integers(0, 2**16), st.permutations(range(10)))
def test_leases_reassign_after_expiry(
    shape: tuple[int, int], seed: int, comeback: list[int]
) -> None:
    """Everyone takes a lease and walks away: while the leases run they reserve their
    submissions; once expired they reserve nothing, and the work is handed out again."""
    n, k = shape
    world = make_world(n, k)
    rng = random.Random(seed)
    for reviewer in range(n):
        assert world.request(reviewer, rng) is not None
    held = [c.leased for c in world.candidates()]
    assert sum(held) == n
    assert all(world.held(r) is not None for r in range(n))
    world.now += LEASE
    assert [c.leased for c in world.candidates()] == [0] * n
    assert all(world.held(r) is None for r in range(n))
    assert world.owed() == dict.fromkeys(range(n), k)
    world.finish([r for r in comeback if r < n], rng)
    assert [world.completed(s) for s in world.authors] == [k] * n


def test_the_ordering_rule_short_on_time_fewest_oldest() -> None:
    candidates = [
        Candidate(1, 11, completed=3),
        Candidate(2, 12, completed=1, is_late=True),
        Candidate(3, 13, completed=2),
        Candidate(4, 14, completed=1, leased=1),
        Candidate(5, 15, completed=2),
    ]
    pick = choose(candidates, reviewer_id=99, wanted=3, taken={})
    assert pick == Choice(3, False)  # short, on time, fewest (2), oldest of 3 and 4 and 5
    assert choose(candidates, reviewer_id=99, wanted=3, taken={99: {3, 4, 5}}) == Choice(2, False)
    assert choose(candidates, reviewer_id=99, wanted=3, taken={99: {2, 3, 4, 5}}) == Choice(
        1, False
    )
    assert choose(candidates, reviewer_id=11, wanted=3, taken={11: {2, 3, 4, 5}}) is None


def test_max_assignment_finds_the_rerouting_a_greedy_pass_misses() -> None:
    # Reviewer 1 may only review A; a greedy pass that gives A to reviewer 2 strands 1.
    plan = max_assignment({2: 1, 1: 1}, {10: 1, 20: 1}, {1: [10], 2: [10, 20]})
    assert plan == {1: {10}, 2: {20}}


def test_staff_queue_lists_short_submissions_without_staff_grade() -> None:
    candidates = [
        Candidate(1, 11, completed=3),
        Candidate(2, 12, completed=1),
        Candidate(3, 13, completed=0, leased=3),
        Candidate(4, 14, completed=0, staff_graded=True),
    ]
    assert short_of_reviews(candidates, 3) == [2, 3]


# ---------------------------------------------------------------- through the action


async def test_review_next_honours_leases_until_they_expire(cast: Cast, clock: Clock) -> None:
    assignment = await make_assignment(cast, clock.now, reviews_wanted=1, reviews_required=1)
    a, b, c = cast.learners[:3]
    s_a, s_b = await submit_all(assignment, [a, b])
    lease = await actions.review_next(assignment, acting_user=a)
    assert lease is not None and lease.submission_id == s_b.id  # type: ignore[attr-defined]
    await actions.save_review_draft(lease, answers={}, overall="Started", acting_user=a)
    await actions.submit(assignment, body="\n".join([COMMENT] * 2) + essay(77), acting_user=c)
    # b's work is held by a, so c is steered to a's.
    review = await review_once(assignment, c)
    assert review.submission_id == s_a.id  # type: ignore[attr-defined]
    assert (await progress(assignment, a)).active_review is not None
    clock.advance(hours=8, seconds=1)
    assert (await progress(assignment, a)).active_review is None
    # The expired lease reserves nothing; a gets it back (b can only review c's), draft kept.
    again = await actions.review_next(assignment, acting_user=a)
    assert again is not None and again.id == lease.id
    assert again.draft["overall"] == "Started"
    assert again.lease_expires_at == clock.now + timedelta(hours=8)
    assert await Review.filter(status=ReviewStatus.LEASED).count() == 1


def test_choose_handles_no_candidates() -> None:
    assert choose([], reviewer_id=1, wanted=3, taken={}) is None
