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
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.machinery import ModuleSpec
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from tortoise.connection import get_connection

from core.timeutil import utcnow
from moderation import merkle
from moderation._entries import CANONICAL_FIELDS as CANONICAL_FIELDS
from moderation._entries import (
    ENTRY_COLUMNS,
    EntryChecks,
    StoredHead,
    check_entries,
    check_heads,
    hex_bytes,
    stored_timestamp,
)
from moderation._entries import canonical_values as canonical_values
from moderation._entries import entry_leaf_hash as entry_leaf_hash
from moderation._entries import timestamp as timestamp
from moderation._heads import FORMAT_VERSION as FORMAT_VERSION
from moderation._heads import HeadToCheck, bad_signatures
from moderation._heads import canonical_json as canonical_json
from moderation._heads import head_message as head_message
from moderation.models import LogEntry, LogState, TreeHead

KEY_FILE = "log-signing-key.pem"
T = TypeVar("T")


def canonical_entry(entry: LogEntry) -> str:
    """The serialization that is hashed, recomputed from the entry's columns."""
    return canonical_values({name: getattr(entry, name) for name in CANONICAL_FIELDS})


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
        leaf = hex_bytes(stored)
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


# Rows are read this many at a time. A long log's rows go to worker processes in batches (a
# head's signature costs far more than the rest, then each entry's canonical text and leaf
# hash), while this process reads the next rows and rebuilds the tree from the leaf hashes
# that come back.
VERIFY_BATCH = 5000
SIGNATURE_CHUNK = 2500
PARALLEL_FROM = 10_000
# Entry batches sent off before the oldest one's leaves are awaited (bounds the rows held).
ENTRIES_AHEAD = 3

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
        # The ">=" lets the index start at the last row; without it every batch scanned the
        # index from the first row again.
        last, last_id = int(rows[-1][1]), int(rows[-1][0])
        after = f' WHERE "{order}" >= {last} AND ("{order}" > {last} OR "id" > {last_id})'


def _time_text(raw: Any, field: Any) -> str | None:
    """`timestamp` of a stored time, read as `check_entries` reads it or else by the ORM's own
    conversion (None when unreadable)."""
    text = stored_timestamp(raw)
    if text is not None:
        return text
    try:
        moment = field.to_python_value(raw)
    except Exception:
        return None
    return stored_timestamp(moment) if isinstance(moment, datetime) else None


def _worker_context() -> BaseContext:
    """Worker processes that start at once with what checking the log needs.

    A fork server imports the two light modules the checks live in once and forks each
    worker from itself, so the workers find them loaded. Where there is no fork server (not
    POSIX), spawn.
    """
    try:
        context = get_context("forkserver")
    except ValueError:
        return get_context("spawn")
    context.set_forkserver_preload(["moderation._heads", "moderation._entries"])
    return context


@contextmanager
def _main_module_not_needed() -> Iterator[None]:
    """Start worker processes without the program's main module.

    A new worker (and the fork server) imports the main module of the program that starts
    it, found by its path, unless the module names itself `__main__` (as `python -m` runs
    do). For `agora audit verify` that is the whole command line application, a third of a
    second of CPU spent while the log is being read, and the workers need none of it: they
    run functions of moderation._heads and moderation._entries.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    main.__spec__ = ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = None


class _Workers:
    """Batches checked here for a short log, on worker processes for a long one."""

    def __init__(self, parallel: bool) -> None:
        self.pool: ProcessPoolExecutor | None = None
        if parallel:
            workers = max(1, min(8, os.cpu_count() or 1))
            self.pool = ProcessPoolExecutor(workers, mp_context=_worker_context())
            with _main_module_not_needed():
                for _ in range(workers):  # start them now rather than at the first batch
                    self.pool.submit(os.getpid)

    def submit(self, work: Callable[..., T], *args: Any) -> _Job[T]:
        loop = asyncio.get_running_loop()
        if self.pool is None:
            done: asyncio.Future[T] = loop.create_future()
            done.set_result(work(*args))
            return _Job(done, work, args)
        return _Job(loop.run_in_executor(self.pool, work, *args), work, args)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


@dataclass(slots=True)
class _Job(Generic[T]):
    future: asyncio.Future[T]
    work: Callable[..., T]
    args: tuple[Any, ...]

    async def result(self) -> T:
        try:
            return await self.future
        except BrokenProcessPool:
            # Workers could not start (e.g. from a script without a __main__ guard): the same
            # check, here.
            return self.work(*self.args)


class _Tree:
    """The tree rebuilt leaf by leaf from the entries, checked at every signed head's size."""

    def __init__(self, heads: list[tuple[int, bytes | None]]) -> None:
        self.heads = heads  # (size, root) in size order
        self.compact = merkle.CompactRange()
        self.wrong_root: set[int] = set()
        self.no_such_size: set[int] = set()  # besides every head past the last entry
        self.next_head = 0
        while self.next_head < len(heads) and heads[self.next_head][0] <= 0:
            if heads[self.next_head][0] < 0:
                self.no_such_size.add(self.next_head)
            elif heads[self.next_head][1] != merkle.EMPTY_ROOT:
                self.wrong_root.add(self.next_head)
            self.next_head += 1

    @property
    def size(self) -> int:
        return self.compact.size

    def extend(self, leaves: bytes) -> None:
        heads, compact, next_head = self.heads, self.compact, self.next_head
        for start in range(0, len(leaves), merkle.HASH_SIZE):
            compact.append(leaves[start : start + merkle.HASH_SIZE])
            size = compact.size
            if next_head < len(heads) and heads[next_head][0] == size:
                root = compact.root()
                while next_head < len(heads) and heads[next_head][0] == size:
                    if heads[next_head][1] != root:
                        self.wrong_root.add(next_head)
                    next_head += 1
        self.next_head = next_head


async def verify_log(public_key: bytes | None = None) -> VerifyReport:
    """Recompute every entry hash, the tree, and every signed head from the stored rows."""
    own = _signer.public_key_bytes if _signer is not None else None
    key = public_key if public_key is not None else signer().public_key_bytes
    # Checking the site's own heads, the signing key makes the check cheaper (_heads.py).
    seed = _signer.private_key.private_bytes_raw() if _signer is not None and key == own else None
    # The workers start while the heads are read.
    workers = _Workers(parallel=await TreeHead.all().count() >= PARALLEL_FROM)
    try:
        stored_heads: list[StoredHead] = []
        async for rows in _rows(TreeHead._meta.db_table, _HEAD_COLUMNS):
            first = len(stored_heads)
            stored_heads.extend([(first + i, *row[1:]) for i, row in enumerate(rows)])
        return await _verify(stored_heads, _HeadChecks(key, seed, workers))
    finally:
        workers.close()


class _HeadChecks:
    """Head signatures checked in chunks, sent off in size order as the entries are read."""

    def __init__(self, key: bytes, seed: bytes | None, workers: _Workers) -> None:
        self.key, self.seed, self.workers = key, seed, workers
        self.jobs: list[_Job[tuple[list[int], list[int]]]] = []

    def send(self, heads: list[StoredHead]) -> None:
        for start in range(0, len(heads), SIGNATURE_CHUNK):
            chunk = heads[start : start + SIGNATURE_CHUNK]
            self.jobs.append(self.workers.submit(check_heads, self.key, chunk, self.seed))

    async def failed(self, stored_heads: list[StoredHead], unreadable: set[int]) -> set[int]:
        """The positions of every head whose signature does not verify; `unreadable` gains
        those whose signing time the ORM cannot read either."""
        bad: set[int] = set()
        late: list[HeadToCheck] = []
        signed_at_field = TreeHead._meta.fields_map["signed_at"]
        for job in self.jobs:
            failed, unread = await job.result()
            bad.update(failed)
            for position in unread:
                _, size, root_hex, raw_signed_at, signature_hex = stored_heads[position]
                signed_at = _time_text(raw_signed_at, signed_at_field)
                if signed_at is None:
                    unreadable.add(position)
                late.append(
                    (position, int(size), hex_bytes(root_hex), signed_at or "", signature_hex)
                )
        bad.update(bad_signatures(self.key, late, self.seed))
        return bad


def _fields_problem(row: tuple[Any, ...]) -> str | None:
    """The entry's fields compared with its canonical text, its time read by the ORM's rules
    (for a stored time `check_entries` could not read)."""
    fields = dict(zip(CANONICAL_FIELDS, row[1:-2], strict=True))
    fields["created_at"] = _time_text(fields["created_at"], LogEntry._meta.fields_map["created_at"])
    if fields["created_at"] is None or canonical_values(fields) != row[-2]:
        return f"entry {row[1]}: its fields no longer match what was hashed"
    return None


async def _verify(stored_heads: list[StoredHead], head_checks: _HeadChecks) -> VerifyReport:
    heads = [(int(size), hex_bytes(root_hex)) for _, size, root_hex, _, _ in stored_heads]
    unreadable = {position for position, (_, root) in enumerate(heads) if root is None}
    tree = _Tree(heads)
    problems: list[str] = []
    out_of_order = False
    pending: deque[tuple[list[tuple[Any, ...]], _Job[EntryChecks]]] = deque()

    async def fold_oldest() -> None:
        nonlocal out_of_order
        rows, job = pending.popleft()
        checks = await job.result()
        for index, problem in checks.problems:
            problem = problem if problem is not None else _fields_problem(rows[index])
            if problem is not None:
                problems.append(problem)
        out_of_order |= checks.out_of_order
        tree.extend(checks.leaves)

    read, previous_id, heads_sent = 0, None, 0
    async for rows in _rows(LogEntry._meta.db_table, ENTRY_COLUMNS):
        pending.append((rows, head_checks.workers.submit(check_entries, rows, read, previous_id)))
        read, previous_id = read + len(rows), rows[-1][0]
        # The heads these entries reach go off too, so the workers share out both kinds.
        reached = heads_sent
        while reached < len(heads) and heads[reached][0] <= read:
            reached += 1
        head_checks.send(stored_heads[heads_sent:reached])
        heads_sent = reached
        while len(pending) > ENTRIES_AHEAD:
            await fold_oldest()
    head_checks.send(stored_heads[heads_sent:])
    while pending:
        await fold_oldest()
    bad_heads = await head_checks.failed(stored_heads, unreadable)

    entries = tree.size
    if out_of_order:
        problems.append("entries were stored in a different order than their sequence numbers")
    for index, (size, _) in enumerate(heads):
        if index in bad_heads:
            problems.append(f"tree head at size {size}: signature does not verify")
        if index in unreadable:
            problems.append(f"tree head at size {size}: its root or signing time is unreadable")
        elif index >= tree.next_head or index in tree.no_such_size:
            problems.append(
                f"tree head at size {size}: the log has only {entries} entries "
                "(entries were deleted or the log was truncated)"
            )
        elif index in tree.wrong_root:
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
