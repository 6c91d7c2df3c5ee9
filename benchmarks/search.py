"""Time the embedded search index on generated course-forum posts against a naive scan.

Builds an on-disk index of N posts (200k by default), then times plain, typo, prefix and
filtered queries through the SearchBackend interface, and the same queries answered by a plain
Python substring scan over the same posts. Prints figures and ratios measured in this run; it
never passes or fails.
Run: python benchmarks/search.py [--posts N] [--queries K] [--scan-posts M] [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

# Run as a script, this file's folder leads sys.path and its name would hide the search package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

from benchmarks.common import Figure, report  # noqa: E402
from search.backends import PostDocument, SearchQuery  # noqa: E402
from search.embedded import EmbeddedBackend  # noqa: E402

P95_TARGET_MS = 20.0

SUBJECTS: dict[str, list[str]] = {
    "calculus": [
        "derivative",
        "integral",
        "limit",
        "continuity",
        "convergence",
        "series",
        "taylor",
        "chain rule",
        "substitution",
        "riemann sum",
        "antiderivative",
        "asymptote",
        "epsilon",
    ],
    "linear algebra": [
        "matrix",
        "eigenvalue",
        "eigenvector",
        "determinant",
        "subspace",
        "basis",
        "rank",
        "orthogonal",
        "projection",
        "diagonalization",
        "kernel",
        "span",
        "transpose",
    ],
    "programming": [
        "recursion",
        "pointer",
        "compiler",
        "exception",
        "iterator",
        "closure",
        "segfault",
        "linked list",
        "hash table",
        "unit test",
        "refactoring",
        "debugger",
        "stack trace",
    ],
    "algorithms": [
        "complexity",
        "dijkstra",
        "heap",
        "quicksort",
        "memoization",
        "greedy",
        "invariant",
        "dynamic programming",
        "spanning tree",
        "amortized",
        "binary search",
        "hashing",
    ],
    "statistics": [
        "variance",
        "regression",
        "hypothesis",
        "confidence interval",
        "likelihood",
        "bayes",
        "posterior",
        "p-value",
        "distribution",
        "sampling",
        "correlation",
        "bootstrap",
    ],
    "biology": [
        "photosynthesis",
        "mitochondria",
        "enzyme",
        "transcription",
        "ribosome",
        "mutation",
        "membrane",
        "osmosis",
        "chromosome",
        "protein folding",
        "metabolism",
        "phenotype",
    ],
    "chemistry": [
        "molarity",
        "titration",
        "equilibrium",
        "enthalpy",
        "oxidation",
        "catalyst",
        "isotope",
        "stoichiometry",
        "covalent bond",
        "electronegativity",
        "buffer",
        "reaction rate",
    ],
    "economics": [
        "elasticity",
        "equilibrium price",
        "marginal cost",
        "externality",
        "monopoly",
        "inflation",
        "opportunity cost",
        "supply curve",
        "game theory",
        "utility",
        "tariff",
        "recession",
    ],
    "history": [
        "revolution",
        "treaty",
        "empire",
        "primary source",
        "historiography",
        "industrialization",
        "colonialism",
        "reformation",
        "propaganda",
        "archive",
        "chronology",
        "renaissance",
    ],
    "physics": [
        "momentum",
        "acceleration",
        "friction",
        "entropy",
        "wavelength",
        "torque",
        "inertia",
        "thermodynamics",
        "circuit",
        "magnetic field",
        "oscillation",
        "quantum",
        "relativity",
    ],
}

COURSE_WORDS = (
    "lecture assignment homework deadline exam midterm final quiz grade rubric feedback "
    "submission extension office hours tutorial slides notes reading textbook chapter section "
    "problem set question answer solution example proof definition theorem lemma exercise lab "
    "report project group partner peer review calibration score points week module syllabus "
    "instructor teaching assistant forum thread post recording video discussion seminar"
).split()
COMMON = (
    "the a an and or but if because so that this these those it is are was were be been have "
    "has had do does did not no yes can could should would will may might must about with for "
    "from into on in at by of to as than then also just still very really quite maybe again "
    "anyone someone everyone somebody thanks thank you please help confused stuck understand "
    "explain think know see get got make makes use using used try tried trying work works "
    "working wrong right correct same different step steps part case cases way idea point "
    "here there where when why how what which who first second next last other another each"
).split()
OPENERS = [
    "I'm stuck on {t} in problem set {n}.",
    "Can someone explain how {t} relates to {u}?",
    "In lecture {n} the slides say {t} works differently from {u}, why?",
    "Is my approach to {t} correct for question {n}?",
    "Thanks, that explanation of {t} really helped.",
    "I think the rubric for the {t} assignment is unclear.",
    "Does the exam cover {t} and {u} or just {t}?",
    "Here is how I understood {t}: it is basically {u} applied step by step.",
]
SYLLABLES = (
    "ka lo mi ne ru sa ti vo zu be ci da fe go hu ja ke li mo nu pa qui ro se tu va we xi yo "
    "ar en is on ul ter son ber dor gan lim mor pel quin ras sto tav ver wil"
).split()
FIRST = "ada bob cai dee eli fay gus hal ivy jon kim lee max nia oli pia quy ray sam tia".split()


def rare_words(rng: random.Random, n: int) -> list[str]:
    """Pseudo-words that give the index a long tail of rare terms, as real forums have."""
    seen: set[str] = set()
    while len(seen) < n:
        seen.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(seen)


@dataclass
class Corpus:
    """Generated posts plus the topic terms queries are drawn from."""

    posts: list[PostDocument]
    terms: list[str]
    courses: int


def generate(n: int, seed: int) -> Corpus:
    """Build n posts in threads of a few posts each, spread over courses and forums."""
    rng = random.Random(seed)
    subjects = list(SUBJECTS)
    courses = max(1, min(60, n // 500))
    course_subject = {c: subjects[c % len(subjects)] for c in range(1, courses + 1)}
    tail = rare_words(rng, 20_000)
    tail_cum = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(tail))))
    handles = [f"{rng.choice(FIRST)}_{rng.choice(SYLLABLES)}{i}" for i in range(3_000)]
    start = datetime(2024, 9, 1, tzinfo=UTC)
    posts: list[PostDocument] = []
    thread_id = 0
    while len(posts) < n:
        thread_id += 1
        course = rng.randint(1, courses)
        topic_terms = SUBJECTS[course_subject[course]]
        kind: Literal["discussion", "question"] = "question" if rng.random() < 0.4 else "discussion"
        answered = kind == "question" and rng.random() < 0.6
        t, u = rng.sample(topic_terms, 2)
        title = rng.choice(
            [
                f"Question about {t}",
                f"{t.capitalize()} vs {u}",
                f"Week {rng.randint(1, 14)}: {t}",
                f"Help with {t} in {rng.choice(COURSE_WORDS)} {rng.randint(1, 9)}",
            ]
        )
        forum = course * 10 + rng.randint(0, 4)
        when = start + timedelta(minutes=rng.randint(0, 60 * 24 * 240))
        for _ in range(rng.randint(1, 12)):
            if len(posts) >= n:
                break
            words: list[str] = []
            for _ in range(rng.randint(1, 4)):
                a, b = rng.sample(topic_terms, 2)
                words.append(rng.choice(OPENERS).format(t=a, u=b, n=rng.randint(1, 12)))
                filler = rng.choices(COMMON, k=rng.randint(5, 25))
                filler += rng.choices(COURSE_WORDS, k=rng.randint(1, 6))
                filler += rng.choices(tail, cum_weights=tail_cum, k=rng.randint(0, 4))
                rng.shuffle(filler)
                words.append(" ".join(filler) + ".")
            when += timedelta(minutes=rng.randint(1, 600))
            pid = len(posts) + 1
            posts.append(
                PostDocument(
                    id=f"post:{pid}",
                    post_id=pid,
                    course_id=course,
                    forum_id=forum,
                    thread_id=thread_id,
                    thread_kind=kind,
                    thread_title=title,
                    body=" ".join(words),
                    author_handle=None if rng.random() < 0.1 else rng.choice(handles),
                    is_answered=answered,
                    created_at=when,
                    url=f"/t/{thread_id}#p{pid}",
                )
            )
    terms = sorted({w for ts in SUBJECTS.values() for t in ts for w in t.split() if len(w) >= 6})
    return Corpus(posts, terms, courses)


def misspell(rng: random.Random, word: str) -> str:
    """One edit: drop, double, swap or replace a letter away from the first one."""
    i = rng.randint(1, len(word) - 2)
    edit = rng.choice(["drop", "double", "swap", "replace"])
    if edit == "drop":
        return word[:i] + word[i + 1 :]
    if edit == "double":
        return word[:i] + word[i] + word[i:]
    if edit == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + rng.choice("aeioustnr") + word[i + 1 :]


def make_queries(corpus: Corpus, per_kind: int, seed: int) -> dict[str, list[SearchQuery]]:
    """Queries by kind, each restricted to a random five-course membership."""
    rng = random.Random(seed + 1)
    first = corpus.posts[0].created_at
    last = corpus.posts[-1].created_at

    def member() -> list[int]:
        return rng.sample(range(1, corpus.courses + 1), min(5, corpus.courses))

    out: dict[str, list[SearchQuery]] = {"plain": [], "typo": [], "prefix": [], "filtered": []}
    for _ in range(per_kind):
        a, b = rng.sample(corpus.terms, 2)
        text = a if rng.random() < 0.5 else f"{a} {rng.choice(COURSE_WORDS)}"
        out["plain"].append(SearchQuery(text=text, course_ids=member()))
        out["typo"].append(SearchQuery(text=misspell(rng, b), course_ids=member()))
        out["prefix"].append(SearchQuery(text=a[: rng.randint(3, 5)], course_ids=member()))
        courses = member()
        span = (last - first).total_seconds()
        after = first + timedelta(seconds=rng.uniform(0, span / 2))
        out["filtered"].append(
            SearchQuery(
                text=rng.choice(["", a, f"{a} {rng.choice(COURSE_WORDS)}"]),
                course_ids=courses,
                forum_id=rng.choice([None, courses[0] * 10 + rng.randint(0, 4)]),
                thread_kind=rng.choice([None, "question"]),
                unanswered_only=rng.random() < 0.3,
                created_after=after,
                created_before=after + timedelta(days=rng.randint(7, 90)),
            )
        )
    return out


class Scan:
    """The baseline: lowercase substring matching over every post, newest matches first."""

    def __init__(self, posts: list[PostDocument]) -> None:
        self.rows = [(p, f"{p.thread_title} {p.body}".lower()) for p in posts]

    def search(self, q: SearchQuery) -> list[int]:
        words = q.text.lower().split()
        courses = set(q.course_ids)
        hits = []
        for post, text in self.rows:
            if post.course_id not in courses:
                continue
            if q.forum_id is not None and post.forum_id != q.forum_id:
                continue
            if q.thread_kind is not None and post.thread_kind != q.thread_kind:
                continue
            if q.unanswered_only and (post.thread_kind != "question" or post.is_answered):
                continue
            if q.created_after is not None and post.created_at < q.created_after:
                continue
            if q.created_before is not None and post.created_at >= q.created_before:
                continue
            if all(w in text for w in words):
                hits.append(post)
        hits.sort(key=lambda p: p.created_at, reverse=True)
        return [p.post_id for p in hits[(q.page - 1) * q.per_page : q.page * q.per_page]]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def time_sync(run: Callable[[SearchQuery], object], query: SearchQuery) -> float:
    start = time.perf_counter()
    run(query)
    return time.perf_counter() - start


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def run(args: argparse.Namespace) -> list[Figure]:
    """Generate, index, query, and print the figures."""
    t0 = time.perf_counter()
    corpus = generate(args.posts, args.seed)
    words = sum(len(p.body.split()) for p in corpus.posts)
    print(
        f"generated {len(corpus.posts)} posts ({words / len(corpus.posts):.0f} words each on "
        f"average) in {corpus.courses} courses in {time.perf_counter() - t0:.1f} s"
    )
    workdir = Path(tempfile.mkdtemp(prefix="search-bench-"))
    backend = EmbeddedBackend(workdir / "index")
    try:
        await backend.ensure_ready()
        start = time.perf_counter()
        for i in range(0, len(corpus.posts), args.batch):
            await backend.upsert(corpus.posts[i : i + args.batch])
        build = time.perf_counter() - start
        print(
            f"index build: {build:.1f} s ({len(corpus.posts) / build:,.0f} posts/s, batches of "
            f"{args.batch}), {dir_size(workdir) / 1e6:.0f} MB on disk, "
            f"{await backend.count()} documents"
        )

        small = [] if args.single_batch_posts <= 0 else corpus.posts[: args.single_batch_posts]
        if small:
            t = time.perf_counter()
            for post in small:
                await backend.upsert([post])
            each = (time.perf_counter() - t) / len(small)
            print(f"single-post upsert into the full index: {each * 1000:.1f} ms each (mean)")

        queries = make_queries(corpus, args.queries, args.seed)
        for qs in queries.values():  # warm caches and page in the index once
            for query in qs[:3]:
                await backend.search(query)

        scan = Scan(corpus.posts[: args.scan_posts] if args.scan_posts else corpus.posts)
        scanned = len(scan.rows)
        print(f"baseline: substring scan over {scanned} posts (exact substrings: no typos)")
        print()
        header = f"{'kind':<9}{'n':>4}  {'engine p50':>10} {'p95':>8}   {'scan p50':>9} {'p95':>8}"
        print(header + f"   {'scan/engine p50':>15}  {'engine hits (mean total)':>24}")
        all_engine: list[float] = []
        all_scan: list[float] = []
        for kind, qs in queries.items():
            engine_ms: list[float] = []
            totals: list[int] = []
            for query in qs:
                t = time.perf_counter()
                results = await backend.search(query)
                engine_ms.append((time.perf_counter() - t) * 1000)
                totals.append(results.total)
            scan_ms = [time_sync(scan.search, query) * 1000 for query in qs]
            # The scan covers `scanned` posts; scale it to the full corpus when run on a subset.
            scale = len(corpus.posts) / scanned
            scan_ms = [m * scale for m in scan_ms]
            all_engine += engine_ms
            all_scan += scan_ms
            e50, e95 = percentile(engine_ms, 50), percentile(engine_ms, 95)
            s50, s95 = percentile(scan_ms, 50), percentile(scan_ms, 95)
            print(
                f"{kind:<9}{len(qs):>4}  {e50:>8.2f}ms {e95:>6.2f}ms   {s50:>7.1f}ms {s95:>6.1f}ms"
                f"   {s50 / e50:>14.0f}x  {statistics.mean(totals):>24.0f}"
            )
        e50, e95 = percentile(all_engine, 50), percentile(all_engine, 95)
        s50, s95 = percentile(all_scan, 50), percentile(all_scan, 95)
        print(
            f"{'all':<9}{len(all_engine):>4}  {e50:>8.2f}ms {e95:>6.2f}ms   {s50:>7.1f}ms "
            f"{s95:>6.1f}ms   {s50 / e50:>14.0f}x"
        )
        print("(engine latency includes snippets and highlighting for a page of 20 hits)")
    finally:
        await backend.close()
        shutil.rmtree(workdir, ignore_errors=True)
    where = f"{len(corpus.posts):,} posts, embedded"
    return [
        Figure(f"search p50 ({where})", e50, "ms", "substring scan", s50, better="lower"),
        Figure(
            f"search p95 ({where})",
            e95,
            "ms",
            "substring scan",
            s95,
            better="lower",
            target=f"<= {P95_TARGET_MS:.0f} ms",
            target_limit=P95_TARGET_MS,
            note=f"index build {build:.1f} s; {len(all_engine)} queries of 4 kinds",
        ),
    ]


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=50, help="queries of each kind")
    parser.add_argument("--batch", type=int, default=10_000, help="posts per upsert while building")
    parser.add_argument(
        "--scan-posts", type=int, default=0, help="run the baseline on the first M posts only"
    )
    parser.add_argument(
        "--single-batch-posts", type=int, default=20, help="time this many one-post upserts"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.posts < 1:
        parser.error("--posts must be at least 1")
    report(asyncio.run(run(args)), args.results_json)


if __name__ == "__main__":
    main()
