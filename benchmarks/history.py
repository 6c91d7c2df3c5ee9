"""The course's moderation history: real log entries, their notices and sanctions.

Acts are drawn as short stories on the course's posts (hide, hide then unhide, remove,
remove then restore, hide then remove, a staff edit), threads (lock, unlock, pin, unpin) and
members (warnings, silences and suspensions, some lifted early, automatic silences), after
the mentors' role changes. The posts and threads end in the state the acts left them in.
The entries are then numbered in time order and serialized, hashed, added to the Merkle
tree and signed exactly as moderation.log.append does, with its own functions.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from benchmarks.course import PostRow, ThreadRow
    from moderation.models import LogEntry

APPEAL_DAYS = 14
EXCERPT_CHARS = 300
REASONS = (
    "Personal remarks about another learner instead of the question.",
    "Posted the full solution to a graded problem set.",
    "Advertising a paid tutoring service.",
    "Off topic for this forum; please use the general forum.",
    "Shared another student's email address.",
    "Repeated the same message in several threads.",
    "Insulting language towards the teaching assistants.",
    "Copied text from another learner's submission.",
    "Links to a site distributing exam answers.",
    "Rude reply to a classmate asking for help.",
)
LIFT_REASONS = (
    "Apologised and the issue is settled.",
    "Reviewed on appeal: the silence was too long.",
    "Ended early after a conversation with the instructor.",
)


@dataclass(slots=True)
class Table:
    """Rows for one database table, in the order of `columns`."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(slots=True)
class Entry:
    """A log entry before it has a sequence number; `reverses` points at another Entry."""

    created_at: datetime
    actor_id: int | None
    actor_role: str
    act: str
    target_type: str
    target_id: int
    rule_code: str
    reason: str
    old_value: str = ""
    new_value: str = ""
    duration_seconds: int | None = None
    reverses: Entry | None = None
    source: str = "manual"
    seq: int = -1
    # The notice the act leaves for the person affected; written once the seq is known.
    notice: dict[str, Any] | None = None


class ModerationHistory:
    """Mixed into the course builder; uses its people, threads, posts and random source."""

    rng: random.Random
    now: datetime
    start: datetime
    end: datetime
    instructor: int
    mentor_ids: list[int]
    course_title: str
    pool: list[tuple[str, str]]
    threads: list[ThreadRow]
    posts: list[PostRow]
    tables: dict[str, Table]
    rule_text: dict[str, str]
    sizes: Any

    entries: list[Entry]
    sanctions: list[dict[str, Any]]
    excerpts: dict[int, str]
    staff_revisions: list[tuple[PostRow, Entry, int]]

    def learner(self) -> int:
        """A learner's id, the busy ones more often (the course builder provides it)."""
        raise NotImplementedError

    def _actor(self) -> tuple[int, str]:
        if self.rng.random() < 0.1:
            return self.instructor, "instructor"
        return self.rng.choice(self.mentor_ids), "mentor"

    def _after(self, moment: datetime, low_hours: float, high_hours: float) -> datetime:
        when = moment + timedelta(hours=self.rng.uniform(low_hours, high_hours))
        latest = self.now - timedelta(hours=2)
        if when >= latest:
            when = latest - timedelta(seconds=self.rng.uniform(1, 3600))
        return max(when, moment + timedelta(seconds=1))

    def _entry(
        self, when: datetime, act: str, target_type: str, target_id: int, **kw: Any
    ) -> Entry:
        actor_id, actor_role = kw.pop("actor") if "actor" in kw else self._actor()
        rule = kw.pop("rule") if "rule" in kw else f"R{self.rng.randint(1, 5)}"
        entry = Entry(
            created_at=when,
            actor_id=actor_id,
            actor_role=actor_role,
            act=act,
            target_type=target_type,
            target_id=target_id,
            rule_code=rule,
            reason=kw.pop("reason", None) or self.rng.choice(REASONS),
            **kw,
        )
        self.entries.append(entry)
        return entry

    def _notice(
        self, entry: Entry, user: int, summary: str, *, excerpt: str = "", appealable: bool,
        ends_at: datetime | None = None,
    ) -> None:  # fmt: skip
        entry.notice = {
            "user_id": user,
            "summary": summary,
            "content_excerpt": excerpt,
            "appeal_until": entry.created_at + timedelta(days=APPEAL_DAYS) if appealable else None,
            "ends_at": ends_at,
        }

    def _excerpt(self, body: int) -> str:
        if body not in self.excerpts:
            from forum.markup import plain_text

            self.excerpts[body] = plain_text(
                self.pool[body][1], is_html=True, max_chars=EXCERPT_CHARS
            )
        return self.excerpts[body]

    def _post_story(self, post: PostRow, budget: int) -> int:
        thread = self.threads[post.thread]
        kind = self.rng.choices(
            ("hide", "hide_unhide", "remove", "remove_restore", "hide_remove", "edit"),
            weights=(35, 25, 10, 10, 5, 15),
        )[0]
        if budget < 2:
            kind = self.rng.choice(("hide", "remove", "edit"))
        where = f"Your post in “{thread.title}” ({self.course_title})"
        excerpt = self._excerpt(post.body)
        first = self._after(post.created_at, 0.2, 72)
        if kind == "edit":
            entry = self._entry(
                first, "edit_post", "post", post.id, old_value="revision 0",
                new_value="revision 1",
            )  # fmt: skip
            self._notice(
                entry, post.author or 0,
                f"A moderator edited your post in “{thread.title}”; the history keeps your text.",
                excerpt=excerpt, appealable=True,
            )  # fmt: skip
            self.staff_revisions.append((post, entry, self.rng.randrange(len(self.pool))))
            return 1
        state = "hidden" if kind.startswith("hide") else "removed"
        act = "hide_post" if state == "hidden" else "remove_post"
        entry = self._entry(first, act, "post", post.id, old_value="visible", new_value=state)
        words = "was hidden from other learners" if state == "hidden" else "was removed"
        self._notice(entry, post.author or 0, f"{where} {words}.", excerpt=excerpt, appealable=True)
        post.state, post.state_entry = state, entry
        if kind in ("hide", "remove"):
            return 1
        second = self._after(first, 1, 120)
        if kind == "hide_remove":
            follow = self._entry(
                second, "remove_post", "post", post.id, old_value="hidden", new_value="removed",
                actor=(entry.actor_id, entry.actor_role),
            )  # fmt: skip
            self._notice(follow, post.author or 0, f"{where} was removed.", excerpt=excerpt,
                         appealable=True)  # fmt: skip
            post.state, post.state_entry = "removed", follow
            return 2
        act = "unhide_post" if kind == "hide_unhide" else "restore_post"
        words = "is visible again" if act == "unhide_post" else "was restored"
        follow = self._entry(
            second, act, "post", post.id, old_value=state, new_value="visible", reverses=entry,
            reason="Reviewed again: the post is within the rules after all.",
        )  # fmt: skip
        self._notice(follow, post.author or 0, f"{where} {words}.", excerpt=excerpt,
                     appealable=False)  # fmt: skip
        post.state, post.state_entry = "visible", None
        return 2

    def _thread_story(self, thread: ThreadRow, budget: int, pins: dict[int, int]) -> int:
        kind = self.rng.choices(("lock", "lock_unlock", "pin", "pin_unpin"), (45, 35, 10, 10))[0]
        if kind.startswith("pin") and pins.get(thread.forum, 0) >= 2:
            kind = "lock"
        if budget < 2:
            kind = kind.split("_")[0]
        first = self._after(thread.created_at, 1, 96)
        what = "lock" if kind.startswith("lock") else "pin"
        old, new = ("open", "locked") if what == "lock" else ("unpinned", "pinned")
        entry = self._entry(first, f"{what}_thread", "thread", thread.id, old_value=old,
                            new_value=new)  # fmt: skip
        if thread.author != entry.actor_id:
            self._notice(
                entry, thread.author,
                f"Your thread “{thread.title}”: {what} thread ({old} → {new}).",
                appealable=what == "lock",
            )  # fmt: skip
        if what == "lock":
            thread.locked = True
        else:
            thread.pinned = True
            pins[thread.forum] = pins.get(thread.forum, 0) + 1
        if "_" not in kind:
            return 1
        second = self._after(first, 2, 240)
        undo = "unlock" if what == "lock" else "unpin"
        follow = self._entry(
            second, f"{undo}_thread", "thread", thread.id, old_value=new, new_value=old,
        )  # fmt: skip
        if thread.author != follow.actor_id:
            self._notice(
                follow, thread.author,
                f"Your thread “{thread.title}”: {undo} thread ({new} → {old}).", appealable=False,
            )  # fmt: skip
        if what == "lock":
            thread.locked = False
        else:
            thread.pinned = False
            pins[thread.forum] -= 1
        return 2

    def _user_story(self, user: int, budget: int) -> int:
        rng = self.rng
        kind = rng.choices(
            ("warn", "silence", "silence_lift", "suspend_lift", "automatic"), (50, 20, 15, 7, 8)
        )[0]
        if budget < 2 and kind.endswith("lift"):
            kind = "warn"
        span = (self.end - self.start).total_seconds()
        first = self.start + timedelta(seconds=rng.uniform(0, span - 8 * 86400))
        if kind == "warn":
            entry = self._entry(first, "warn_user", "user", user)
            self._sanction(entry, user, "warning", None)
            self._notice(entry, user, f"You received a warning in {self.course_title}.",
                         appealable=True)  # fmt: skip
            return 1
        if kind == "automatic":
            seconds = 600
            entry = self._entry(
                first, "silence_user", "user", user, actor=(None, "system"), rule="R3",
                reason="Automatic: more than 10 posts within one minute.",
                duration_seconds=seconds, source="automatic",
            )  # fmt: skip
        else:
            seconds = round(rng.uniform(0.5, 7) * 86400)
            act = "suspend_user" if kind.startswith("suspend") else "silence_user"
            entry = self._entry(first, act, "user", user, duration_seconds=seconds)
        sanction_kind = "suspension" if entry.act == "suspend_user" else "silence"
        ends = first + timedelta(seconds=seconds)
        sanction = self._sanction(entry, user, sanction_kind, ends)
        what = (
            "You are suspended from the course" if sanction_kind == "suspension"
            else "You are silenced (you can read but not post)"
        )  # fmt: skip
        self._notice(
            entry, user, f"{what} in {self.course_title} until {ends:%Y-%m-%d %H:%M} UTC.",
            appealable=True, ends_at=ends,
        )  # fmt: skip
        if not kind.endswith("lift"):
            return 1
        second = first + (ends - first) * rng.uniform(0.1, 0.9)
        follow = self._entry(
            second, "lift_sanction", "user", user, old_value=sanction_kind, new_value="lifted",
            reverses=entry, reason=rng.choice(LIFT_REASONS),
            actor=(entry.actor_id, entry.actor_role),
        )  # fmt: skip
        sanction["lifted_at"] = second
        self._notice(follow, user, f"Your {sanction_kind} in {self.course_title} was lifted.",
                     appealable=False)  # fmt: skip
        return 2

    def _sanction(
        self, entry: Entry, user: int, kind: str, ends: datetime | None
    ) -> dict[str, Any]:
        sanction = {"user_id": user, "kind": kind, "starts_at": entry.created_at,
                    "ends_at": ends, "lifted_at": None, "entry": entry}  # fmt: skip
        self.sanctions.append(sanction)
        return sanction

    def moderation(self) -> None:
        """Acts on the course's posts, threads and members until the log has its size."""
        rng = self.rng
        for n, mentor in enumerate(self.mentor_ids):
            self._entry(
                self.start - timedelta(days=9, minutes=-n), "change_role", "user", mentor,
                actor=(self.instructor, "instructor"), rule="",
                reason="Role assigned by the course's instructors.", old_value="none",
                new_value="mentor",
            )  # fmt: skip
        staff = {self.instructor, *self.mentor_ids}
        candidates = [
            p for p in self.posts
            if p.deleted_at is None and p.author is not None and p.author not in staff
        ]  # fmt: skip
        rng.shuffle(candidates)
        posts = iter(candidates)
        # One story per thread, so its locks and pins alternate as the real acts require.
        # The first thread (the one the web benchmark reads) is left alone.
        shuffled = self.threads[1:]
        rng.shuffle(shuffled)
        threads = iter(shuffled)
        pins: dict[int, int] = {}
        budget = self.sizes.log_entries - len(self.entries)
        while budget > 0:
            roll = rng.random()
            if roll < 0.5:
                post = next(posts, None)
                if post is None:
                    roll = 1.0
                else:
                    budget -= self._post_story(post, budget)
                    continue
            thread = next(threads, None) if roll < 0.6 else None
            if thread is not None:
                budget -= self._thread_story(thread, budget, pins)
            else:
                budget -= self._user_story(self.learner(), budget)

    def log_tables(self, signer: Any) -> None:
        """Sequence numbers, canonical entries, leaves, signed heads: as log.append makes them."""
        from moderation import log, merkle

        self.entries.sort(key=lambda e: e.created_at)
        for seq, entry in enumerate(self.entries):
            entry.seq = seq
        entries = Table(
            "agora_log_entry",
            ("id", "seq", "created_at", "course_id", "actor_id", "actor_role", "act",
             "target_type", "target_id", "rule_code", "reason", "duration_seconds", "old_value",
             "new_value", "reverses_seq", "source", "canonical", "leaf_hash"),
        )  # fmt: skip
        heads = Table(
            "agora_tree_head", ("id", "size", "root_hex", "signed_at", "signature_hex", "key_id")
        )
        compact = merkle.CompactRange()
        key_id = signer.key_id
        for entry in self.entries:
            # canonical_entry reads the columns as attributes; a plain namespace is 10x
            # cheaper to build than an unsaved model instance and gives the same string.
            row = SimpleNamespace(
                seq=entry.seq,
                created_at=entry.created_at,
                course_id=1,
                actor_id=entry.actor_id,
                actor_role=entry.actor_role,
                act=entry.act,
                target_type=entry.target_type,
                target_id=entry.target_id,
                rule_code=entry.rule_code,
                reason=entry.reason,
                duration_seconds=entry.duration_seconds,
                old_value=entry.old_value,
                new_value=entry.new_value,
                reverses_seq=entry.reverses.seq if entry.reverses is not None else None,
                source=entry.source,
            )
            canonical = log.canonical_entry(cast("LogEntry", row))
            leaf = log.entry_leaf_hash(canonical)
            entries.rows.append(
                (entry.seq + 1, entry.seq, entry.created_at, 1, entry.actor_id, entry.actor_role,
                 entry.act, entry.target_type, entry.target_id, entry.rule_code, entry.reason,
                 entry.duration_seconds, entry.old_value, entry.new_value, row.reverses_seq,
                 entry.source, canonical, leaf.hex())
            )  # fmt: skip
            compact.append(leaf)
            root = compact.root()
            signed = entry.created_at + timedelta(microseconds=300)
            message = log.head_message(compact.size, root, log.timestamp(signed))
            heads.rows.append(
                (compact.size, compact.size, root.hex(), signed, signer.sign(message).hex(), key_id)
            )
        state = Table("agora_log_state", ("id", "size", "range_hex"))
        state.rows.append((1, compact.size, json.dumps(compact.to_hex())))
        notices = Table(
            "agora_notice",
            ("id", "user_id", "course_id", "entry_seq", "act", "summary", "content_excerpt",
             "rule_code", "rule_text", "reason", "automatic", "ends_at", "appeal_until",
             "created_at"),
        )  # fmt: skip
        for entry in self.entries:
            if entry.notice is None or not entry.notice["user_id"]:
                continue
            n = entry.notice
            notices.rows.append(
                (len(notices.rows) + 1, n["user_id"], 1, entry.seq, entry.act, n["summary"],
                 n["content_excerpt"], entry.rule_code, self.rule_text.get(entry.rule_code, ""),
                 entry.reason, entry.source == "automatic", n["ends_at"], n["appeal_until"],
                 entry.created_at)
            )  # fmt: skip
        sanctions = Table(
            "agora_sanction",
            ("id", "course_id", "user_id", "kind", "starts_at", "ends_at", "lifted_at",
             "entry_seq"),
        )  # fmt: skip
        for number, s in enumerate(self.sanctions, start=1):
            sanctions.rows.append(
                (number, 1, s["user_id"], s["kind"], s["starts_at"], s["ends_at"], s["lifted_at"],
                 s["entry"].seq)
            )  # fmt: skip
        self.tables.update(
            log_entries=entries, heads=heads, log_state=state, notices=notices,
            sanctions=sanctions,
        )  # fmt: skip
