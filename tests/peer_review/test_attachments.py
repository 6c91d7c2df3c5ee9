"""peer_review.attachments: type by content, limits, storage names, download headers; and
submissions that carry files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from core import runtime
from core.errors import InvalidInput, NotFound
from peer_review import actions
from peer_review.attachments import (
    MAX_ATTACHMENTS,
    MAX_FILE_BYTES,
    AttachmentKind,
    Upload,
    check_uploads,
    detect_kind,
    download_headers,
    safe_filename,
    storage_path,
    store,
)
from peer_review.models import Attachment, Submission
from peer_review.queries import open_attachment
from tests.peer_review.factories import Cast, Clock, essay, make_assignment

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"


def a_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return buffer.getvalue()


def test_kind_comes_from_the_content_never_the_name() -> None:
    assert detect_kind(PDF) == AttachmentKind.PDF
    assert detect_kind(PNG) == AttachmentKind.PNG
    assert detect_kind(JPEG) == AttachmentKind.JPEG
    assert detect_kind(a_zip()) == AttachmentKind.ZIP
    for data in (
        b"<html><script>alert(1)</script>",
        b"MZ\x90\x00",
        b"PK\x03\x04broken",
        b"",
        b"GIF89a",
        b"\x89PNG\r\n\x1a\n-no-header-",
    ):
        assert detect_kind(data) is None, data
    files, errors = check_uploads([Upload("essay.pdf", b"<svg onload=alert(1)>")])
    assert files == [] and "not a PDF, PNG, JPEG or ZIP" in errors["attachments.0"]
    files, errors = check_uploads([Upload("picture.pdf", PNG)])
    assert errors == {} and files[0].kind == AttachmentKind.PNG
    assert files[0].filename == "picture.png"


def test_limits_on_count_and_size() -> None:
    too_many = [Upload(f"f{i}.pdf", PDF) for i in range(MAX_ATTACHMENTS + 1)]
    assert set(check_uploads(too_many)[1]) == {"attachments"}
    big = PDF + b"0" * MAX_FILE_BYTES
    _, errors = check_uploads([Upload("big.pdf", big), Upload("empty.pdf", b"")])
    assert set(errors) == {"attachments.0", "attachments.1"}
    assert check_uploads([Upload("", b"")]) == ([], {})


def test_display_names_are_safe() -> None:
    assert safe_filename("C:\\Users\\me\\..\\Essay.PDF", AttachmentKind.PDF) == "Essay.pdf"
    assert safe_filename('a"b<c>\r\n.exe', AttachmentKind.ZIP) == "a_b_c_.zip"
    assert safe_filename('../../etc/Report "final".exe', AttachmentKind.PDF) == "Report _final_.pdf"
    assert safe_filename("...", AttachmentKind.JPEG) == "attachment.jpg"
    assert len(safe_filename("x" * 500 + ".png", AttachmentKind.PNG)) <= 100


def test_storage_names_are_random_and_confined(tmp_path: Path) -> None:
    stored = store(tmp_path, PDF)
    path = storage_path(tmp_path, stored.storage_name)
    assert path.read_bytes() == PDF and stored.size == len(PDF)
    assert path.stat().st_mode & 0o077 == 0
    assert store(tmp_path, PDF).storage_name != stored.storage_name
    for bad in ("../secret", "ab/../../x", "/etc/passwd", "ab/" + "g" * 32):
        with pytest.raises(ValueError):
            storage_path(tmp_path, bad)


def test_download_headers_force_a_download_of_the_detected_type() -> None:
    headers = download_headers("Résumé «final».pdf", "pdf", 1234)
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Length"] == "1234"
    disposition = headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="Resume final.pdf";')
    assert "filename*=UTF-8''R%C3%A9sum%C3%A9%20%C2%ABfinal%C2%BB.pdf" in disposition
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]


async def test_submissions_keep_their_files_and_a_refusal_keeps_none(
    cast: Cast, clock: Clock
) -> None:
    assignment = await make_assignment(cast, clock.now)
    learner = cast.learners[0]
    uploads_dir = runtime.settings().data_dir / "uploads" / "peer_review"
    before = set(uploads_dir.rglob("*")) if uploads_dir.exists() else set()
    with pytest.raises(InvalidInput) as caught:
        await actions.submit(
            assignment, body=essay(1),
            uploads=[Upload("ok.pdf", PDF), Upload("evil.pdf", b"<html>")], acting_user=learner,
        )  # fmt: skip
    assert set(caught.value.fields) == {"attachments.1"}
    with pytest.raises(InvalidInput):
        await actions.submit(
            assignment, body="too short", uploads=[Upload("ok.pdf", PDF)], acting_user=learner
        )
    assert await Submission.all().count() == 0
    after = set(uploads_dir.rglob("*")) if uploads_dir.exists() else set()
    assert {p for p in after - before if p.is_file()} == set()
    submission = await actions.submit(
        assignment, body=essay(2), uploads=[Upload("a.pdf", PDF), Upload("b.zip", a_zip())],
        acting_user=learner,
    )  # fmt: skip
    stored = await Attachment.filter(submission_id=submission.id).order_by("id")
    assert [(a.filename, a.kind) for a in stored] == [
        ("a.pdf", AttachmentKind.PDF),
        ("b.zip", AttachmentKind.ZIP),
    ]
    assert storage_path(runtime.settings().data_dir, stored[0].storage_name).read_bytes() == PDF
    path, headers = await open_attachment(stored[0].id, viewer=learner)
    assert path.read_bytes() == PDF
    assert path.is_relative_to(runtime.settings().data_dir / "uploads" / "peer_review")
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"].startswith('attachment; filename="a.pdf"')
    await open_attachment(stored[0].id, viewer=cast.mentor)
    reviewer, stranger = cast.learners[1:3]
    for viewer in (reviewer, stranger, cast.outsider, None):
        with pytest.raises(NotFound):
            await open_attachment(stored[0].id, viewer=viewer)
    await actions.submit(assignment, body=essay(3), acting_user=reviewer)
    assert await actions.review_next(assignment, acting_user=reviewer) is not None
    await open_attachment(stored[0].id, viewer=reviewer)
    with pytest.raises(NotFound):
        await open_attachment(stored[0].id + 1000, viewer=learner)
