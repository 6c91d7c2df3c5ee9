"""The tamper-evident moderation log: canonical entries, Merkle appends, signed tree heads.

Each entry's public fields are serialized canonically (ids, never names) and hashed as a leaf
of an RFC 9162 Merkle tree. Appends take a row lock on `LogState`, so concurrent requests and
workers extend one tree in one order. Every append stores an Ed25519-signed tree head; anyone
who saved an earlier head can ask for a consistency proof, and `verify_log` recomputes all
of it from the stored rows.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from tortoise.connection import get_connection

from core.timeutil import utcnow
from moderation import merkle
from moderation._heads import FORMAT_VERSION as FORMAT_VERSION
from moderation._heads import HeadToCheck, bad_signatures
from moderation._heads import canonical_json as canonical_json
from moderation._heads import head_message as head_message
from moderation.models import LogEntry, LogState, TreeHead

KEY_FILE = "log-signing-key.pem"

# The public fields of an entry, in the canonical serialization.
CANONICAL_FIELDS = (
    "seq",
    "created_at",
    "course_id",
    "actor_id",
    "actor_role",
    "act",
    "target_type",
    "target_id",
    "rule_code",
    "reason",
    "duration_seconds",
    "old_value",
    "new_value",
    "reverses_seq",
    "source",
)


def timestamp(moment: datetime) -> str:
    """UTC to the microsecond, one fixed format: 2026-11-22T15:20:18.123456Z."""
    moment = moment.astimezone(UTC)
    if moment.year >= 1000:  # the same text as strftime below, several times faster
        return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_values(fields: Mapping[str, Any]) -> str:
    """The serialization that is hashed, from the public fields of an entry."""
    values: dict[str, Any] = {"v": FORMAT_VERSION}
    for name in CANONICAL_FIELDS:
        value = fields[name]
        values[name] = timestamp(value) if isinstance(value, datetime) else value
    return canonical_json(values)


def canonical_entry(entry: LogEntry) -> str:
    """The serialization that is hashed, recomputed from the entry's columns."""
    return canonical_values({name: getattr(entry, name) for name in CANONICAL_FIELDS})


def entry_leaf_hash(canonical: str) -> bytes:
    return merkle.leaf_hash(canonical.encode("utf-8"))


# --- signing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signer:
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_key_bytes(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> str:
        return merkle.leaf_hash(self.public_key_bytes).hex()[:16]

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def load_signer(data_dir: Path) -> Signer:
    """The site's signing key, generated into the data folder on first use (mode 0600)."""
    path = data_dir / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return Signer(key)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_signer(data_dir)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return Signer(key)


_signer: Signer | None = None


def configure_signer(data_dir: Path) -> Signer:
    global _signer
    _signer = load_signer(data_dir)
    return _signer


def signer() -> Signer:
    if _signer is None:
        raise RuntimeError("the log signing key is not loaded in this process")
    return _signer


def verify_head_signature(
    public_key: bytes, size: int, root: bytes, signed_at: str, signature: bytes
) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, head_message(size, root, signed_at)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


# --- appending -------------------------------------------------------------------------


async def append(
    *,
    course_id: int | None,
    actor_id: int | None,
    actor_role: str,
    act: str,
    target_type: str,
    target_id: int,
    rule_code: str = "",
    reason: str = "",
    duration_seconds: int | None = None,
    old_value: str = "",
    new_value: str = "",
    reverses_seq: int | None = None,
    source: str = "manual",
) -> LogEntry:
    """Append one entry; call inside the transaction of the act it records."""
    state = await LogState.select_for_update().get_or_none(id=1)
    if state is None:
        await LogState.get_or_create(id=1, defaults={"size": 0, "range_hex": []})
        state = await LogState.select_for_update().get(id=1)
    compact = merkle.CompactRange.from_hex(state.size, state.range_hex)
    entry = LogEntry(
        seq=state.size,
        created_at=utcnow(),
        course_id=course_id,
        actor_id=actor_id,
        actor_role=actor_role,
        act=act,
        target_type=target_type,
        target_id=target_id,
        rule_code=rule_code,
        reason=reason,
        duration_seconds=duration_seconds,
        old_value=old_value,
        new_value=new_value,
        reverses_seq=reverses_seq,
        source=source,
    )
    entry.canonical = canonical_entry(entry)
    leaf = entry_leaf_hash(entry.canonical)
    entry.leaf_hash = leaf.hex()
    await entry.save()
    compact.append(leaf)
    await LogState.filter(id=1).update(size=compact.size, range_hex=compact.to_hex())
    root = compact.root()
    signed_at = timestamp(utcnow())
    key = signer()
    await TreeHead.create(
        size=compact.size,
        root_hex=root.hex(),
        signed_at=datetime.strptime(signed_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
        signature_hex=key.sign(head_message(compact.size, root, signed_at)).hex(),
        key_id=key.key_id,
    )
    return entry


# --- reading and proving ---------------------------------------------------------------


async def latest_head() -> TreeHead | None:
    return await TreeHead.all().order_by("-size").first()


async def leaf_hashes(size: int | None = None) -> list[bytes]:
    query = LogEntry.all().order_by("seq")
    if size is not None:
        query = query.filter(seq__lt=size)
    hashes = cast("list[str]", await query.values_list("leaf_hash", flat=True))
    return [bytes.fromhex(h) for h in hashes]


def head_json(head: TreeHead) -> dict[str, Any]:
    """A tree head as published: everything a reader needs to check its signature."""
    return {
        "size": head.size,
        "root": base64.b64encode(bytes.fromhex(head.root_hex)).decode(),
        "signed_at": timestamp(head.signed_at),
        "signature": base64.b64encode(bytes.fromhex(head.signature_hex)).decode(),
        "key_id": head.key_id,
        "public_key": base64.b64encode(signer().public_key_bytes).decode(),
        "algorithm": "ed25519",
    }


# This process's copy of the log's leaf hashes for proofs: read once, then only new entries.
_proof_tree = merkle.SubtreeHashes()


async def _read_more_leaves(tree: merkle.SubtreeHashes, size: int) -> None:
    start = len(tree)
    rows = cast(
        "list[tuple[int, str]]",
        await LogEntry.filter(seq__gte=start, seq__lt=size)
        .order_by("seq", "id")
        .values_list("seq", "leaf_hash"),
    )
    if len(tree) != start:
        return  # another request of this process read them meanwhile
    hashes: list[bytes] = []
    for expected, (seq, stored) in enumerate(rows, start):
        leaf = _hex(stored)
        if seq != expected or leaf is None or len(leaf) != merkle.HASH_SIZE:
            break  # a gap or a damaged row: the caller falls back to reading the whole log
        hashes.append(leaf)
    tree.extend(hashes)


async def proof_tree(size: int, signed_root: bytes) -> merkle.SubtreeHashes | None:
    """Leaf hashes of at least the first `size` entries whose root at `size` is the signed
    one, for proofs; None when the stored log cannot give them.

    The log is append-only, so the hashes are kept between calls and only entries added
    since are read; they are used only while they still hash to the signed root (another
    database, or a damaged one, starts the copy over).
    """
    global _proof_tree
    for fresh in (False, True):
        if fresh:
            _proof_tree = merkle.SubtreeHashes()
        tree = _proof_tree
        for _ in range(3):
            if len(tree) >= size:
                break
            await _read_more_leaves(tree, size)
        if len(tree) >= size and tree.root(size) == signed_root:
            return tree
    return None


# --- verification ----------------------------------------------------------------------


@dataclass(slots=True)
class VerifyReport:
    entries: int
    heads: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


# Rows are read this many at a time. Checking a signature costs far more than the hashing, so
# a long log's heads go to worker processes in chunks while this process hashes the entries.
VERIFY_BATCH = 5000
SIGNATURE_CHUNK = 2500
PARALLEL_FROM = 10_000

_ENTRY_COLUMNS = ("id", *CANONICAL_FIELDS, "canonical", "leaf_hash")
_HEAD_COLUMNS = ("id", "size", "root_hex", "signed_at", "signature_hex")


async def _rows(table: str, columns: tuple[str, ...]) -> AsyncIterator[list[tuple[Any, ...]]]:
    """A log table's rows as stored, by (columns[1], id), in batches; columns[0] is "id"."""
    connection = get_connection("default")
    order = columns[1]
    select = ", ".join(f'"{c}"' for c in columns)
    after = ""
    while True:
        _, batch = await connection.execute_query(
            f'SELECT {select} FROM "{table}"{after} ORDER BY "{order}", "id" LIMIT {VERIFY_BATCH}'
        )
        rows = [tuple(row) for row in batch]
        if not rows:
            return
        yield rows
        if len(rows) < VERIFY_BATCH:
            return
        # Keyset paging on integers read from the database, so the SQL stays literal and safe.
        last, last_id = int(rows[-1][1]), int(rows[-1][0])
        after = f' WHERE "{order}" > {last} OR ("{order}" = {last} AND "id" > {last_id})'


def _moment(raw: Any, field: Any) -> datetime | None:
    """A stored timestamp as the ORM reads it (None when unreadable)."""
    if isinstance(raw, datetime):
        moment = raw
    else:
        try:
            moment = datetime.fromisoformat(raw)
        except (TypeError, ValueError):
            try:
                converted = field.to_python_value(raw)
            except Exception:
                return None
            return converted if isinstance(converted, datetime) else None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _hex(value: Any) -> bytes | None:
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        return None


def _worker_context() -> BaseContext:
    """Worker processes that start at once with what checking a signature needs.

    A spawned worker imports the program's main module before it can work (for the CLI, the
    whole application, about a second). A fork server imports it once, with
    `moderation._heads`, and forks each worker from itself, so the workers find both loaded.
    Where there is no fork server (not POSIX), spawn.
    """
    try:
        context = get_context("forkserver")
    except ValueError:
        return get_context("spawn")
    context.set_forkserver_preload(["__main__", "moderation._heads"])
    return context


class _SignatureChecks:
    """Head signatures checked in chunks: here for a short log, in worker processes for long."""

    def __init__(self, public_key: bytes, seed: bytes | None = None) -> None:
        self.public_key = public_key
        self.seed = seed
        self.pool: ProcessPoolExecutor | None = None
        self.waiting: list[list[HeadToCheck]] = []
        self.running: list[tuple[list[HeadToCheck], asyncio.Future[list[int]]]] = []

    def add(self, chunk: list[HeadToCheck], heads_so_far: int) -> None:
        if self.pool is None and heads_so_far >= PARALLEL_FROM:
            workers = max(1, min(8, os.cpu_count() or 1))
            self.pool = ProcessPoolExecutor(workers, mp_context=_worker_context())
            for waiting in self.waiting:
                self._start(waiting)
            self.waiting = []
        if self.pool is None:
            self.waiting.append(chunk)
        else:
            self._start(chunk)

    def _start(self, chunk: list[HeadToCheck]) -> None:
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self.pool, bad_signatures, self.public_key, chunk, self.seed)
        self.running.append((chunk, work))

    async def failed(self) -> set[int]:
        """The positions of every head whose signature does not verify."""
        found = [bad_signatures(self.public_key, chunk, self.seed) for chunk in self.waiting]
        for chunk, work in self.running:
            try:
                found.append(await work)
            except BrokenProcessPool:
                # Workers could not start (e.g. from a script without a __main__ guard):
                # the same check, here.
                found.append(bad_signatures(self.public_key, chunk, self.seed))
        return {position for positions in found for position in positions}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


async def verify_log(public_key: bytes | None = None) -> VerifyReport:
    """Recompute every entry hash, the tree, and every signed head from the stored rows."""
    own = _signer.public_key_bytes if _signer is not None else None
    key = public_key if public_key is not None else signer().public_key_bytes
    # Checking the site's own heads, the signing key makes the check cheaper (_heads.py).
    seed = _signer.private_key.private_bytes_raw() if _signer is not None and key == own else None
    checks = _SignatureChecks(key, seed)
    try:
        return await _verify(checks)
    finally:
        checks.close()


async def _verify(checks: _SignatureChecks) -> VerifyReport:
    created_at_field = LogEntry._meta.fields_map["created_at"]
    signed_at_field = TreeHead._meta.fields_map["signed_at"]

    # Heads first, so that their signatures are being checked while the entries are hashed.
    heads: list[tuple[int, bytes | None]] = []  # (size, root), in size order
    unreadable: set[int] = set()
    async for rows in _rows(TreeHead._meta.db_table, _HEAD_COLUMNS):
        chunk: list[HeadToCheck] = []
        for _, size, root_hex, raw_signed_at, signature_hex in rows:
            position, root = len(heads), _hex(root_hex)
            heads.append((int(size), root))
            signed = _moment(raw_signed_at, signed_at_field)
            if root is None or signed is None:
                unreadable.add(position)
            signed_at = timestamp(signed) if signed is not None else ""
            chunk.append((position, int(size), root, signed_at, signature_hex))
            if len(chunk) == SIGNATURE_CHUNK:
                checks.add(chunk, len(heads))
                chunk = []
        if chunk:
            checks.add(chunk, len(heads))

    problems: list[str] = []
    wrong_root: set[int] = set()
    no_such_size: set[int] = set()  # besides every head past the last entry
    next_head = 0
    while next_head < len(heads) and heads[next_head][0] <= 0:
        if heads[next_head][0] < 0:
            no_such_size.add(next_head)
        elif heads[next_head][1] != merkle.EMPTY_ROOT:
            wrong_root.add(next_head)
        next_head += 1
    compact = merkle.CompactRange()
    entries = 0
    previous_id: int | None = None
    out_of_order = False
    async for rows in _rows(LogEntry._meta.db_table, _ENTRY_COLUMNS):
        for row in rows:
            entry_id, seq, stored, stored_leaf = row[0], row[1], row[-2], row[-1]
            if seq != entries:
                problems.append(
                    f"entry id {entry_id}: sequence number {seq} where {entries} was expected "
                    "(an entry was deleted, inserted or reordered)"
                )
            if previous_id is not None and entry_id < previous_id:
                out_of_order = True
            previous_id = entry_id
            fields = dict(zip(CANONICAL_FIELDS, row[1:-2], strict=True))
            fields["created_at"] = _moment(fields["created_at"], created_at_field)
            if fields["created_at"] is None or canonical_values(fields) != stored:
                problems.append(f"entry {seq}: its fields no longer match what was hashed")
            leaf = entry_leaf_hash(stored)
            if leaf.hex() != stored_leaf:
                problems.append(f"entry {seq}: stored leaf hash does not match its content")
            compact.append(leaf)
            entries += 1
            if next_head < len(heads) and heads[next_head][0] == entries:
                root = compact.root()
                while next_head < len(heads) and heads[next_head][0] == entries:
                    if heads[next_head][1] != root:
                        wrong_root.add(next_head)
                    next_head += 1
    bad_signatures = await checks.failed()

    if out_of_order:
        problems.append("entries were stored in a different order than their sequence numbers")
    for index, (size, _) in enumerate(heads):
        if index in bad_signatures:
            problems.append(f"tree head at size {size}: signature does not verify")
        if index in unreadable:
            problems.append(f"tree head at size {size}: its root or signing time is unreadable")
        elif index >= next_head or index in no_such_size:
            problems.append(
                f"tree head at size {size}: the log has only {entries} entries "
                "(entries were deleted or the log was truncated)"
            )
        elif index in wrong_root:
            problems.append(
                f"tree head at size {size}: the entries no longer hash to the signed root"
            )
    if heads and heads[-1][0] != entries:
        problems.append(
            f"the latest signed head covers {heads[-1][0]} entries but {entries} are stored"
        )
    if entries and not heads:
        problems.append("entries exist but no signed tree head does")
    problems.extend(await state_problems(entries))
    return VerifyReport(entries=entries, heads=len(heads), problems=problems)


async def state_problems(entries: int) -> list[str]:
    """The row appends extend must agree with what is stored (catches a quiet truncation)."""
    state = await LogState.get_or_none(id=1)
    if state is None:
        return ["entries exist but the log's running state is missing"] if entries else []
    problems = []
    if state.size != entries:
        problems.append(
            f"the log's running state counts {state.size} entries but {entries} are stored "
            "(entries were deleted or inserted outside the log, or the log was truncated)"
        )
    try:
        root = merkle.CompactRange.from_hex(state.size, state.range_hex).root()
    except (ValueError, TypeError):
        return [*problems, "the log's running state is malformed"]
    head = await TreeHead.get_or_none(size=state.size)
    if state.size and head is None:
        problems.append(
            f"no signed tree head covers the {state.size} entries the running state counts "
            "(heads were deleted)"
        )
    elif head is not None and head.root_hex != root.hex():
        problems.append(f"the running state's root differs from the signed head at {state.size}")
    return problems
