"""Which submission a reviewer gets next: the pure core of "review next".

No database: the action loads the assignment's current submissions with their review counts
and every reviewer's history, asks `choose`, and records a lease. The rules:

- never the reviewer's own submission, never one they have reviewed or hold;
- a lease counts only until it expires (callers pass live leases in `Candidate.leased`), so
  abandoned work goes back to the pool;
- submissions short of the wanted number of reviews come first, on-time before late, then the
  fewest completed plus leased reviews, then the oldest;
- the choice never costs another submission its reviews. The reviewers who still owe reviews
  and the submissions still short form a transport problem; `choose` hands the reviewer a
  submission that some maximum assignment of the remaining work gives them, so whatever order
  reviewers come back in, the reviews still owed can cover as many missing reviews as before.
  With every author owing k reviews and at least k + 1 authors, every submission gets k;
- staff-graded submissions are handed out blind as spot checks at `spot_check_rate`, but only
  from spare capacity (a reviewer the remaining work does not need); otherwise they are handed
  out only when nothing else is left.

The exact check is a bipartite max-flow; past `MAX_EDGES` possible pairs (very large courses
early in the review window, when there is slack everywhere) the ordering rule alone decides.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_EDGES",
    "Candidate",
    "Choice",
    "choose",
    "max_assignment",
    "short_of_reviews",
]

MAX_EDGES = 250_000


@dataclass(frozen=True, slots=True)
class Candidate:
    """A current submission as allocation sees it; `leased` counts unexpired leases only."""

    submission_id: int
    author_id: int
    completed: int = 0
    leased: int = 0
    is_late: bool = False
    staff_graded: bool = False

    @property
    def load(self) -> int:
        return self.completed + self.leased


@dataclass(frozen=True, slots=True)
class Choice:
    submission_id: int
    spot_check: bool


def _key(candidate: Candidate, wanted: int) -> tuple[bool, bool, int, int]:
    return (candidate.load >= wanted, candidate.is_late, candidate.load, candidate.submission_id)


def max_assignment(
    owed: Mapping[int, int],
    need: Mapping[int, int],
    allowed: Mapping[int, Collection[int]],
) -> dict[int, set[int]]:
    """A maximum assignment of reviewers to submissions (augmenting paths, unit edges).

    `owed`: reviewer -> reviews still owed; `need`: submission -> reviews still missing;
    `allowed`: reviewer -> submissions they may review. Returns reviewer -> submissions.
    """
    given: dict[int, set[int]] = {r: set() for r in owed}
    takers: dict[int, set[int]] = {s: set() for s in need}
    for reviewer in sorted(owed):
        for _ in range(owed[reviewer]):
            if not _augment(reviewer, need, allowed, given, takers):
                break
    return given


def _augment(
    start: int,
    need: Mapping[int, int],
    allowed: Mapping[int, Collection[int]],
    given: dict[int, set[int]],
    takers: dict[int, set[int]],
) -> bool:
    """Find one more unit for `start` along an alternating path (BFS), and apply it."""
    came_from: dict[int, tuple[int, int | None]] = {}  # submission -> (reviewer, prev submission)
    reviewer_via: dict[int, int | None] = {start: None}
    queue: deque[int] = deque([start])
    while queue:
        reviewer = queue.popleft()
        for submission in allowed.get(reviewer, ()):
            if submission in came_from or submission not in need:
                continue
            if submission in given[reviewer]:
                continue
            came_from[submission] = (reviewer, reviewer_via[reviewer])
            if len(takers[submission]) < need[submission]:
                _apply(submission, came_from, given, takers)
                return True
            for other in takers[submission]:
                if other not in reviewer_via:
                    reviewer_via[other] = submission
                    queue.append(other)
    return False


def _apply(
    end: int,
    came_from: Mapping[int, tuple[int, int | None]],
    given: dict[int, set[int]],
    takers: dict[int, set[int]],
) -> None:
    submission: int | None = end
    while submission is not None:
        reviewer, previous = came_from[submission]
        given[reviewer].add(submission)
        takers[submission].add(reviewer)
        if previous is not None:
            # `reviewer` hands `previous` over to whoever reached it, and takes `submission`.
            given[reviewer].discard(previous)
            takers[previous].discard(reviewer)
        submission = previous


def choose(
    candidates: Sequence[Candidate],
    *,
    reviewer_id: int,
    wanted: int,
    taken: Mapping[int, Collection[int]],
    owed: Mapping[int, int] | None = None,
    spot_check_rate: float = 0.0,
    rng: random.Random | None = None,
) -> Choice | None:
    """The submission to hand to `reviewer_id`, or None when none may go to them.

    `taken`: reviewer -> submissions they reviewed or hold a live lease on; `owed`: reviewer
    -> reviews they still owe, not counting live leases (reviewers missing from it owe none).
    """
    mine = taken.get(reviewer_id, ())
    eligible = [c for c in candidates if c.author_id != reviewer_id and c.submission_id not in mine]
    if not eligible:
        return None
    owed = owed or {}
    peers = [c for c in eligible if not c.staff_graded]
    known = [c for c in eligible if c.staff_graded]
    if not peers:
        return Choice(min(known, key=lambda c: (c.load, c.submission_id)).submission_id, True)
    short = [c for c in candidates if not c.staff_graded and c.load < wanted]
    plan = _plan(short, reviewer_id, wanted, taken, owed)
    wants_spot_check = bool(known) and (rng or random.Random()).random() < spot_check_rate
    if wants_spot_check and (plan is None or plan.spare):
        return Choice(min(known, key=lambda c: (c.load, c.submission_id)).submission_id, True)
    pool = peers
    if plan is not None and plan.mine:
        pool = [c for c in peers if c.submission_id in plan.mine]
    return Choice(min(pool, key=lambda c: _key(c, wanted)).submission_id, False)


@dataclass(frozen=True, slots=True)
class _Plan:
    mine: set[int]  # what a maximum assignment gives the reviewer
    spare: bool  # the reviewer can skip one review without any submission losing out


def _plan(
    short: Sequence[Candidate],
    reviewer_id: int,
    wanted: int,
    taken: Mapping[int, Collection[int]],
    owed: Mapping[int, int],
) -> _Plan | None:
    owing = {r: n for r, n in owed.items() if n > 0}
    if reviewer_id not in owing or not short:
        return _Plan(set(), spare=True)
    if len(owing) * len(short) > MAX_EDGES:
        return None
    need = {c.submission_id: wanted - c.load for c in short}
    author = {c.submission_id: c.author_id for c in short}
    # Each reviewer's list starts at a different place, so the first pass of the assignment
    # spreads reviewers round-robin and rarely needs to search.
    order = sorted(need)
    allowed: dict[int, list[int]] = {}
    for i, r in enumerate(sorted(owing)):
        start = i * len(order) // len(owing)
        rotated = order[start:] + order[:start]
        allowed[r] = [s for s in rotated if author[s] != r and s not in taken.get(r, ())]
    full = max_assignment(owing, need, allowed)
    value = sum(len(v) for v in full.values())
    mine = full[reviewer_id]
    if len(mine) < owing[reviewer_id]:
        return _Plan(mine, spare=True)
    fewer = dict(owing)
    fewer[reviewer_id] -= 1
    spare = sum(len(v) for v in max_assignment(fewer, need, allowed).values()) == value
    return _Plan(mine, spare=spare)


def short_of_reviews(candidates: Iterable[Candidate], wanted: int) -> list[int]:
    """Submissions with fewer completed reviews than wanted and no staff grade, oldest first."""
    return sorted(
        c.submission_id for c in candidates if c.completed < wanted and not c.staff_graded
    )
