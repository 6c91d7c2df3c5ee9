"""`verify_log` reads a long log in batches and checks its signatures on worker processes.

Here the batches and the parallel threshold are made tiny, so a log of a dozen entries takes
every path a log of 100,000 takes: the tampering of test_tamper.py is still caught when it
sits on a batch boundary or in a chunk of heads checked by another process.
"""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tortoise.connection import get_connection

from core.settings import Settings
from moderation import log, triggers
from moderation.models import LogEntry, TreeHead
from tests.moderation.test_log import build_log, make_world
from tests.moderation.test_tamper import CASES, Case

pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@pytest.fixture
def tiny_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "VERIFY_BATCH", 2)
    monkeypatch.setattr(log, "SIGNATURE_CHUNK", 3)
    monkeypatch.setattr(log, "PARALLEL_FROM", 4)


async def test_an_intact_log_read_in_batches_verifies(db: Settings, tiny_batches: None) -> None:
    await build_log(await make_world(), 9)
    report = await log.verify_log()
    assert report.ok, report.problems
    assert report.entries == report.heads == await LogEntry.all().count() > 9


@pytest.mark.parametrize("case", [c for c in CASES if not c.with_key], ids=str)
async def test_tampering_is_caught_in_batches(db: Settings, tiny_batches: None, case: Case) -> None:
    await build_log(await make_world(3), 9)
    size = await LogEntry.all().count()
    await triggers.remove(get_connection("default"))
    await case.tamper(size)
    report = await log.verify_log()
    assert not report.ok
    assert any(case.audit_says in p for p in report.problems), report.problems


async def test_each_bad_signature_is_named_once_whichever_process_checked_it(
    db: Settings, tiny_batches: None
) -> None:
    await build_log(await make_world(), 9)
    await triggers.remove(get_connection("default"))
    forged = Ed25519PrivateKey.generate().sign(b"not the head").hex()
    await TreeHead.filter(size__in=[2, 7, 9]).update(signature_hex=forged)
    await TreeHead.filter(size=5).update(signature_hex="not hex at all")
    report = await log.verify_log()
    assert [p for p in report.problems if "signature" in p] == [
        f"tree head at size {size}: signature does not verify" for size in (2, 5, 7, 9)
    ]


async def test_an_unreadable_head_is_reported_not_a_crash(db: Settings, tiny_batches: None) -> None:
    await build_log(await make_world(), 6)
    await triggers.remove(get_connection("default"))
    await TreeHead.filter(size=3).update(root_hex="zz" * 32)
    report = await log.verify_log()
    assert "tree head at size 3: its root or signing time is unreadable" in report.problems
    assert "tree head at size 3: signature does not verify" in report.problems


def test_own_heads_are_checked_the_same_with_the_signing_key() -> None:
    """The site checking its own heads re-signs them instead of verifying: same answers."""
    from nacl.signing import SigningKey

    from moderation._heads import bad_signatures, head_message

    key, other = SigningKey.generate(), SigningKey.generate()
    public = bytes(key.verify_key)
    root = bytes(32)
    heads = []
    for size in range(1, 7):
        signature = key.sign(head_message(size, root, "2026-11-22T10:00:00.000000Z")).signature
        heads.append((size - 1, size, root, "2026-11-22T10:00:00.000000Z", signature.hex()))
    # Damaged: a flipped bit, a signature of another message, another key's, unreadable.
    heads[1] = (*heads[1][:4], heads[1][4][:-2] + "00")
    heads[2] = (*heads[2][:3], "2026-11-22T10:00:01.000000Z", heads[2][4])
    heads[3] = (*heads[3][:4], other.sign(head_message(4, root, heads[3][3])).signature.hex())
    heads[4] = (*heads[4][:4], "zz")
    expected = [1, 2, 3, 4]
    assert bad_signatures(public, heads) == expected
    assert bad_signatures(public, heads, bytes(key)) == expected
    # A seed that is not this public key's is not used for the shortcut.
    assert bad_signatures(public, heads, bytes(other)) == expected


async def _store_raw(table: str, column: str, key: str, value: int, raw: object) -> None:
    await get_connection("default").execute_query(
        f'UPDATE "{table}" SET "{column}" = ? WHERE "{key}" = ?', [raw, value]
    )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # PostgreSQL keeps timestamptz
async def test_times_stored_in_other_forms_are_read_as_the_orm_reads_them(
    db: Settings, tiny_batches: None
) -> None:
    await build_log(await make_world(), 9)
    await triggers.remove(get_connection("default"))
    entry = await LogEntry.get(seq=3)
    head = await TreeHead.get(size=4)
    # The same moments, written differently: another offset; an ISO basic form.
    shifted = entry.created_at.astimezone(timezone(timedelta(hours=5)))
    await _store_raw("agora_log_entry", "created_at", "seq", 3, shifted.isoformat(" "))
    basic = head.signed_at.strftime("%Y%m%dT%H%M%S.%f+0000")
    await _store_raw("agora_tree_head", "signed_at", "size", 4, basic)
    assert (await log.verify_log()).ok
    # Whole seconds since 1970, which only the ORM reads: another moment, so it is caught.
    await _store_raw("agora_log_entry", "created_at", "seq", 5, 1_700_000_000)
    await _store_raw("agora_tree_head", "signed_at", "size", 6, 1_700_000_000)
    await _store_raw("agora_tree_head", "signed_at", "size", 7, "not a time")
    report = await log.verify_log()
    assert report.problems == [
        "entry 5: its fields no longer match what was hashed",
        "tree head at size 6: signature does not verify",
        "tree head at size 7: signature does not verify",
        "tree head at size 7: its root or signing time is unreadable",
    ]
