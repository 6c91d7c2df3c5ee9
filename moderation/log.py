"""The tamper-evident moderation log: canonical entries, Merkle appends, signed tree heads.

Each entry's public fields are serialized canonically (ids, never names) and hashed as a leaf
of an RFC 9162 Merkle tree. Appends take a row lock on `LogState`, so concurrent requests and
workers extend one tree in one order. Every append stores an Ed25519-signed tree head; anyone
who saved an earlier head can ask for a consistency proof, and `verify_log` recomputes all
of it from the stored rows.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.timeutil import utcnow
from moderation import merkle
from moderation.models import LogEntry, LogState, TreeHead

FORMAT_VERSION = 1
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
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_entry(entry: LogEntry) -> str:
    """The serialization that is hashed, recomputed from the entry's columns."""
    values: dict[str, Any] = {"v": FORMAT_VERSION}
    for name in CANONICAL_FIELDS:
        value = getattr(entry, name)
        values[name] = timestamp(value) if isinstance(value, datetime) else value
    return canonical_json(values)


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


def head_message(size: int, root: bytes, signed_at: str) -> bytes:
    """The bytes a tree head signature covers."""
    return canonical_json(
        {
            "log": "agora-moderation",
            "root": base64.b64encode(root).decode(),
            "signed_at": signed_at,
            "size": size,
            "v": FORMAT_VERSION,
        }
    ).encode()


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
    return [bytes.fromhex(h) for h in await query.values_list("leaf_hash", flat=True)]


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


# --- verification ----------------------------------------------------------------------


@dataclass(slots=True)
class VerifyReport:
    entries: int
    heads: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_log(public_key: bytes | None = None) -> VerifyReport:
    """Recompute every entry hash, the tree, and every signed head from the stored rows."""
    problems: list[str] = []
    key = public_key if public_key is not None else signer().public_key_bytes
    entries = await LogEntry.all().order_by("seq", "id")
    leaves: list[bytes] = []
    for position, entry in enumerate(entries):
        if entry.seq != position:
            problems.append(
                f"entry id {entry.id}: sequence number {entry.seq} where {position} was expected "
                "(an entry was deleted, inserted or reordered)"
            )
        recomputed = canonical_entry(entry)
        if recomputed != entry.canonical:
            problems.append(f"entry {entry.seq}: its fields no longer match what was hashed")
        leaf = entry_leaf_hash(entry.canonical)
        if leaf.hex() != entry.leaf_hash:
            problems.append(f"entry {entry.seq}: stored leaf hash does not match its content")
        leaves.append(leaf)
    ids_in_seq_order = [e.id for e in entries]
    if ids_in_seq_order != sorted(ids_in_seq_order):
        problems.append("entries were stored in a different order than their sequence numbers")

    heads = await TreeHead.all().order_by("size")
    compact = merkle.CompactRange()
    roots_by_size: dict[int, bytes] = {0: merkle.EMPTY_ROOT}
    for leaf in leaves:
        compact.append(leaf)
        roots_by_size[compact.size] = compact.root()
    for head in heads:
        root = bytes.fromhex(head.root_hex)
        if not verify_head_signature(
            key, head.size, root, timestamp(head.signed_at), bytes.fromhex(head.signature_hex)
        ):
            problems.append(f"tree head at size {head.size}: signature does not verify")
        if head.size not in roots_by_size:
            problems.append(
                f"tree head at size {head.size}: the log has only {len(leaves)} entries "
                "(entries were deleted or the log was truncated)"
            )
        elif roots_by_size[head.size] != root:
            problems.append(
                f"tree head at size {head.size}: the entries no longer hash to the signed root"
            )
    if heads and heads[-1].size != len(leaves):
        problems.append(
            f"the latest signed head covers {heads[-1].size} entries but {len(leaves)} are stored"
        )
    if leaves and not heads:
        problems.append("entries exist but no signed tree head does")
    problems.extend(await state_problems(len(leaves)))
    return VerifyReport(entries=len(leaves), heads=len(heads), problems=problems)


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
