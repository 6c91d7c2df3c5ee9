"""`agora audit`: check the moderation log in the configured database, print the latest head.

`agora audit verify` recomputes every entry hash, the Merkle tree and every signed head from
the stored rows (moderation.log.verify_log), checks the log's running state against them,
and with `--head saved.json` checks that the stored log still extends a head saved earlier.
It exits 0 when everything holds and 1 on any problem, naming each.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from moderation import log, merkle

T = TypeVar("T")


def _run(work: Callable[[], Awaitable[T]]) -> T:
    """Open the configured database (and signing key) around `work`, as the other commands do."""
    from core import runtime
    from core.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None

    async def run() -> T:
        try:
            opened = await runtime.start(settings, queue=False)
        except OSError as exc:
            raise click.ClickException(f"cannot reach the database: {exc}") from None
        try:
            return await work()
        finally:
            await runtime.stop(opened)

    return asyncio.run(run())


def load_saved_head(text: str) -> dict[str, Any]:
    """A head saved from /api/v1/log/head or `agora audit head`; ValueError when malformed."""
    try:
        head = json.loads(text)
    except ValueError:
        raise ValueError("the saved head is not JSON") from None
    if not isinstance(head, dict):
        raise ValueError("the saved head is not a JSON object")
    for name, kind in (
        ("size", int),
        ("root", str),
        ("signed_at", str),
        ("signature", str),
        ("public_key", str),
    ):
        if not isinstance(head.get(name), kind) or isinstance(head.get(name), bool):
            raise ValueError(f"the saved head has no valid '{name}'")
    if head["size"] < 0:
        raise ValueError("the saved head has a negative size")
    for name in ("root", "signature", "public_key"):
        try:
            base64.b64decode(head[name], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"the saved head's '{name}' is not base64") from None
    return head


async def _saved_head_problems(saved: dict[str, Any], public_key: bytes) -> list[str]:
    """Does the stored log still extend the head saved earlier?"""
    size = saved["size"]
    root = base64.b64decode(saved["root"])
    signature = base64.b64decode(saved["signature"])
    saved_key = base64.b64decode(saved["public_key"])
    problems = []
    if saved_key != public_key:
        problems.append("the saved head was signed with a different key than this site's")
    if not log.verify_head_signature(saved_key, size, root, saved["signed_at"], signature):
        problems.append("the saved head's signature does not verify (it is not a real head)")
    from moderation.models import LogEntry

    canonicals = (
        await LogEntry.filter(seq__lt=size)
        .order_by("seq", "id")
        .values_list("canonical", flat=True)
    )
    if len(canonicals) < size:
        problems.append(
            f"the saved head covers {size} entries but only {len(canonicals)} of them are "
            "stored (the log was truncated or entries were deleted)"
        )
        return problems
    leaves = [log.entry_leaf_hash(text) for text in canonicals]  # type: ignore[arg-type]
    if merkle.root_from_leaf_hashes(leaves) != root:
        problems.append(
            f"the first {size} stored entries no longer hash to the root of the head saved at "
            f"size {size} (entries were changed, replaced, reordered or removed since)"
        )
    return problems


async def audit_log(saved_head: dict[str, Any] | None = None) -> log.VerifyReport:
    """Everything `agora audit verify` checks; the report lists each problem found."""
    report = await log.verify_log()
    if saved_head is not None:
        report.problems.extend(
            await _saved_head_problems(saved_head, log.signer().public_key_bytes)
        )
    return report


def describe(report: log.VerifyReport) -> list[str]:
    """What the command prints for a report."""
    lines = [f"entries: {report.entries}", f"signed tree heads: {report.heads}"]
    if report.ok:
        lines.append("OK: the moderation log is intact.")
    else:
        lines.append(f"TAMPERED: {len(report.problems)} problem(s) found:")
        lines.extend(f"  - {problem}" for problem in report.problems)
    return lines


@click.group()
def audit() -> None:
    """Check the tamper-evident moderation log."""


@audit.command("verify")
@click.option(
    "--head",
    "head_file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="A head saved earlier (agora audit head > file): the log must extend it.",
)
def verify_command(head_file: Any) -> None:
    """Recompute the whole log from the database; exit 1 on any problem."""
    saved = None
    if head_file is not None:
        try:
            saved = load_saved_head(head_file.read())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--head") from None
    report = _run(lambda: audit_log(saved))
    for line in describe(report):
        click.echo(line)
    if not report.ok:
        sys.exit(1)


@audit.command("head")
def head_command() -> None:
    """Print the latest signed tree head as JSON (save it to check the log against later)."""

    async def work() -> dict[str, Any] | None:
        head = await log.latest_head()
        return log.head_json(head) if head is not None else None

    head = _run(work)
    if head is None:
        raise click.ClickException("the moderation log is empty: no head has been signed yet")
    click.echo(json.dumps(head, indent=2, sort_keys=True))
