"""A learner's data export: every package contributes sections to one ZIP.

Each module named in SECTION_MODULES has `async def sections(ctx: ExportContext) -> dict`
returning top-level keys of export.json. Other people appear only as ctx.pseudonym(id).

`request_export` queues one; the outbox handler "core.export" builds it under
`<data_dir>/exports/` with progress on the DataExport row, and tells the learner when it is
ready. `write_archive` is the one code path that builds the ZIP (the handler and
`agora users export` both use it); docs/export.md describes what it holds.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import math
import os
import secrets
import zipfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from tortoise.transactions import in_transaction

from core import jobs
from core.errors import PermissionDenied, RateLimited
from core.models import DataExport, ExportStatus, OutboxEvent, User
from core.settings import Settings
from core.timeutil import utcnow

log = logging.getLogger("agora.export")

SCHEMA_VERSION = 1

SECTION_MODULES: tuple[str, ...] = (
    "core.export_sections",
    "forum.export",
    "moderation.export",
    "peer_review.export",
)

# What the progress stage says while a module's sections are collected.
SECTION_LABELS: dict[str, str] = {
    "core.export_sections": "your account, courses and notifications",
    "forum.export": "your forum posts and their history",
    "moderation.export": "moderation records and their proofs",
    "peer_review.export": "peer review: submissions, reviews and grades",
}

EXPORTS_PER_DAY = 3
# An export still queued or running after this long is taken as lost and no longer blocks.
STALE_AFTER = timedelta(hours=6)
IN_FLIGHT = (ExportStatus.QUEUED, ExportStatus.RUNNING)
SCHEMA_DOC = "docs/export.md"

Progress = Callable[[int, str], Awaitable[None]]


def _current_settings() -> Settings:
    from core import runtime

    return runtime.settings()


@dataclass
class ExportContext:
    """What a section needs: the person exported and stable pseudonyms for everyone else."""

    user: User
    settings: Settings = field(default_factory=_current_settings)
    # The DataExport row being built, when the export runs as a job (None from the CLI).
    export_id: int | None = None
    generated_at: datetime = field(default_factory=utcnow)
    _pseudonyms: dict[int, str] = field(default_factory=dict)

    def pseudonym(self, user_id: int | None) -> str:
        """Return "you", "system" (None) or "Person N", stable within one export."""
        if user_id is None:
            return "system"
        if user_id == self.user.id:
            return "you"
        if user_id not in self._pseudonyms:
            self._pseudonyms[user_id] = f"Person {len(self._pseudonyms) + 1}"
        return self._pseudonyms[user_id]

    @staticmethod
    def ts(value: datetime | None) -> str | None:
        """A time as ISO 8601 UTC to the microsecond ("2026-11-22T15:20:18.123456Z"), or None."""
        return iso_utc(value)


def iso_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plain_json(value: Any) -> Any:
    """`value` with only JSON types left: times as ISO 8601 UTC, no NaN or infinity."""
    if value is None or isinstance(value, bool | int | str):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return plain_json(value.value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return plain_json(float(value))
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(key): plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [plain_json(item) for item in items]
    raise TypeError(f"cannot put a {type(value).__name__} into export.json")


# --- building the archive --------------------------------------------------------------


async def collect(ctx: ExportContext, on_progress: Progress | None = None) -> dict[str, Any]:
    """Every section of export.json for ctx.user, in SECTION_MODULES order."""
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": ctx.ts(ctx.generated_at),
        "user_id": ctx.user.id,
    }
    steps = len(SECTION_MODULES) + 1
    for index, name in enumerate(SECTION_MODULES):
        if on_progress is not None:
            label = SECTION_LABELS.get(name, name)
            await on_progress(index * 100 // steps, f"Collecting {label}")
        module = importlib.import_module(name)
        part = plain_json(await module.sections(ctx))
        clash = sorted(set(part) & set(data))
        if clash:
            raise RuntimeError(f"{name} returns keys another section has: {clash}")
        data.update(part)
    return data


def readme_text(data: Mapping[str, Any], base_url: str) -> str:
    keys = "\n".join(f"  - {key}" for key in data)
    return f"""Your data from Agora ({base_url})
Generated {data["generated_at"]} for account #{data["user_id"]}.

This archive holds:
  export.json   everything Agora holds or has computed about you, as JSON
  summary.html  the same, as a page to read in any browser (it loads nothing from the network)
  README.txt    this file

export.json follows schema version {data["schema_version"]}, described key by key in
{SCHEMA_DOC} of Agora's source code. Its top-level keys are:
{keys}

Other people never appear by name, username or email. Each is a pseudonym such as
"Person 3", the same person every time within this archive (and only within it); "you" is you
and "system" is Agora's automatic rules. Authors of anonymous posts stay anonymous.

The moderation section includes, for every log entry that concerns you, an inclusion proof
against one signed tree head of the public moderation log, so you can check offline that the
entry is in the log everyone else sees; {SCHEMA_DOC} explains how.
"""


def _write_zip(target: Path, files: Mapping[str, str], when: datetime) -> int:
    """Write the ZIP next to its final name, then move it into place; returns its size."""
    partial = target.with_name(f".{target.name}.part")
    stamp = when.astimezone(UTC).timetuple()[:6]
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, text in files.items():
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o600 << 16
                archive.writestr(info, text.encode("utf-8"))
        os.chmod(partial, 0o600)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target.stat().st_size


async def write_archive(
    user: User,
    target: Path,
    *,
    settings: Settings | None = None,
    export_id: int | None = None,
    on_progress: Progress | None = None,
) -> int:
    """Build the export ZIP of `user` at `target`; returns its size in bytes."""
    from core.export_summary import render_summary

    ctx = ExportContext(user=user, settings=settings or _current_settings(), export_id=export_id)
    data = await collect(ctx, on_progress)
    if on_progress is not None:
        steps = len(SECTION_MODULES) + 1
        await on_progress((steps - 1) * 100 // steps, "Writing the ZIP file")
    files = {
        "export.json": json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        "summary.html": render_summary(data, user),
        "README.txt": readme_text(data, ctx.settings.base_url),
    }
    return await asyncio.to_thread(_write_zip, target, files, ctx.generated_at)


def exports_dir(settings: Settings) -> Path:
    folder = settings.data_dir / "exports"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def file_of(export: DataExport, settings: Settings) -> Path | None:
    """The export's ZIP on disk, if it has one."""
    name = export.file_name
    if not name or Path(name).name != name or name.startswith("."):
        return None
    path = exports_dir(settings) / name
    return path if path.is_file() else None


def download_name(user: User, export: DataExport) -> str:
    when = export.finished_at or export.created_at
    return f"agora-export-{user.username}-{when.astimezone(UTC):%Y%m%d-%H%M}.zip"


# --- the action --------------------------------------------------------------------------


async def current_export(user: User) -> DataExport | None:
    """The user's export that is queued or running, if any."""
    return await DataExport.filter(user_id=user.id, status__in=IN_FLIGHT).order_by("-id").first()


async def request_export(user: User, *, acting_user: User | None) -> DataExport:
    """Ask for a copy of the user's data; while one is being built, that one is returned."""
    if acting_user is not None and acting_user.id != user.id:
        raise PermissionDenied("You can only ask for a copy of your own data.")
    now = utcnow()
    async with in_transaction():
        # One request at a time per person (PostgreSQL; SQLite writes one at a time anyway).
        await User.select_for_update().filter(id=user.id).first()
        current = await current_export(user)
        if current is not None:
            if now - current.created_at < STALE_AFTER:
                return current
            await DataExport.filter(id=current.id, status__in=IN_FLIGHT).update(
                status=ExportStatus.FAILED,
                stage="Failed",
                error="This export took too long and was given up; ask for a new one.",
                finished_at=now,
            )
        recent = (
            await DataExport.filter(user_id=user.id, created_at__gte=now - timedelta(days=1))
            .exclude(status=ExportStatus.FAILED)
            .order_by("created_at")
        )
        if len(recent) >= EXPORTS_PER_DAY:
            next_at = recent[0].created_at + timedelta(days=1)
            raise RateLimited(
                f"You can ask for {EXPORTS_PER_DAY} exports a day. You can ask for the next one "
                f"after {next_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC; the exports you already "
                "have are listed below.",
                retry_after=max(1, math.ceil((next_at - now).total_seconds())),
            )
        export = await DataExport.create(user=user, stage="Waiting to start")
        await jobs.enqueue("core.export", {"export_id": export.id})
    await jobs.wake()
    return export


# --- the job -----------------------------------------------------------------------------


# Exports being built by this process. The worker's sweep may hand over an event whose job is
# still running; that delivery waits for the build instead of starting a second one.
_building: dict[int, asyncio.Event] = {}


async def build_export(event: OutboxEvent) -> None:
    """Build the export named by the event, once: a finished or failed one is left alone."""
    export_id = int(event.payload["export_id"])
    while (running := _building.get(export_id)) is not None:
        await running.wait()
    done = _building[export_id] = asyncio.Event()
    try:
        await _build(export_id)
    finally:
        del _building[export_id]
        done.set()


async def _build(export_id: int) -> None:
    claimed = await DataExport.filter(id=export_id, status__in=IN_FLIGHT).update(
        status=ExportStatus.RUNNING, progress=0, stage="Starting", error=""
    )
    if not claimed:
        return
    export = await DataExport.get(id=export_id).select_related("user")
    settings = _current_settings()
    name = f"{secrets.token_urlsafe(32)}.zip"
    target = exports_dir(settings) / name

    async def progress(percent: int, stage: str) -> None:
        await DataExport.filter(id=export_id, status=ExportStatus.RUNNING).update(
            progress=percent, stage=stage[:120]
        )

    try:
        size = await write_archive(
            export.user, target, settings=settings, export_id=export_id, on_progress=progress
        )
    except Exception as exc:
        log.exception("data export %s failed", export_id)
        target.unlink(missing_ok=True)
        await DataExport.filter(id=export_id, status=ExportStatus.RUNNING).update(
            status=ExportStatus.FAILED,
            stage="Failed",
            error="The export could not be built because of an error on our side "
            f"({type(exc).__name__}); it has been logged. Please ask for a new one.",
            finished_at=utcnow(),
        )
        return
    now = utcnow()
    expires_at = now + timedelta(hours=settings.export_hours)
    async with in_transaction():
        finished = await DataExport.filter(id=export_id, status=ExportStatus.RUNNING).update(
            status=ExportStatus.READY,
            progress=100,
            stage="Ready to download",
            file_name=name,
            size_bytes=size,
            finished_at=now,
            expires_at=expires_at,
        )
        if finished:
            await jobs.enqueue(
                "core.notify",
                {
                    "user_id": export.user.id,
                    "kind": "core.export_ready",
                    "message": "Your data export is ready. You can download it until "
                    f"{expires_at:%Y-%m-%d %H:%M} UTC.",
                    "link": "/me/export",
                },
            )
    if not finished:
        # Another delivery of the same event finished first: keep its file, not this one.
        target.unlink(missing_ok=True)
        return
    await jobs.wake()


async def purge_expired(now: datetime | None = None) -> int:
    """Delete the files of exports whose link has expired; returns how many were deleted."""
    now = now or utcnow()
    settings = _current_settings()
    expired = await DataExport.filter(status=ExportStatus.READY, expires_at__lte=now).exclude(
        file_name=""
    )
    purged = 0
    for export in expired:
        path = file_of(export, settings)
        if path is not None:
            path.unlink(missing_ok=True)
        purged += await DataExport.filter(id=export.id, file_name=export.file_name).update(
            file_name="", stage="Expired: the file was deleted"
        )
    return purged


HANDLERS: dict[str, Any] = {"core.export": build_export}
