"""An attacker with full database access rewrites the log; every rewrite is caught.

Each case builds a log through real acts, lets an outside reader save a signed head through the
public API, adds more acts, then plays the attacker: drops the append-only triggers (as anyone
with database access can) and edits, deletes, reorders, inserts, truncates or forges. Then

- `agora audit verify` (the real command, in its own process, and the function it calls)
  exits 1 and names the problem, and
- the standalone verifier, holding the head saved before the tampering, reports it.

Two more cases give the attacker the signing key as well: then the log and its heads can be
made consistent again and a fresh recomputation finds nothing, which is exactly why readers
keep earlier heads: with one, both checks still catch the rewrite.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from tortoise.connection import get_connection

from core.settings import Settings
from core.timeutil import utcnow
from moderation import cli, log, merkle, triggers
from moderation.models import LogEntry, LogState, TreeHead
from moderation.verify import verify_site
from tests.moderation.test_log import World, build_log, make_world

ROOT = Path(__file__).resolve().parents[2]
TARGET = 2  # the entry the attacker goes after; well inside the saved head


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


# --- the attacker's tools --------------------------------------------------------------


async def rehash(entry: LogEntry) -> None:
    """Store `entry`'s (changed) columns with a canonical text and leaf hash that match."""
    entry.canonical = log.canonical_entry(entry)
    entry.leaf_hash = log.entry_leaf_hash(entry.canonical).hex()
    await LogEntry.filter(id=entry.id).update(
        seq=entry.seq, reason=entry.reason, canonical=entry.canonical, leaf_hash=entry.leaf_hash
    )


async def resign_heads(sign: Callable[[bytes], bytes], key_id: str) -> None:
    """Replace every tree head by one over the entries as they are now, and fix the state."""
    canonicals = await LogEntry.all().order_by("seq").values_list("canonical", flat=True)
    await TreeHead.all().delete()
    compact = merkle.CompactRange()
    for text in canonicals:
        compact.append(log.entry_leaf_hash(text))  # type: ignore[arg-type]
        root = compact.root()
        now = utcnow()
        await TreeHead.create(
            size=compact.size,
            root_hex=root.hex(),
            signed_at=now,
            signature_hex=sign(log.head_message(compact.size, root, log.timestamp(now))).hex(),
            key_id=key_id,
        )
    await LogState.filter(id=1).update(size=compact.size, range_hex=compact.to_hex())


async def forged_entry(seq: int, like: LogEntry) -> None:
    entry = LogEntry(
        seq=seq,
        created_at=utcnow(),
        course_id=like.course_id,
        actor_id=like.actor_id,
        actor_role=like.actor_role,
        act="suspend_user",
        target_type="user",
        target_id=like.actor_id or 1,
        rule_code="R1",
        reason="Forged: this suspension never happened.",
        source="manual",
    )
    entry.canonical = log.canonical_entry(entry)
    entry.leaf_hash = log.entry_leaf_hash(entry.canonical).hex()
    await entry.save()


async def edit(size: int) -> None:
    await LogEntry.filter(seq=TARGET).update(reason="Nothing to see here, all fine.")


async def edit_and_rehash(size: int) -> None:
    entry = await LogEntry.get(seq=TARGET)
    entry.reason = "Nothing to see here, all fine."
    await rehash(entry)


async def delete(size: int) -> None:
    await LogEntry.filter(seq=TARGET).delete()


async def reorder(size: int) -> None:
    await LogEntry.filter(seq=TARGET).update(seq=-1)
    await LogEntry.filter(seq=TARGET + 1).update(seq=TARGET)
    await LogEntry.filter(seq=-1).update(seq=TARGET + 1)


async def insert_at_end(size: int) -> None:
    await forged_entry(size, await LogEntry.get(seq=size - 1))


async def insert_in_the_middle(size: int) -> None:
    for seq in range(size - 1, TARGET - 1, -1):
        await LogEntry.filter(seq=seq).update(seq=seq + 1)
    await forged_entry(TARGET, await LogEntry.get(seq=TARGET + 1))


async def truncate(size: int) -> None:
    keep = TARGET + 1  # fewer than the saved head covers
    await LogEntry.filter(seq__gte=keep).delete()
    await TreeHead.filter(size__gt=keep).delete()


async def forge_head(size: int) -> None:
    """Rewrite an entry consistently and sign new heads, with a key that is not the site's."""
    await edit_and_rehash(size)
    stolen_id = log.signer().key_id
    await resign_heads(Ed25519PrivateKey.generate().sign, stolen_id)


async def rehash_and_resign_with_the_real_key(size: int) -> None:
    await edit_and_rehash(size)
    await resign_heads(log.signer().sign, log.signer().key_id)


async def truncate_and_resign_with_the_real_key(size: int) -> None:
    await truncate(size)
    await resign_heads(log.signer().sign, log.signer().key_id)


@dataclass(frozen=True)
class Case:
    tamper: Callable[[int], Awaitable[None]]
    audit_says: str  # in what `agora audit verify` reports
    verifier_says: str  # in what the standalone verifier reports, given the saved head
    with_key: bool = False  # the attacker also holds the signing key

    def __str__(self) -> str:
        return self.tamper.__name__


CASES = [
    Case(edit, "no longer match what was hashed", "differ from what was hashed (reason)"),
    Case(edit_and_rehash, "no longer hash to the signed root", "do not hash to the signed root"),
    Case(delete, "sequence number", "sequence number"),
    Case(reorder, "different order", "was hashed as entry"),
    Case(insert_at_end, "latest signed head covers", "beyond the signed head"),
    Case(insert_in_the_middle, "no longer match what was hashed", "was hashed as entry"),
    Case(truncate, "running state counts", "the log shrank"),
    Case(forge_head, "signature does not verify", "signature of the head"),
    Case(
        rehash_and_resign_with_the_real_key,
        "no longer hash to the root of the head saved",
        "consistency proof from the saved head",
        with_key=True,
    ),
    Case(
        truncate_and_resign_with_the_real_key,
        "only 3 of them are stored",
        "the log shrank",
        with_key=True,
    ),
]


# --- running the checks ----------------------------------------------------------------


def command_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update(
        AGORA_DATA_DIR=str(settings.data_dir),
        AGORA_DATABASE_URL=settings.database_url,
        AGORA_SECRET_KEY=settings.secret_key,
        AGORA_DEMO="0",
    )
    return env


async def agora(settings: Settings, *args: str) -> tuple[int, str, str]:
    """Run the real `agora` command line against the test database, in its own process:
    exit status, standard output, standard error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from core.cli import main; main()",
        *args,
        cwd=ROOT,
        env=command_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def outside(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An outside reader: only the public HTTP API."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agora.test") as c:
        yield c


async def prepared_log(outside: httpx.AsyncClient) -> tuple[World, dict[str, Any], int]:
    world = await make_world(3)
    await build_log(world, 6)
    saved = (await outside.get("/api/v1/log/head")).json()
    await build_log(world, 3)
    size = await LogEntry.all().count()
    assert saved["size"] + 3 == size and saved["size"] > TARGET + 2
    return world, saved, size


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_tampering_is_caught(
    case: Case, settings: Settings, app: Starlette, outside: httpx.AsyncClient, tmp_path: Path
) -> None:
    _, saved, size = await prepared_log(outside)
    head_file = tmp_path / "saved-head.json"
    head_file.write_text(json.dumps(saved), encoding="utf-8")
    # Before: everything checks out, both ways.
    assert (await cli.audit_log(saved)).ok
    assert (await verify_site(outside, saved)).ok
    code, output, errors = await agora(settings, "audit", "verify", "--head", str(head_file))
    assert code == 0 and "OK: the moderation log is intact." in output, output + errors

    await triggers.remove(get_connection("default"))
    await case.tamper(size)

    fresh = await cli.audit_log()
    with_head = await cli.audit_log(saved)
    assert not with_head.ok
    assert any(case.audit_says in p for p in with_head.problems), with_head.problems
    args = ["audit", "verify", "--head", str(head_file)] if case.with_key else ["audit", "verify"]
    code, output, errors = await agora(settings, *args)
    assert code == 1, output + errors
    assert "TAMPERED" in output and case.audit_says in output, output
    if case.with_key:
        # With the key, the rewritten log is self-consistent: only a saved head shows it.
        assert fresh.ok, fresh.problems
        assert (await verify_site(outside, None)).ok
    else:
        assert not fresh.ok
        assert any(case.audit_says in p for p in fresh.problems), fresh.problems

    report = await verify_site(outside, saved)
    assert report.status == "tampered" and report.exit_code == 1, report.lines()
    assert any(case.verifier_says in p for p in report.problems), report.problems
    assert report.verdict().startswith("TAMPERED")


async def test_an_outside_check_without_a_saved_head_misses_a_clean_truncation(
    app: Starlette, outside: httpx.AsyncClient
) -> None:
    """Why heads are worth saving: cut entries and their heads, and the rest is consistent.

    The server's own check still notices through the log's running state.
    """
    _, saved, size = await prepared_log(outside)
    await triggers.remove(get_connection("default"))
    await truncate(size)
    assert not (await log.verify_log()).ok  # the running state still counts the lost entries
    assert (await verify_site(outside, None)).ok  # the site seen from outside looks whole
    report = await verify_site(outside, saved)
    assert not report.ok and any("the log shrank" in p for p in report.problems)
    assert not (await cli.audit_log()).ok  # the running state still counts the lost entries
