"""The generated course in memory: people, forums, threads, posts, and what hangs off them.

Everything is built deterministically from a seed, relative to the moment of generation:
a semester that ended yesterday. benchmarks/history.py adds the moderation history and
benchmarks/generate.py writes the rows.
"""

from __future__ import annotations

import itertools
import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from benchmarks.history import Entry, ModerationHistory, Table
from benchmarks.search import (
    COMMON,
    COURSE_WORDS,
    FIRST,
    OPENERS,
    SUBJECTS,
    SYLLABLES,
    rare_words,
)

PASSWORD = "bench-password-4711"
COURSE_SLUG = "bench-course"
WRITERS = 32

FORUM_NAMES = (
    "General discussion",
    "Announcements and logistics",
    "Assignments",
    "Exams and quizzes",
    "Study groups",
    "Technical help",
    "Readings",
    "Projects",
)


@dataclass(frozen=True, slots=True)
class Sizes:
    learners: int
    mentors: int
    forums: int
    threads: int
    posts: int
    long_threads: int
    log_entries: int

    @classmethod
    def at(cls, scale: float, log_entries: int | None = None) -> Sizes:
        learners = max(60, round(5_000 * scale))
        threads = max(60, round(20_000 * scale))
        long_threads = max(2, threads // 100)
        posts = max(round(200_000 * scale), threads * 3 + long_threads * 50)
        return cls(
            learners=learners,
            mentors=max(3, learners // 250),
            forums=max(5, round(50 * scale)),
            threads=threads,
            posts=posts,
            long_threads=long_threads,
            log_entries=log_entries
            if log_entries is not None
            else max(300, round(100_000 * scale)),
        )


@dataclass(slots=True)
class PostRow:
    thread: int
    local: int
    parent_local: int | None
    author: int | None
    anonymous: bool
    body: int
    created_at: datetime
    id: int = 0
    deleted_at: datetime | None = None
    edited_at: datetime | None = None
    revisions: int = 0
    votes: int = 0
    state: str = "visible"
    state_entry: Entry | None = None


@dataclass(slots=True)
class ThreadRow:
    id: int
    forum: int
    kind: str
    title: str
    author: int
    anonymous: bool
    created_at: datetime
    posts: list[PostRow] = field(default_factory=list)
    accepted: PostRow | None = None
    locked: bool = False
    pinned: bool = False


def _words(rng: random.Random, topic: list[str], tail: list[str], n: int) -> str:
    words = rng.choices(COMMON, k=n) + rng.choices(COURSE_WORDS, k=max(1, n // 5))
    words += rng.sample(topic, 1) + rng.choices(tail, k=rng.randint(0, 2))
    rng.shuffle(words)
    return " ".join(words)


def body_pool(rng: random.Random, size: int) -> list[tuple[str, str]]:
    """Markdown bodies of forum-post length, and their HTML from the real renderer."""
    from forum.markup import render_markdown

    tail = rare_words(rng, 2_000)
    topics = list(SUBJECTS.values())
    pool = []
    for _ in range(size):
        topic = rng.choice(topics)
        parts = []
        for _ in range(rng.choice((1, 1, 2, 2, 2, 3, 4))):
            a, b = rng.sample(topic, 2)
            opener = rng.choice(OPENERS).format(t=a, u=b, n=rng.randint(1, 12))
            parts.append(f"{opener} {_words(rng, topic, tail, rng.randint(12, 40))}.")
        extra = rng.random()
        if extra < 0.15:
            parts.append("\n".join(f"- {_words(rng, topic, tail, 4)}" for _ in range(3)))
        elif extra < 0.25:
            parts.append(
                f"```\n{rng.choice(topic).replace(' ', '_')} = solve(x, {rng.randint(1, 9)})\n```"
            )
        elif extra < 0.35:
            parts.append(f"See **{rng.choice(topic)}** in the [notes](https://example.org/notes).")
        elif extra < 0.45:
            parts.append(f"Is `{rng.choice(topic)}` the same as *{rng.choice(topic)}*?")
        markdown = "\n\n".join(parts)
        pool.append((markdown, render_markdown(markdown)))
    return pool


def display_name(rng: random.Random) -> str:
    first = rng.choice(FIRST).capitalize()
    last = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
    return f"{first} {last}"


class CourseBuilder(ModerationHistory):
    """Builds every row in memory, deterministically for a seed, relative to `now`."""

    def __init__(self, sizes: Sizes, seed: int, password_hash: str, now: datetime) -> None:
        self.sizes = sizes
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.password_hash = password_hash
        self.now = now
        self.start = now - timedelta(days=110)
        self.end = now - timedelta(days=1)
        self.tables: dict[str, Table] = {}
        self.pool: list[tuple[str, str]] = []
        self.excerpts: dict[int, str] = {}
        self.threads: list[ThreadRow] = []
        self.posts: list[PostRow] = []
        self.entries: list[Entry] = []
        self.sanctions: list[dict[str, Any]] = []
        self.staff_revisions: list[tuple[PostRow, Entry, int]] = []
        self.course_title = "Foundations of Quantitative Reasoning"
        self.viewer = 0

    # --- people --------------------------------------------------------------------------

    def people(self) -> None:
        s = self.sizes
        users = Table(
            "agora_user",
            ("id", "username", "display_name", "email", "password_hash", "is_admin",
             "can_create_courses", "is_active", "created_at", "about", "links",
             "profile_public", "email_prefs", "last_digest_at", "deleted_at"),
        )  # fmt: skip
        self.instructor = 1
        self.mentor_ids = list(range(2, 2 + s.mentors))
        self.learner_ids = list(range(2 + s.mentors, 2 + s.mentors + s.learners))
        names = ["instructor"] + [f"mentor{i:03d}" for i in range(1, s.mentors + 1)]
        names += [f"learner{i:05d}" for i in range(1, s.learners + 1)]
        self.usernames = dict(zip(itertools.count(1), names, strict=False))
        joined = self.start - timedelta(days=10)
        for uid, username in self.usernames.items():
            created = joined + timedelta(seconds=self.rng.uniform(0, 9 * 86400))
            users.rows.append(
                (uid, username, display_name(self.rng), f"{username}@example.org",
                 self.password_hash, False, uid == 1, True, created, "", "[]", False, "{}",
                 None, None)
            )  # fmt: skip
        self.tables["users"] = users
        course = Table(
            "agora_course",
            ("id", "slug", "title", "description", "enrolment", "invite_code",
             "public_moderator_names", "allow_removal_on_deletion", "created_by_id",
             "created_at"),
        )  # fmt: skip
        course.rows.append(
            (1, COURSE_SLUG, self.course_title, "A large generated course for benchmarks.",
             "invite", "BENCH" + secrets.token_hex(3).upper(), False, True, 1, joined)
        )  # fmt: skip
        self.tables["course"] = course
        members = Table(
            "agora_membership",
            ("id", "user_id", "course_id", "role", "joined_at", "role_changed_at"),
        )
        for uid in self.usernames:
            role = "instructor" if uid == 1 else "mentor" if uid in self.mentor_ids else "learner"
            when = joined + timedelta(seconds=self.rng.uniform(9 * 86400, 12 * 86400))
            members.rows.append((uid, uid, 1, role, when, None))
        self.tables["members"] = members
        from moderation.models import DEFAULT_RULES

        self.rule_text = dict(DEFAULT_RULES)
        rules = Table("agora_rule", ("id", "course_id", "code", "text", "position", "retired"))
        for position, (code, text) in enumerate(DEFAULT_RULES):
            rules.rows.append((position + 1, 1, code, text, position, False))
        self.tables["rules"] = rules
        # A few very active learners and a long tail, as in real forums.
        weights = 1.0 / (np.arange(len(self.learner_ids)) + 20.0)
        self.learner_weights = (weights / weights.sum()).tolist()

    def learner(self) -> int:
        return self.rng.choices(self.learner_ids, cum_weights=self._cum)[0]

    # --- forums, threads, posts ----------------------------------------------------------

    def forums(self) -> None:
        s = self.sizes
        table = Table(
            "agora_forum",
            ("id", "course_id", "title", "description", "position", "allow_anonymous",
             "created_at"),
        )  # fmt: skip
        subjects = list(SUBJECTS)
        for i in range(s.forums):
            if i < len(FORUM_NAMES):
                title = FORUM_NAMES[i]
            else:
                week = i - len(FORUM_NAMES) + 1
                title = f"Week {week}: {subjects[week % len(subjects)]}"
            table.rows.append(
                (i + 1, 1, title, f"Questions and discussion: {title.lower()}.", i,
                 i % 7 != 1, self.start - timedelta(days=2))
            )  # fmt: skip
        self.tables["forums"] = table
        self.anonymous_forums = {row[0] for row in table.rows if row[5]}

    def threads_and_posts(self) -> None:
        s, rng = self.sizes, self.rng
        self._cum = list(itertools.accumulate(self.learner_weights))
        # Forum sizes fall off with rank; the first forums are the busy ones.
        forum_weights = 1.0 / np.sqrt(np.arange(s.forums) + 1.0)
        forum_of = self.np.choice(s.forums, size=s.threads, p=forum_weights / forum_weights.sum())
        regular = s.threads - s.long_threads
        extra = s.posts - s.threads - s.long_threads * 49
        weights = self.np.lognormal(0.0, 1.1, size=regular)
        replies = self.np.multinomial(extra, weights / weights.sum())
        sizes = [50] * s.long_threads + [1 + int(n) for n in replies]
        subjects = list(SUBJECTS.values())
        staff = [self.instructor, *self.mentor_ids]
        span = (self.end - timedelta(days=3) - self.start).total_seconds()
        self.viewer = self.learner_ids[6]
        for index, count in enumerate(sizes):
            forum = int(forum_of[index]) + 1
            topic = subjects[forum % len(subjects)]
            t, u = rng.sample(topic, 2)
            title = rng.choice(
                (
                    f"Question about {t}",
                    f"{t.capitalize()} vs {u}",
                    f"Week {rng.randint(1, 14)}: {t}",
                    f"Help with {t} in problem set {rng.randint(1, 9)}",
                    f"How does {t} relate to {u}?",
                )
            )
            created = self.start + timedelta(seconds=rng.uniform(0, span))
            anonymous_ok = forum in self.anonymous_forums
            author = self.learner() if rng.random() < 0.93 else rng.choice(staff)
            is_learner = author not in staff
            thread = ThreadRow(
                id=index + 1,
                forum=forum,
                kind="question" if rng.random() < 0.4 else "discussion",
                title=title,
                author=author,
                anonymous=anonymous_ok and is_learner and rng.random() < 0.1,
                created_at=created,
            )
            when = created
            answers: list[int] = []
            gap = rng.uniform(600, 6 * 3600)
            for local in range(count):
                if local:
                    step = timedelta(seconds=rng.expovariate(1 / gap) + 30)
                    when = max(min(when + step, self.end), when + timedelta(seconds=1))
                if local == 0:
                    parent, poster, anonymous = None, author, thread.anonymous
                else:
                    if count == 50:
                        # 29 answers, then 20 replies under them: all 50 on the first page.
                        parent = None if local <= 29 else answers[(local * 7) % len(answers)]
                    else:
                        parent = rng.choice(answers) if answers and rng.random() < 0.3 else None
                    poster = self.learner() if rng.random() < 0.9 else rng.choice(staff)
                    if index == 0 and local == 2:
                        poster = self.viewer
                    anonymous = (
                        anonymous_ok and poster not in staff and poster != self.viewer
                        and rng.random() < 0.08
                    )  # fmt: skip
                post = PostRow(
                    thread=index,
                    local=local,
                    parent_local=parent,
                    author=poster,
                    anonymous=anonymous,
                    body=rng.randrange(len(self.pool)),
                    created_at=when,
                )
                if local and parent is None:
                    answers.append(local)
                thread.posts.append(post)
            self.threads.append(thread)
        # Ids in the order the posts were written, as a live site hands them out.
        self.posts = sorted(
            (p for t in self.threads for p in t.posts), key=lambda p: (p.created_at, p.local)
        )
        for number, post in enumerate(self.posts, start=1):
            post.id = number
        for thread in self.threads:
            posts = thread.posts
            answers_rows = [p for p in posts[1:] if p.parent_local is None]
            if thread.kind == "question" and answers_rows and rng.random() < 0.5:
                thread.accepted = rng.choice(answers_rows)
            for post in posts[1:]:
                if rng.random() < 0.01 and post is not thread.accepted:
                    post.deleted_at = post.created_at + timedelta(hours=rng.uniform(0.1, 48))
                    post.deleted_at = min(post.deleted_at, self.end)

    def post_tables(self) -> None:
        """The forum tables, once the moderation history has set states and staff edits."""
        rng = self.rng
        threads = Table(
            "agora_thread",
            ("id", "forum_id", "course_id", "kind", "title", "author_id", "is_anonymous",
             "created_at", "last_activity_at", "reply_count", "is_locked", "is_pinned",
             "accepted_post_id"),
        )  # fmt: skip
        posts = Table(
            "agora_post",
            ("id", "thread_id", "parent_id", "is_opening", "author_id", "is_anonymous",
             "body_markdown", "body_html", "created_at", "edited_at", "revision_count",
             "deleted_at", "is_endorsed", "vote_count", "state", "state_seq"),
        )  # fmt: skip
        revisions = Table(
            "agora_revision",
            ("id", "post_id", "editor_id", "edited_at", "previous_markdown", "previous_title",
             "by_staff"),
        )  # fmt: skip
        votes = Table("agora_vote", ("id", "post_id", "user_id", "created_at"))
        subscriptions = Table("agora_subscription", ("id", "thread_id", "user_id", "created_at"))
        visits = Table("agora_thread_visit", ("id", "thread_id", "user_id", "last_seen_at"))
        for thread in self.threads:
            live = [p for p in thread.posts[1:] if p.deleted_at is None]
            threads.rows.append(
                (thread.id, thread.forum, 1, thread.kind, thread.title, thread.author,
                 thread.anonymous, thread.created_at, thread.posts[-1].created_at, len(live),
                 thread.locked, thread.pinned, thread.accepted.id if thread.accepted else None)
            )  # fmt: skip
            seen: dict[int, datetime] = {}
            for post in thread.posts:
                if post.author is not None:
                    seen[post.author] = post.created_at
            for user, when in seen.items():
                subscriptions.rows.append((len(subscriptions.rows) + 1, thread.id, user, when))
                visits.rows.append((len(visits.rows) + 1, thread.id, user, when))
        staff_edits = {id(p): (entry, old) for p, entry, old in self.staff_revisions}
        for post in self.posts:
            thread = self.threads[post.thread]
            markdown, html = self.pool[post.body]
            parent_id = (
                thread.posts[post.parent_local].id if post.parent_local is not None else None
            )
            if post.deleted_at is None and post.revisions == 0 and id(post) not in staff_edits:
                if rng.random() < 0.04:
                    post.revisions = rng.choice((1, 1, 1, 2, 3))
            when = post.created_at
            for _ in range(post.revisions):
                when = min(when + timedelta(minutes=rng.uniform(1, 600)), self.end)
                revisions.rows.append(
                    (len(revisions.rows) + 1, post.id, post.author, when,
                     self.pool[rng.randrange(len(self.pool))][0],
                     thread.title if post.local == 0 else None, False)
                )  # fmt: skip
                post.edited_at = when
            revision_count = post.revisions
            if id(post) in staff_edits:
                entry, old_body = staff_edits[id(post)]
                revisions.rows.append(
                    (len(revisions.rows) + 1, post.id, entry.actor_id, entry.created_at,
                     self.pool[old_body][0], thread.title if post.local == 0 else None, True)
                )  # fmt: skip
                post.edited_at = entry.created_at
                revision_count += 1
            if post.deleted_at is None:
                n = min(int(self.np.geometric(0.55)) - 1, 12)
                voters = set(rng.sample(self.learner_ids, n)) - {post.author}
                post.votes = len(voters)
                for voter in voters:
                    votes.rows.append(
                        (len(votes.rows) + 1, post.id, voter,
                         min(post.created_at + timedelta(hours=rng.uniform(0.1, 72)), self.end))
                    )  # fmt: skip
            deleted = post.deleted_at is not None
            posts.rows.append(
                (post.id, thread.id, parent_id, post.local == 0, post.author, post.anonymous,
                 "" if deleted else markdown, "" if deleted else html, post.created_at,
                 post.edited_at, 0 if deleted else revision_count, post.deleted_at,
                 rng.random() < 0.01 and not deleted, post.votes, post.state,
                 post.state_entry.seq if post.state_entry is not None else None)
            )  # fmt: skip
        self.tables.update(
            threads=threads, posts=posts, revisions=revisions, votes=votes,
            subscriptions=subscriptions, visits=visits,
        )  # fmt: skip

    # --- what the other scripts need -----------------------------------------------------

    def picks(self) -> dict[str, Any]:
        rng = random.Random(1)
        long_thread = self.threads[0]
        staff = {self.instructor, *self.mentor_ids}
        # Every generated sanction ended before now, so any learner may post today.
        writers = [u for u in self.learner_ids[10:] if u != self.viewer][:WRITERS]
        open_threads = [t.id for t in self.threads[self.sizes.long_threads :] if not t.locked]
        writer_threads = rng.sample(open_threads, min(200, len(open_threads)))
        own: dict[str, list[int]] = {self.usernames[w]: [] for w in writers}
        for post in self.posts:
            name = self.usernames.get(post.author or 0)
            if name in own and post.deleted_at is None and len(own[name]) < 20:
                own[name].append(post.id)
        assert all(a not in staff for a in writers)
        return {
            "viewer": self.usernames[self.viewer],
            "thread_id": long_thread.id,
            "thread_posts": len(long_thread.posts),
            "forum_id": long_thread.forum,
            "writers": [self.usernames[w] for w in writers],
            "writer_threads": writer_threads,
            "edit_posts": own,
        }

    def counts(self) -> dict[str, int]:
        counts = {name: len(t.rows) for name, t in self.tables.items()}
        counts["learners"] = len(self.learner_ids)
        counts["mentors"] = len(self.mentor_ids)
        counts["anonymous_posts"] = sum(1 for p in self.posts if p.anonymous)
        counts["hidden_posts"] = sum(1 for p in self.posts if p.state == "hidden")
        counts["removed_posts"] = sum(1 for p in self.posts if p.state == "removed")
        counts["threads_of_50_posts"] = sum(1 for t in self.threads if len(t.posts) == 50)
        return counts
