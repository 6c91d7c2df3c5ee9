"""The moderation log as data: filters, labels, and the public JSON API (/api/v1/log, ...).

Everything here is readable without an account. The proof endpoints serve the raw material
anyone needs to check the log from outside (moderation/verify.py does exactly that); the
course log serves the same labelled entries as the public page (moderation/public.py).

Labels: readers who are not members of a course see each moderator as a role and a stable
pseudonym ("Mentor 1", "Instructor 2", "System"), numbered per course and role in order of
first appearance in the log; members see display names. Targets are shown by type and id
only ("post #12"), so a log entry never names the author of an anonymous post.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from tortoise.functions import Min

from core.api import json_response
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Course, User
from forum.models import Post, Thread
from moderation import log, merkle
from moderation.models import Act, LogEntry, Rule, TargetType, TreeHead

PAGE_SIZE = 50
MAX_ENTRIES_PER_CALL = 1000
# Larger numbers cannot be a sequence number or a size, and PostgreSQL's bigint stops at 2**63.
MAX_NUMBER = 2**53
ROLE_ORDER = ("instructor", "mentor", "admin", "system")
WORD = re.compile(r"[a-z_]{1,16}")
RULE_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}")

Viewer = Literal["public", "member", "staff"]


# --- query parameters ------------------------------------------------------------------


class Params:
    """Reads query parameters, collecting one message per bad field (422, never a 500)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.errors: dict[str, str] = {}

    def raw(self, name: str) -> str:
        return (self.values.get(name) or "").strip()

    def integer(
        self,
        name: str,
        *,
        default: int | None = None,
        minimum: int = 0,
        maximum: int = MAX_NUMBER,
        required: bool = False,
    ) -> int | None:
        text = self.raw(name)
        if not text:
            if required:
                self.errors[name] = "This parameter is required."
            return default
        try:
            value = int(text, 10)
        except ValueError:
            self.errors[name] = "Give a whole number."
            return default
        if not minimum <= value <= maximum:
            self.errors[name] = f"Give a number from {minimum} to {maximum}."
            return default
        return value

    def choice(self, name: str, options: Iterable[str]) -> str | None:
        text = self.raw(name)
        if not text:
            return None
        allowed = list(options)
        if text not in allowed:
            self.errors[name] = "Choose one of: " + ", ".join(allowed) + "."
            return None
        return text

    def day(self, name: str) -> date | None:
        text = self.raw(name)
        if not text:
            return None
        try:
            day = date.fromisoformat(text)
            if len(text) != 10 or not 1900 <= day.year <= 9998:
                raise ValueError(text)
            return day
        except ValueError:
            self.errors[name] = "Give a date as YYYY-MM-DD."
            return None

    def check(self) -> None:
        if self.errors:
            raise InvalidInput("Some query parameters are invalid.", fields=self.errors)


# --- filters and labels ----------------------------------------------------------------


@dataclass(slots=True)
class Actor:
    """One moderator as seen in one log (a course's, or the site-wide one)."""

    key: str  # "mentor-1", "system": stable, used in URLs
    role: str
    actor_id: int | None
    pseudonym: str  # "Mentor 1", "System"
    first_seq: int
    name: str | None = None  # display name, for members
    named_publicly: bool = False  # the course's instructors chose to show names to everyone


async def actors_of(course_id: int | None) -> list[Actor]:
    """The log's moderators, numbered per role in order of first appearance."""
    query = (
        LogEntry.filter(course_id=course_id)
        if course_id
        else LogEntry.filter(course_id__isnull=True)
    )
    rows = await (
        query.annotate(first_seq=Min("seq"))
        .group_by("actor_role", "actor_id")
        .order_by("actor_role")
        .values("actor_role", "actor_id", "first_seq")
    )
    rows.sort(key=lambda row: row["first_seq"])
    counters: dict[str, int] = {}
    actors: list[Actor] = []
    for row in rows:
        role, actor_id = row["actor_role"], row["actor_id"]
        if role == "system" and actor_id is None:
            if any(a.key == "system" for a in actors):
                continue
            actors.append(Actor("system", role, None, "System", row["first_seq"]))
            continue
        counters[role] = counters.get(role, 0) + 1
        number = counters[role]
        actors.append(
            Actor(f"{role}-{number}", role, actor_id, f"{role.title()} {number}", row["first_seq"])
        )
    ids = [a.actor_id for a in actors if a.actor_id is not None]
    if ids:
        names = dict(await User.filter(id__in=ids).values_list("id", "display_name"))
        public = (
            bool(course_id)
            and await Course.filter(id=course_id, public_moderator_names=True).exists()
        )
        for actor in actors:
            if actor.actor_id is not None:
                actor.name = names.get(actor.actor_id)
                actor.named_publicly = public
    return actors


def actor_label(actor: Actor | None, viewer: Viewer) -> str:
    if actor is None:
        return "Unknown"
    if (viewer != "public" or actor.named_publicly) and actor.name:
        return actor.name
    return actor.pseudonym


@dataclass(slots=True)
class LogFilters:
    act: str | None = None
    actor: str | None = None  # an Actor.key
    role: str | None = None
    rule: str | None = None
    target_type: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    before: int | None = None  # keyset paging, newest first: entries with seq < before
    after: int | None = None  # the page of entries just newer than `after`
    highlight: int | None = None  # ?seq=N: the page that starts at entry N
    errors: dict[str, str] = field(default_factory=dict)

    def params(self, **changes: Any) -> dict[str, str]:
        """The filters as query parameters (paging replaced by `changes`)."""
        values: dict[str, Any] = {
            "act": self.act,
            "actor": self.actor,
            "role": self.role,
            "rule": self.rule,
            "target_type": self.target_type,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}

    def query(self, **changes: Any) -> str:
        params = self.params(**changes)
        return "?" + urlencode(params) if params else "?"

    @property
    def active(self) -> bool:
        return bool(self.params())


def _normalize_actor(text: str) -> str:
    return "-".join(text.lower().split())


def parse_filters(values: Mapping[str, str], actors: list[Actor]) -> LogFilters:
    """Filters from query parameters; unknown values are reported in `errors`, not raised."""
    params = Params(values)
    filters = LogFilters()
    filters.act = params.choice("act", [a.value for a in Act])
    filters.role = params.choice("role", ROLE_ORDER)
    target_type = params.raw("target_type")
    if target_type:
        if WORD.fullmatch(target_type):
            filters.target_type = target_type
        else:
            params.errors["target_type"] = "Give a target type such as post, thread or user."
    actor = _normalize_actor(params.raw("actor"))
    if actor:
        keys = {a.key for a in actors}
        if actor in keys:
            filters.actor = actor
        else:
            params.errors["actor"] = "No moderator with this label appears in this log."
    rule = params.raw("rule")
    if rule:
        if not RULE_CODE.fullmatch(rule):
            params.errors["rule"] = "Give a rule code such as R1."
        else:
            filters.rule = rule
    filters.date_from = params.day("from")
    filters.date_to = params.day("to")
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        params.errors["to"] = "The end date comes before the start date."
    filters.before = params.integer("before", minimum=0)
    filters.after = params.integer("after", minimum=0)
    filters.highlight = params.integer("seq", minimum=0)
    if filters.highlight is not None and filters.before is None and filters.after is None:
        filters.before = filters.highlight + 1
    filters.errors = params.errors
    return filters


def _filtered(course_id: int | None, filters: LogFilters, actors: list[Actor]) -> Any:
    query = (
        LogEntry.filter(course_id=course_id)
        if course_id
        else LogEntry.filter(course_id__isnull=True)
    )
    if filters.act:
        query = query.filter(act=filters.act)
    if filters.role:
        query = query.filter(actor_role=filters.role)
    if filters.actor:
        actor = next(a for a in actors if a.key == filters.actor)
        query = query.filter(actor_role=actor.role)
        query = (
            query.filter(actor_id__isnull=True)
            if actor.actor_id is None
            else query.filter(actor_id=actor.actor_id)
        )
    if filters.rule:
        query = query.filter(rule_code=filters.rule)
    if filters.target_type:
        query = query.filter(target_type=filters.target_type)
    if filters.date_from:
        start = datetime(
            filters.date_from.year, filters.date_from.month, filters.date_from.day, tzinfo=UTC
        )
        query = query.filter(created_at__gte=start)
    if filters.date_to:
        end = datetime(
            filters.date_to.year, filters.date_to.month, filters.date_to.day, tzinfo=UTC
        ) + timedelta(days=1)
        query = query.filter(created_at__lt=end)
    return query


@dataclass(slots=True)
class LogPage:
    entries: list[LogEntry]
    older: int | None  # `before` for the next (older) page
    newer: int | None  # `after` for the previous (newer) page


async def log_page(
    course_id: int | None, filters: LogFilters, actors: list[Actor], limit: int = PAGE_SIZE
) -> LogPage:
    """One page of matching entries, newest first, by keyset on seq."""
    base = _filtered(course_id, filters, actors)
    if filters.after is not None and filters.before is None:
        rows = list(await base.filter(seq__gt=filters.after).order_by("seq").limit(limit + 1))
        more_newer = len(rows) > limit
        rows = rows[:limit]
        rows.reverse()
        older = rows[-1].seq if rows and await base.filter(seq__lt=rows[-1].seq).exists() else None
        newer = rows[0].seq if rows and more_newer else None
        return LogPage(rows, older, newer)
    query = base.filter(seq__lt=filters.before) if filters.before is not None else base
    rows = list(await query.order_by("-seq").limit(limit + 1))
    more_older = len(rows) > limit
    rows = rows[:limit]
    older = rows[-1].seq if rows and more_older else None
    newer = rows[0].seq if rows and await base.filter(seq__gt=rows[0].seq).exists() else None
    return LogPage(rows, older, newer)


async def all_matching(
    course_id: int | None, filters: LogFilters, actors: list[Actor]
) -> list[LogEntry]:
    return list(await _filtered(course_id, filters, actors).order_by("seq"))


async def viewer_of(request: Request, course: Course | None) -> Viewer:
    """'staff' for the course's mentors and instructors and site admins, 'member' for its
    learners, 'public' for everyone else (logged out included)."""
    user: User | None = request.scope.get("user")
    if user is None or not user.is_active:
        return "public"
    if user.is_admin:
        return "staff"
    if course is None:
        return "public"
    role = await course.role_of(user)
    if role is None:
        return "public"
    return "staff" if role.is_staff else "member"


# --- presenting entries ----------------------------------------------------------------


class PublicEntryOut(BaseModel):
    """A log entry as a reader sees it: labels instead of account ids."""

    seq: int
    created_at: str = Field(description="UTC to the microsecond, as hashed.")
    actor_role: str = Field(description="mentor, instructor, admin or system")
    actor: str = Field(description="'Mentor 1' to the public; a display name to members.")
    act: str
    target_type: str
    target_id: int
    target: str = Field(description="'post #12', 'user #3', ...: never an anonymous author.")
    target_url: str | None
    rule_code: str
    rule_text: str
    reason: str
    duration_seconds: int | None
    duration: str
    old_value: str
    new_value: str
    reverses_seq: int | None
    reverses_url: str | None
    source: str
    leaf_hash: str = Field(description="Hex SHA-256 leaf hash of the canonical entry.")
    proof_url: str = Field(description="Its inclusion proof at the latest signed head.")
    url: str


UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def duration_text(seconds: int | None) -> str:
    if seconds is None:
        return ""
    parts = []
    remaining = seconds
    for unit, size in UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
        if len(parts) == 2:
            break
    return ", ".join(parts) or "0 seconds"


def log_base(course: Course | None) -> str:
    return f"/courses/{course.slug}/moderation" if course else "/moderation"


async def present(
    entries: list[LogEntry], *, course: Course | None, viewer: Viewer, actors: list[Actor]
) -> list[PublicEntryOut]:
    """Entries with labels fit for `viewer`."""
    by_identity = {(a.role, a.actor_id): a for a in actors}
    rules: dict[str, str] = {}
    if course is not None:
        for rule in await Rule.filter(course_id=course.id):
            rules[rule.code] = rule.text + (" (retired)" if rule.retired else "")
    post_ids = [e.target_id for e in entries if e.target_type == TargetType.POST]
    thread_ids = [e.target_id for e in entries if e.target_type == TargetType.THREAD]
    user_ids = [e.target_id for e in entries if e.target_type == TargetType.USER]
    post_links: dict[int, str] = {}
    if post_ids:
        for row in await Post.filter(id__in=post_ids).values(
            "id", "thread_id", "thread__course__slug"
        ):
            post_links[row["id"]] = (
                f"/courses/{row['thread__course__slug']}/threads/{row['thread_id']}"
                f"#post-{row['id']}"
            )
    thread_links: dict[int, str] = {}
    if thread_ids:
        for row in await Thread.filter(id__in=thread_ids).values("id", "course__slug"):
            thread_links[row["id"]] = f"/courses/{row['course__slug']}/threads/{row['id']}"
    user_names: dict[int, str] = {}
    if user_ids and viewer == "staff":
        for row in await User.filter(id__in=user_ids).values("id", "display_name", "username"):
            user_names[row["id"]] = f"{row['display_name']} (@{row['username']})"
    base = log_base(course)
    out = []
    for entry in entries:
        target = f"{entry.target_type} #{entry.target_id}"
        url = None
        if entry.target_type == TargetType.POST:
            url = post_links.get(entry.target_id)
        elif entry.target_type == TargetType.THREAD:
            url = thread_links.get(entry.target_id)
        elif entry.target_type == TargetType.USER and entry.target_id in user_names:
            target = user_names[entry.target_id]
        out.append(
            PublicEntryOut(
                seq=entry.seq,
                created_at=log.timestamp(entry.created_at),
                actor_role=entry.actor_role,
                actor=actor_label(by_identity.get((entry.actor_role, entry.actor_id)), viewer),
                act=entry.act,
                target_type=entry.target_type,
                target_id=entry.target_id,
                target=target,
                target_url=url,
                rule_code=entry.rule_code,
                rule_text=rules.get(entry.rule_code, "") if entry.rule_code else "",
                reason=entry.reason,
                duration_seconds=entry.duration_seconds,
                duration=duration_text(entry.duration_seconds),
                old_value=entry.old_value,
                new_value=entry.new_value,
                reverses_seq=entry.reverses_seq,
                reverses_url=(
                    f"{base}?seq={entry.reverses_seq}#entry-{entry.reverses_seq}"
                    if entry.reverses_seq is not None
                    else None
                ),
                source=entry.source,
                leaf_hash=entry.leaf_hash,
                proof_url=f"/api/v1/log/proof/inclusion?seq={entry.seq}",
                url=f"{base}?seq={entry.seq}#entry-{entry.seq}",
            )
        )
    return out


# --- the public JSON API ---------------------------------------------------------------


class HeadOut(BaseModel):
    """A signed tree head: after `size` entries the Merkle root was `root`."""

    size: int
    root: str = Field(description="Base64 of the 32-byte RFC 9162 root hash.")
    signed_at: str
    signature: str = Field(description="Base64 Ed25519 signature of the head message.")
    key_id: str
    public_key: str = Field(description="Base64 of the raw 32-byte Ed25519 public key.")
    algorithm: str


class PublicKeyOut(BaseModel):
    algorithm: str
    public_key: str = Field(description="Base64 of the raw 32-byte Ed25519 public key.")
    key_id: str


class EntryOut(BaseModel):
    """A stored entry: the exact string that was hashed, its leaf hash, and its columns."""

    seq: int
    canonical: str = Field(description="The exact UTF-8 text hashed as leaf `seq`.")
    leaf_hash: str = Field(description="Hex of SHA-256(0x00 || canonical).")
    created_at: str
    course_id: int | None
    actor_id: int | None
    actor_role: str
    act: str
    target_type: str
    target_id: int
    rule_code: str
    reason: str
    duration_seconds: int | None
    old_value: str
    new_value: str
    reverses_seq: int | None
    source: str


class EntriesOut(BaseModel):
    start: int
    limit: int
    tree_size: int = Field(description="Size of the latest signed head.")
    next_start: int | None
    entries: list[EntryOut]


class InclusionOut(BaseModel):
    seq: int
    size: int
    leaf_hash: str = Field(description="Hex, as in /api/v1/log/entries.")
    proof: list[str] = Field(description="Base64 hashes, from the leaf up (RFC 9162).")
    root: str = Field(description="Base64 root of the tree of `size` entries.")
    head: HeadOut | None = Field(description="The signed head at `size`, when there is one.")


class ConsistencyOut(BaseModel):
    first: int
    second: int
    proof: list[str] = Field(description="Base64 hashes (RFC 9162 consistency proof).")
    first_root: str
    second_root: str
    first_head: HeadOut | None
    second_head: HeadOut | None


class CourseLogOut(BaseModel):
    course: str
    entries: list[PublicEntryOut]
    older: int | None = Field(description="Pass as ?before= for the next, older page.")
    newer: int | None = Field(description="Pass as ?after= for the previous, newer page.")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def entry_out(entry: LogEntry) -> EntryOut:
    return EntryOut(
        seq=entry.seq,
        canonical=entry.canonical,
        leaf_hash=entry.leaf_hash,
        created_at=log.timestamp(entry.created_at),
        course_id=entry.course_id,
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
        reverses_seq=entry.reverses_seq,
        source=entry.source,
    )


async def _head_at(size: int) -> HeadOut | None:
    head = await TreeHead.get_or_none(size=size)
    return HeadOut(**log.head_json(head)) if head is not None else None


async def _signed_tree(size: int) -> tuple[merkle.SubtreeHashes | None, HeadOut | None]:
    """The process's leaf hashes checked against the signed head of `size` (None when they
    cannot be had that way), and that head as published."""
    head = await TreeHead.get_or_none(size=size)
    if head is None:
        return None, None
    try:
        root = bytes.fromhex(head.root_hex)
    except ValueError:
        return None, HeadOut(**log.head_json(head))
    return await log.proof_tree(size, root), HeadOut(**log.head_json(head))


async def _latest_head() -> TreeHead:
    head = await log.latest_head()
    if head is None:
        raise NotFound("The log is empty: no tree head has been signed yet.")
    return head


async def _leaves(size: int) -> list[bytes]:
    """The first `size` stored leaf hashes, or a Conflict when the stored log cannot give them."""
    try:
        leaves = await log.leaf_hashes(size)
    except ValueError:
        leaves = []
    if len(leaves) != size or any(len(leaf) != merkle.HASH_SIZE for leaf in leaves):
        raise Conflict(
            f"The stored log does not hold {size} well-formed entries, so it cannot prove this "
            "(run 'agora audit verify')."
        )
    return leaves


async def head(request: Request) -> Response:
    return json_response(HeadOut(**log.head_json(await _latest_head())))


async def public_key(request: Request) -> Response:
    key = log.signer()
    return json_response(
        PublicKeyOut(algorithm="ed25519", public_key=_b64(key.public_key_bytes), key_id=key.key_id)
    )


async def entries(request: Request) -> Response:
    params = Params(request.query_params)
    start = params.integer("start", default=0) or 0
    limit = params.integer("limit", default=100, minimum=1, maximum=MAX_ENTRIES_PER_CALL) or 100
    params.check()
    rows = list(await LogEntry.filter(seq__gte=start).order_by("seq", "id").limit(limit))
    latest = await log.latest_head()
    more = bool(rows) and await LogEntry.filter(seq__gt=rows[-1].seq).exists()
    return json_response(
        EntriesOut(
            start=start,
            limit=limit,
            tree_size=latest.size if latest else 0,
            next_start=rows[-1].seq + 1 if more else None,
            entries=[entry_out(row) for row in rows],
        )
    )


async def inclusion(request: Request) -> Response:
    params = Params(request.query_params)
    seq = params.integer("seq", required=True)
    size = params.integer("size", minimum=1)
    params.check()
    assert seq is not None
    latest = await _latest_head()
    size = latest.size if size is None else size
    if size > latest.size:
        message = f"The latest signed head covers {latest.size} entries."
        raise InvalidInput(message, fields={"size": message})
    if seq >= size:
        message = f"Entry {seq} is not in a tree of {size} entries."
        raise InvalidInput(message, fields={"seq": message})
    tree, signed = await _signed_tree(size)
    if tree is not None:
        leaf, proof, root = tree.leaves[seq], tree.inclusion_proof(seq, size), tree.root(size)
    else:
        leaves = await _leaves(size)
        proof = merkle.inclusion_proof(leaves, seq, size)
        leaf, root = leaves[seq], merkle.root_from_leaf_hashes(leaves)
    return json_response(
        InclusionOut(
            seq=seq,
            size=size,
            leaf_hash=leaf.hex(),
            proof=[_b64(p) for p in proof],
            root=_b64(root),
            head=signed,
        )
    )


async def consistency(request: Request) -> Response:
    params = Params(request.query_params)
    first = params.integer("first", required=True, minimum=1)
    second = params.integer("second", minimum=1)
    params.check()
    assert first is not None
    latest = await _latest_head()
    second = latest.size if second is None else second
    if second > latest.size:
        message = f"The latest signed head covers {latest.size} entries."
        raise InvalidInput(message, fields={"second": message})
    if first > second:
        message = "The first size cannot be larger than the second."
        raise InvalidInput(message, fields={"first": message})
    tree, second_head = await _signed_tree(second)
    if tree is not None:
        proof = tree.consistency_proof(first, second)
        first_root, second_root = tree.root(first), tree.root(second)
    else:
        leaves = await _leaves(second)
        proof = merkle.consistency_proof(leaves, first, second)
        first_root = merkle.root_from_leaf_hashes(leaves[:first])
        second_root = merkle.root_from_leaf_hashes(leaves)
    return json_response(
        ConsistencyOut(
            first=first,
            second=second,
            proof=[_b64(p) for p in proof],
            first_root=_b64(first_root),
            second_root=_b64(second_root),
            first_head=await _head_at(first),
            second_head=second_head,
        )
    )


async def course_log(request: Request) -> Response:
    """The course's public log, labelled exactly as a logged-out reader sees it."""
    course = await Course.get_or_none(slug=request.path_params["slug"])
    if course is None:
        raise NotFound("There is no such course.")
    actors = await actors_of(course.id)
    filters = parse_filters(request.query_params, actors)
    params = Params(request.query_params)
    limit = params.integer("limit", default=PAGE_SIZE, minimum=1, maximum=200) or PAGE_SIZE
    errors = {**filters.errors, **params.errors}
    if errors:
        raise InvalidInput("Some query parameters are invalid.", fields=errors)
    page = await log_page(course.id, filters, actors, limit)
    return json_response(
        CourseLogOut(
            course=course.slug,
            entries=await present(page.entries, course=course, viewer="public", actors=actors),
            older=page.older,
            newer=page.newer,
        )
    )
