"""The moderation part of a person's data export: every act about them, with proofs.

Each log entry that concerns the person (they are its subject, it acts on their post, thread,
submission, review, flag or appeal, or they acted) comes with its exact canonical text and an
RFC 9162 audit path against one signed tree head, so it can be checked offline. Their
sanctions, notices, appeals and flags follow. Other people appear only as the export's
pseudonyms; nobody who flagged the person's content is ever named or numbered.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from tortoise.expressions import Q, Subquery

from core.export import ExportContext
from core.models import Course, Notification, OutboxEvent, User
from core.timeutil import utcnow
from forum.models import Post, Thread
from moderation import log, merkle
from moderation.models import (
    Act,
    Appeal,
    AppealStatus,
    Flag,
    FlagCategory,
    LogEntry,
    Notice,
    Rule,
    Sanction,
    SanctionKind,
    TargetType,
    TreeHead,
)
from peer_review.interventions import TARGET_REVIEW, TARGET_SIMILARITY, TARGET_SUBMISSION
from peer_review.models import Assignment, Review, SimilarityFlag, Submission

HASHING = (
    "RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing with SHA-256: "
    "leaf_hash = SHA-256(0x00 || UTF-8 bytes of canonical), "
    "interior node = SHA-256(0x01 || left || right); "
    "audit_path lists sibling hashes from the leaf up, as in RFC 9162 section 2.1.3.2."
)
HOW_TO_VERIFY = (
    "For an entry: compute SHA-256 of the byte 0x00 followed by its canonical text and compare "
    "with leaf_hash; fold audit_path into it from leaf index `index` in a tree of "
    "tree_head.size leaves (RFC 9162 section 2.1.3.2) and compare with tree_head.root_hash. "
    "For the head: check the Ed25519 signature over signed_message with public_key; "
    "signed_message carries the root in base64 and the size. The public log at "
    "/api/v1/log/head and /api/v1/log/proof/consistency shows later heads extend this one."
)


def _time(moment: datetime | None) -> str | None:
    return log.timestamp(moment) if moment is not None else None


# --- what belongs to the person --------------------------------------------------------


def _own_posts(user_id: int) -> Subquery:
    return Subquery(Post.filter(author_id=user_id).values("id"))


def _about(user_id: int) -> Q:
    """Entries about the person or their things, or that they made."""
    return (
        Q(actor_id=user_id)
        | Q(target_type=TargetType.USER.value, target_id=user_id)
        | Q(target_type=TargetType.POST.value, target_id__in=_own_posts(user_id))
        | Q(
            target_type=TargetType.THREAD.value,
            target_id__in=Subquery(Thread.filter(author_id=user_id).values("id")),
        )
        | Q(
            target_type=TargetType.FLAG.value,
            target_id__in=Subquery(Flag.filter(flagger_id=user_id).values("id")),
        )
        | Q(
            target_type=TargetType.FLAG.value,
            target_id__in=Subquery(
                Flag.filter(
                    post_id__in=Subquery(Post.filter(author_id=user_id).values("id"))
                ).values("id")
            ),
        )
        | Q(
            target_type=TargetType.APPEAL.value,
            target_id__in=Subquery(Appeal.filter(appellant_id=user_id).values("id")),
        )
        | Q(
            target_type=TARGET_SUBMISSION,
            target_id__in=Subquery(Submission.filter(author_id=user_id).values("id")),
        )
        | Q(
            target_type=TARGET_REVIEW,
            target_id__in=Subquery(
                Review.filter(Q(reviewer_id=user_id) | Q(submission__author_id=user_id)).values(
                    "id"
                )
            ),
        )
        | Q(
            target_type=TARGET_SIMILARITY,
            target_id__in=Subquery(
                SimilarityFlag.filter(
                    Q(submission_a__author_id=user_id) | Q(submission_b__author_id=user_id)
                ).values("id")
            ),
        )
    )


class _Targets:
    """What the entries act on, loaded once, described from the person's side."""

    def __init__(self, ctx: ExportContext) -> None:
        self.ctx = ctx
        self.user_id = ctx.user.id
        self.posts: dict[int, dict[str, Any]] = {}
        self.threads: dict[int, dict[str, Any]] = {}
        self.flags: dict[int, dict[str, Any]] = {}
        self.appeals: dict[int, dict[str, Any]] = {}
        self.submissions: dict[int, dict[str, Any]] = {}
        self.reviews: dict[int, dict[str, Any]] = {}
        self.similar: dict[int, dict[str, Any]] = {}
        self.assignments: dict[int, str] = {}

    async def load(self, entries: Sequence[LogEntry]) -> None:
        ids: dict[str, set[int]] = defaultdict(set)
        for entry in entries:
            ids[entry.target_type].add(entry.target_id)
        if ids[TargetType.FLAG.value]:
            for row in await Flag.filter(id__in=ids[TargetType.FLAG.value]).values(
                "id", "post_id", "flagger_id"
            ):
                self.flags[row["id"]] = row
                ids[TargetType.POST.value].add(row["post_id"])
        if ids[TargetType.POST.value]:
            for row in await Post.filter(id__in=ids[TargetType.POST.value]).values(
                "id", "author_id", "thread_id", "thread__title"
            ):
                self.posts[row["id"]] = row
        if ids[TargetType.THREAD.value]:
            for row in await Thread.filter(id__in=ids[TargetType.THREAD.value]).values(
                "id", "author_id", "title"
            ):
                self.threads[row["id"]] = row
        if ids[TargetType.APPEAL.value]:
            for row in await Appeal.filter(id__in=ids[TargetType.APPEAL.value]).values(
                "id", "appellant_id", "entry_seq"
            ):
                self.appeals[row["id"]] = row
        if ids[TARGET_REVIEW]:
            for row in await Review.filter(id__in=ids[TARGET_REVIEW]).values(
                "id", "reviewer_id", "submission_id", "submission__author_id", "assignment_id"
            ):
                self.reviews[row["id"]] = row
        if ids[TARGET_SIMILARITY]:
            for row in await SimilarityFlag.filter(id__in=ids[TARGET_SIMILARITY]).values(
                "id",
                "assignment_id",
                "submission_a__author_id",
                "submission_b__author_id",
            ):
                self.similar[row["id"]] = row
        if ids[TARGET_SUBMISSION]:
            for row in await Submission.filter(id__in=ids[TARGET_SUBMISSION]).values(
                "id", "author_id", "assignment_id", "attempt"
            ):
                self.submissions[row["id"]] = row
        assignment_ids = {
            row["assignment_id"]
            for table in (self.reviews, self.similar, self.submissions)
            for row in table.values()
        }
        if assignment_ids:
            self.assignments = dict(
                await Assignment.filter(id__in=assignment_ids).values_list("id", "title")
            )

    def _assignment(self, assignment_id: int) -> str:
        return f"“{self.assignments.get(assignment_id, f'assignment {assignment_id}')}”"

    def _post(self, post_id: int) -> tuple[str, bool]:
        row = self.posts.get(post_id)
        if row is None:
            return f"post #{post_id} (no longer stored)", False
        mine = row["author_id"] == self.user_id
        owner = "your post" if mine else f"post #{post_id}"
        return f"{owner} in the thread “{row['thread__title']}”", mine

    def describe(self, entry: LogEntry) -> tuple[str, list[str]]:
        """The target in words, and why the entry is in this export."""
        kind, target_id = entry.target_type, entry.target_id
        why = ["you made this act"] if entry.actor_id == self.user_id else []
        text = f"{kind} #{target_id}"
        if kind == TargetType.USER.value:
            text = self.ctx.pseudonym(target_id)
            if target_id == self.user_id:
                why.append("it is about you")
        elif kind == TargetType.POST.value:
            text, mine = self._post(target_id)
            if mine:
                why.append("it acts on your post")
        elif kind == TargetType.THREAD.value:
            thread = self.threads.get(target_id)
            if thread is not None:
                mine = thread["author_id"] == self.user_id
                text = f"{'your thread' if mine else 'the thread'} “{thread['title']}”"
                if mine:
                    why.append("it acts on your thread")
        elif kind == TargetType.FLAG.value:
            flag = self.flags.get(target_id)
            if flag is not None:
                post, mine = self._post(flag["post_id"])
                if flag["flagger_id"] == self.user_id:
                    text = f"your flag on {post}"
                    why.append("it answers your flag")
                else:
                    text = f"a flag on {post}"
                    if mine:
                        why.append("it answers a flag on your post")
        elif kind == TargetType.APPEAL.value:
            appeal = self.appeals.get(target_id)
            if appeal is not None:
                if appeal["appellant_id"] == self.user_id:
                    text = f"your appeal against entry {appeal['entry_seq']}"
                    why.append("it decides your appeal")
                else:
                    who = self.ctx.pseudonym(appeal["appellant_id"])
                    text = f"the appeal of {who} against entry {appeal['entry_seq']}"
        elif kind == TARGET_SUBMISSION:
            row = self.submissions.get(target_id)
            if row is not None:
                work = f"attempt {row['attempt']} at {self._assignment(row['assignment_id'])}"
                if row["author_id"] == self.user_id:
                    text = f"your submission ({work})"
                    why.append("it acts on your submission")
                else:
                    text = f"the submission of {self.ctx.pseudonym(row['author_id'])} ({work})"
        elif kind == TARGET_REVIEW:
            row = self.reviews.get(target_id)
            if row is not None:
                where = self._assignment(row["assignment_id"])
                # Peer review is blind both ways: neither side is given a pseudonym here.
                if row["reviewer_id"] == self.user_id:
                    text = f"your review of a classmate's submission for {where}"
                    why.append("it acts on your review")
                elif row["submission__author_id"] == self.user_id:
                    text = f"a classmate's review of your submission for {where}"
                    why.append("it acts on a review of your submission")
                else:
                    text = f"review #{target_id} for {where}"
        elif kind == TARGET_SIMILARITY:
            row = self.similar.get(target_id)
            if row is not None:
                where = self._assignment(row["assignment_id"])
                authors = {row["submission_a__author_id"], row["submission_b__author_id"]}
                if self.user_id in authors:
                    text = f"a near-duplicate finding about your submission for {where}"
                    why.append("it decides a near-duplicate finding about your submission")
                else:
                    text = f"a near-duplicate finding for {where}"
        return text, why


# --- proofs ----------------------------------------------------------------------------


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the RFC 9162 tree, leaves first; an odd last node is carried up as is."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        parents = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            parents.append(level[-1])
        levels.append(parents)
    return levels


def audit_path(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """The inclusion proof of leaf `index`, from the leaf up, read off prebuilt levels."""
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def _head_out(head: TreeHead) -> dict[str, Any]:
    root = bytes.fromhex(head.root_hex)
    signed_at = log.timestamp(head.signed_at)
    return {
        "size": head.size,
        "root_hash": head.root_hex,
        "signed_at": signed_at,
        "signature": head.signature_hex,
        "signature_algorithm": "ed25519",
        "public_key": log.signer().public_key_bytes.hex(),
        "key_id": head.key_id,
        "signed_message": log.head_message(head.size, root, signed_at).decode(),
    }


async def _proofs(
    entries: Sequence[LogEntry], head: TreeHead
) -> tuple[dict[int, list[str]], list[str]]:
    """Audit paths of `entries` at `head`, and anything found wrong with the stored log."""
    problems: list[str] = []
    leaves = await log.leaf_hashes(head.size)
    if len(leaves) != head.size or any(len(leaf) != merkle.HASH_SIZE for leaf in leaves):
        problems.append(
            f"the stored log does not hold the {head.size} well-formed entries the signed head "
            "covers, so no inclusion proof could be made"
        )
        return {}, problems
    levels = tree_levels(leaves)
    if levels[-1][0].hex() != head.root_hex:
        problems.append("the stored entries no longer hash to the signed root")
    signer = log.signer()
    if not log.verify_head_signature(
        signer.public_key_bytes,
        head.size,
        bytes.fromhex(head.root_hex),
        log.timestamp(head.signed_at),
        bytes.fromhex(head.signature_hex),
    ):
        problems.append("the tree head's signature does not verify with the site's key")
    for entry in entries:
        if log.entry_leaf_hash(entry.canonical).hex() != entry.leaf_hash:
            problems.append(f"entry {entry.seq}: its canonical text does not match its leaf hash")
    paths = {e.seq: [h.hex() for h in audit_path(levels, e.seq)] for e in entries}
    return paths, problems


# --- the sections ----------------------------------------------------------------------


async def _courses(ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(await Course.filter(id__in=wanted).values_list("id", "title"))


def _course(courses: dict[int, str], course_id: int | None) -> dict[str, Any] | None:
    if course_id is None:
        return None
    return {"id": course_id, "title": courses.get(course_id, "")}


async def _rule_texts(entries: Sequence[LogEntry]) -> dict[tuple[int | None, str], str]:
    course_ids = {e.course_id for e in entries if e.rule_code and e.course_id is not None}
    if not course_ids:
        return {}
    rows = await Rule.filter(course_id__in=course_ids).values("course_id", "code", "text")
    return {(row["course_id"], row["code"]): row["text"] for row in rows}


async def _log_entries(
    ctx: ExportContext, entries: Sequence[LogEntry], courses: dict[int, str]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    targets = _Targets(ctx)
    await targets.load(entries)
    rules = await _rule_texts(entries)
    # Read after the entries: a head is signed in the same transaction as each append, so
    # the latest one covers every entry read above.
    head = await log.latest_head()
    paths: dict[int, list[str]] = {}
    problems: list[str] = []
    if head is not None and entries:
        paths, problems = await _proofs(entries, head)
    out = []
    for entry in entries:
        description, why = targets.describe(entry)
        out.append(
            {
                "index": entry.seq,
                "created_at": log.timestamp(entry.created_at),
                "course": _course(courses, entry.course_id),
                "act": entry.act,
                "actor": ctx.pseudonym(entry.actor_id),
                "actor_role": entry.actor_role,
                "target": {
                    "type": entry.target_type,
                    "id": entry.target_id,
                    "description": description,
                },
                "included_because": why,
                "rule": (
                    {
                        "code": entry.rule_code,
                        "text": rules.get((entry.course_id, entry.rule_code), ""),
                    }
                    if entry.rule_code
                    else None
                ),
                "reason": entry.reason,
                "duration_seconds": entry.duration_seconds,
                "old_value": entry.old_value,
                "new_value": entry.new_value,
                "reverses_index": entry.reverses_seq,
                "source": entry.source,
                "canonical": entry.canonical,
                "leaf_hash": entry.leaf_hash,
                "audit_path": paths.get(entry.seq),
            }
        )
    return out, (_head_out(head) if head is not None and entries else None), problems


async def _sanctions(
    user: User, by_seq: dict[int, LogEntry], courses: dict[int, str], ctx: ExportContext
) -> list[dict[str, Any]]:
    now = utcnow()
    lifts = {
        e.reverses_seq: e
        for e in by_seq.values()
        if e.act == Act.LIFT_SANCTION.value and e.reverses_seq is not None
    }
    out = []
    for sanction in await Sanction.filter(user_id=user.id).order_by("starts_at", "id"):
        entry = by_seq.get(sanction.entry_seq)
        lift = lifts.get(sanction.entry_seq)
        kind = SanctionKind(sanction.kind)
        out.append(
            {
                "kind": kind.value,
                "course": _course(courses, sanction.course_id),  # type: ignore[attr-defined]
                "starts_at": log.timestamp(sanction.starts_at),
                "ends_at": _time(sanction.ends_at),
                "lifted_at": _time(sanction.lifted_at),
                "active_now": sanction.is_active(now),
                "log_index": sanction.entry_seq,
                "by": ctx.pseudonym(entry.actor_id) if entry else None,
                "rule_code": entry.rule_code if entry else "",
                "reason": entry.reason if entry else "",
                "lifted_by": ctx.pseudonym(lift.actor_id) if lift else None,
                "lift_log_index": lift.seq if lift else None,
            }
        )
    return out


async def _deliveries(user: User, notices: Sequence[Notice]) -> dict[int, Notification]:
    """The in-app notification that told the person about each notice, by notice id."""
    notifications = await Notification.filter(
        user_id=user.id, kind="moderation", dedupe_key__startswith="outbox:"
    )
    event_ids: dict[int, int] = {}
    for notification in notifications:
        number = notification.dedupe_key.removeprefix("outbox:")
        if number.isdigit():
            event_ids[notification.id] = int(number)
    payloads = dict(
        await OutboxEvent.filter(id__in=list(event_ids.values())).values_list("id", "payload")
    )
    found: dict[int, Notification] = {}
    unnamed: dict[str, list[Notification]] = defaultdict(list)
    for notification in sorted(
        (n for n in notifications if n.id in event_ids), key=lambda n: event_ids[n.id]
    ):
        payload = payloads.get(event_ids[notification.id]) or {}
        notice_id = payload.get("notice_id") if isinstance(payload, dict) else None
        if isinstance(notice_id, int):
            found[notice_id] = notification
        else:
            unnamed[notification.message].append(notification)
    # Events written before they named their notice: a notice and its event are written
    # together, so equal messages pair up in the order they were made.
    for notice in notices:
        queue = unnamed.get(notice.summary)
        if notice.id not in found and queue:
            found[notice.id] = queue.pop(0)
    return found


async def _notices(user: User, courses: dict[int, str]) -> list[dict[str, Any]]:
    notices = await Notice.filter(user_id=user.id).order_by("id")
    delivered = await _deliveries(user, notices)
    out = []
    for notice in sorted(notices, key=lambda n: (n.created_at, n.id)):
        notification = delivered.get(notice.id)
        out.append(
            {
                "id": notice.id,
                "course": _course(courses, notice.course_id),
                "log_index": notice.entry_seq,
                "act": notice.act,
                "summary": notice.summary,
                "content_excerpt": notice.content_excerpt,
                "rule": {"code": notice.rule_code, "text": notice.rule_text}
                if notice.rule_code
                else None,
                "reason": notice.reason,
                "automatic": notice.automatic,
                "ends_at": _time(notice.ends_at),
                "appeal_until": _time(notice.appeal_until),
                "shown_on_standing_page_from": log.timestamp(notice.created_at),
                "notification": (
                    {
                        "delivered_at": log.timestamp(notification.created_at),
                        "read_at": _time(notification.read_at),
                        "emailed_at": _time(notification.emailed_at),
                    }
                    if notification is not None
                    else None
                ),
            }
        )
    return out


async def _appeals(user: User, courses: dict[int, str], ctx: ExportContext) -> list[dict[str, Any]]:
    out = []
    for appeal in await Appeal.filter(appellant_id=user.id).order_by("created_at", "id"):
        status = AppealStatus(appeal.status)
        out.append(
            {
                "id": appeal.id,
                "course": _course(courses, appeal.course_id),
                "appealed_log_index": appeal.entry_seq,
                "notice_id": appeal.notice_id,  # type: ignore[attr-defined]
                "text": appeal.text,
                "filed_at": log.timestamp(appeal.created_at),
                "status": status.value,
                "decided_at": _time(appeal.decided_at),
                "decided_by": (
                    ctx.pseudonym(appeal.decided_by_id) if status != AppealStatus.PENDING else None
                ),
                "decision": appeal.decision_text,
                "decision_log_index": appeal.decision_seq,
            }
        )
    return out


async def _thread_titles(post_ids: Iterable[int]) -> dict[int, str]:
    wanted = set(post_ids)
    if not wanted:
        return {}
    return dict(await Post.filter(id__in=wanted).values_list("id", "thread__title"))


async def _flags_filed(user: User, courses: dict[int, str]) -> list[dict[str, Any]]:
    flags = await Flag.filter(flagger_id=user.id).order_by("created_at", "id")
    titles = await _thread_titles(f.post_id for f in flags)
    return [
        {
            "id": flag.id,
            "course": _course(courses, flag.course_id),
            "post_id": flag.post_id,
            "thread": titles.get(flag.post_id),
            "category": FlagCategory(flag.category).value,
            "text": flag.text,
            "filed_at": log.timestamp(flag.created_at),
            "status": "resolved" if flag.resolved_at else "open",
            "resolved_at": _time(flag.resolved_at),
            "outcome": flag.outcome,
            "resolution_log_index": flag.resolution_seq,
        }
        for flag in flags
    ]


async def _flags_on_content(user: User, courses: dict[int, str]) -> list[dict[str, Any]]:
    # Outcomes and times only: nothing here may point at who flagged (not even a number).
    flags = await Flag.filter(post_id__in=_own_posts(user.id)).order_by("created_at", "id")
    titles = await _thread_titles(f.post_id for f in flags)
    return [
        {
            "course": _course(courses, flag.course_id),
            "post_id": flag.post_id,
            "thread": titles.get(flag.post_id),
            "category": FlagCategory(flag.category).value,
            "flagged_at": log.timestamp(flag.created_at),
            "status": "resolved" if flag.resolved_at else "open",
            "resolved_at": _time(flag.resolved_at),
            "outcome": flag.outcome,
            "resolution_log_index": flag.resolution_seq,
        }
        for flag in flags
    ]


async def sections(ctx: ExportContext) -> dict[str, Any]:
    """The "moderation" key of export.json."""
    user = ctx.user
    entries = list(await LogEntry.filter(_about(user.id)).order_by("seq"))
    course_ids: set[int | None] = {e.course_id for e in entries}
    for query in (
        Sanction.filter(user_id=user.id),
        Notice.filter(user_id=user.id),
        Appeal.filter(appellant_id=user.id),
        Flag.filter(Q(flagger_id=user.id) | Q(post_id__in=_own_posts(user.id))),
    ):
        found = await query.values_list("course_id", flat=True)
        course_ids.update(cast(list[int | None], found))
    courses = await _courses(course_ids)
    log_entries, head, problems = await _log_entries(ctx, entries, courses)
    by_seq = {e.seq: e for e in entries}
    return {
        "moderation": {
            "about": (
                "Every entry of the public moderation log that concerns you or your content, "
                "or that you made, with what you were told and what you asked. Other people "
                "appear as the pseudonyms of this export; who flagged your content is never "
                "included. Ids in the canonical texts are internal numbers, exactly as the "
                "public log publishes them."
            ),
            "hashing": HASHING,
            "how_to_verify": HOW_TO_VERIFY,
            "tree_head": head,
            "log_problems": problems,
            "log_entries": log_entries,
            "sanctions": await _sanctions(user, by_seq, courses, ctx),
            "notices": await _notices(user, courses),
            "appeals": await _appeals(user, courses, ctx),
            "flags_filed": await _flags_filed(user, courses),
            "flags_on_my_content": await _flags_on_content(user, courses),
        }
    }
