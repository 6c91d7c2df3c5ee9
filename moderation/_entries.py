"""Canonical log entries and their checks, light enough to import in worker processes.

`moderation.log` re-exports the serialization; `verify_log` sends batches of stored entry rows
to `check_entries`, and of stored heads to `check_heads`, on other processes when a log is
long. Both take rows exactly as the database driver returns them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moderation import merkle
from moderation._heads import FORMAT_VERSION, HeadToCheck, bad_signatures, canonical_json

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

# A stored entry row: id, the CANONICAL_FIELDS, the canonical text, the leaf hash (hex).
ENTRY_COLUMNS = ("id", *CANONICAL_FIELDS, "canonical", "leaf_hash")
# A stored head row, with its position among the heads first: position, size, root_hex,
# signed_at, signature_hex.
StoredHead = tuple[int, int, Any, Any, Any]


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


def entry_leaf_hash(canonical: str) -> bytes:
    return merkle.leaf_hash(canonical.encode("utf-8"))


def stored_timestamp(raw: Any) -> str | None:
    """`timestamp` of a stored moment, or None when it is not one read here.

    PostgreSQL's driver gives a datetime; SQLite gives the text the ORM wrote, ISO 8601 with
    a space, microseconds and "+00:00", which is reshaped without building a datetime (once it
    is known to be a valid one). None sends the value to the ORM's own conversion instead.
    """
    if isinstance(raw, datetime):
        moment = raw
    elif not isinstance(raw, str):
        return None
    else:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            return None
        if _utc_text_shaped(raw):
            return f"{raw[:10]}T{raw[11:26]}Z"
    try:
        return timestamp(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))
    except OverflowError:  # a time near year 1 or 9999 whose UTC falls outside
        return None


def _utc_text_shaped(raw: str) -> bool:
    """Valid ISO text shaped 2026-11-22 15:20:18.123456+00:00, which says its own UTC text."""
    return (
        len(raw) == 32
        and raw[26:] == "+00:00"
        and raw[0] != "0"
        and raw[4] == raw[7] == "-"
        and raw[10] in " T"
        and raw[13] == raw[16] == ":"
        and raw[19] == "."
    )


def hex_bytes(value: Any) -> bytes | None:
    """Stored hex as bytes, or None when it is not hex."""
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        return None


@dataclass(slots=True)
class EntryChecks:
    """What `check_entries` found in a batch of rows."""

    leaves: bytes  # each row's leaf hash, from its stored canonical text, one after another
    # (row, problem) in row order; a None problem: the row's created_at could not be read here,
    # so its fields are left to the caller to compare.
    problems: list[tuple[int, str | None]]
    out_of_order: bool  # an id smaller than the one before it


def check_entries(
    rows: list[tuple[Any, ...]], first_seq: int, previous_id: int | None
) -> EntryChecks:
    """Check a batch of stored entry rows (ENTRY_COLUMNS) that should start at `first_seq`."""
    leaves: list[bytes] = []
    problems: list[tuple[int, str | None]] = []
    out_of_order = False
    expected = first_seq
    for index, row in enumerate(rows):
        entry_id, seq, stored, stored_leaf = row[0], row[1], row[-2], row[-1]
        if seq != expected:
            problems.append(
                (
                    index,
                    f"entry id {entry_id}: sequence number {seq} where {expected} was expected "
                    "(an entry was deleted, inserted or reordered)",
                )
            )
        if previous_id is not None and entry_id < previous_id:
            out_of_order = True
        previous_id = entry_id
        created_at = stored_timestamp(row[2])
        if created_at is None:
            problems.append((index, None))
        else:
            # canonical_values, for a row whose one time is already text.
            values = dict(zip(CANONICAL_FIELDS, row[1:-2], strict=True))
            values["created_at"], values["v"] = created_at, FORMAT_VERSION
            if canonical_json(values) != stored:
                problems.append((index, f"entry {seq}: its fields no longer match what was hashed"))
        leaf = entry_leaf_hash(stored)
        if leaf.hex() != stored_leaf:
            problems.append((index, f"entry {seq}: stored leaf hash does not match its content"))
        leaves.append(leaf)
        expected += 1
    return EntryChecks(b"".join(leaves), problems, out_of_order)


def check_heads(
    public_key: bytes, rows: list[StoredHead], seed: bytes | None = None
) -> tuple[list[int], list[int]]:
    """The positions of the heads whose signature does not verify, and of those whose signing
    time could not be read here (their signature is left to the caller)."""
    heads: list[HeadToCheck] = []
    unread: list[int] = []
    for position, size, root_hex, raw_signed_at, signature_hex in rows:
        signed_at = stored_timestamp(raw_signed_at)
        if signed_at is None:
            unread.append(position)
            continue
        heads.append((position, int(size), hex_bytes(root_hex), signed_at, signature_hex))
    return bad_signatures(public_key, heads, seed), unread
