"""Submission attachments: type by content, limits, storage under the data folder, downloads.

The type of a file is what its first bytes say (PDF, PNG, JPEG, ZIP), never its name or the
browser's Content-Type. Files are stored under `<data dir>/uploads/peer_review/` with random
names, so a learner's file name never reaches the file system, and are served only as
downloads with a content type Agora chose.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import unicodedata
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_FILE_BYTES",
    "MAX_TOTAL_BYTES",
    "AttachmentKind",
    "Stored",
    "Upload",
    "check_uploads",
    "detect_kind",
    "download_headers",
    "remove",
    "safe_filename",
    "storage_path",
    "store",
]

MAX_ATTACHMENTS = 5
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 25 * 1024 * 1024
FILENAME_MAX = 100
UPLOAD_FOLDER = Path("uploads") / "peer_review"
_STORAGE_NAME = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}$")


class AttachmentKind(StrEnum):
    PDF = "pdf"
    PNG = "png"
    JPEG = "jpeg"
    ZIP = "zip"

    @property
    def content_type(self) -> str:
        return {
            AttachmentKind.PDF: "application/pdf",
            AttachmentKind.PNG: "image/png",
            AttachmentKind.JPEG: "image/jpeg",
            AttachmentKind.ZIP: "application/zip",
        }[self]

    @property
    def extension(self) -> str:
        return {"jpeg": "jpg"}.get(self.value, self.value)


def detect_kind(data: bytes) -> AttachmentKind | None:
    """The kind of file these bytes are, by their signature; None for anything else."""
    if data.startswith(b"%PDF-"):
        return AttachmentKind.PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return AttachmentKind.PNG
    if data.startswith(b"\xff\xd8\xff"):
        return AttachmentKind.JPEG
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        # A real archive also has a readable central directory at its end.
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError):
            return None
        return AttachmentKind.ZIP
    return None


def safe_filename(name: str, kind: AttachmentKind) -> str:
    """A display name: no folders, no control or quote characters, the true extension."""
    base = unicodedata.normalize("NFC", name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] not in {"C", "Z"} or ch == " ")
    base = re.sub(r'["<>:|?*;]+', "_", base).strip(" .")
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = stem.strip(" .")[: FILENAME_MAX - 5] or "attachment"
    return f"{stem}.{kind.extension}"


@dataclass(frozen=True, slots=True)
class Upload:
    """A file as the form sent it."""

    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Checked:
    filename: str
    kind: AttachmentKind
    data: bytes


def check_uploads(uploads: Sequence[Upload]) -> tuple[list[Checked], dict[str, str]]:
    """Accepted files, and problems keyed `attachments` or `attachments.<i>`."""
    errors: dict[str, str] = {}
    files = [u for u in uploads if u.data or u.filename]
    if len(files) > MAX_ATTACHMENTS:
        errors["attachments"] = f"Attach at most {MAX_ATTACHMENTS} files; you chose {len(files)}."
        return [], errors
    total = sum(len(u.data) for u in files)
    if total > MAX_TOTAL_BYTES:
        errors["attachments"] = (
            f"Attachments can total at most {MAX_TOTAL_BYTES // (1024 * 1024)} MB together."
        )
    checked: list[Checked] = []
    for i, upload in enumerate(files):
        label = upload.filename or f"File {i + 1}"
        if not upload.data:
            errors[f"attachments.{i}"] = f"“{label}” is empty."
            continue
        if len(upload.data) > MAX_FILE_BYTES:
            errors[f"attachments.{i}"] = (
                f"“{label}” is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB."
            )
            continue
        kind = detect_kind(upload.data)
        if kind is None:
            errors[f"attachments.{i}"] = (
                f"“{label}” is not a PDF, PNG, JPEG or ZIP file (judged by its content, "
                "not its name)."
            )
            continue
        checked.append(Checked(safe_filename(upload.filename, kind), kind, upload.data))
    return checked, errors


@dataclass(frozen=True, slots=True)
class Stored:
    storage_name: str
    sha256: str
    size: int


def storage_path(data_dir: Path, storage_name: str) -> Path:
    """Where a stored attachment lives; refuses any name `store` could not have made."""
    if not _STORAGE_NAME.fullmatch(storage_name):
        raise ValueError(f"not an attachment storage name: {storage_name!r}")
    return data_dir / UPLOAD_FOLDER / storage_name


def store(data_dir: Path, data: bytes) -> Stored:
    """Write the bytes under a new random name (readable by the owner only)."""
    token = secrets.token_hex(16)
    storage_name = f"{token[:2]}/{token}"
    path = storage_path(data_dir, storage_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return Stored(storage_name, hashlib.sha256(data).hexdigest(), len(data))


def remove(data_dir: Path, storage_name: str) -> None:
    try:
        storage_path(data_dir, storage_name).unlink()
    except FileNotFoundError:
        pass


def download_headers(filename: str, kind: AttachmentKind | str, size: int) -> Mapping[str, str]:
    """Headers that make a browser save the file rather than render it in Agora's origin."""
    kind = AttachmentKind(kind)
    ascii_name = (
        unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode() or "attachment"
    )
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]+", "_", ascii_name)
    return {
        "Content-Type": kind.content_type,
        "Content-Length": str(size),
        "Content-Disposition": (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-store",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
