"""A learner's data export: asking, watching it build, downloading, expiry, the job, the CLI."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from core import auth, export, export_views, housekeeping, jobs
from core.errors import PermissionDenied
from core.export import ExportContext
from core.models import DataExport, ExportStatus, Notification, OutboxEvent, User
from core.settings import Settings
from core.timeutil import utcnow
from forum import export as forum_export
from tests.conftest import CSRF_RE, drain_jobs
from tests.factories import log_in, make_user

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


class Browser:
    """A signed-in browser that remembers the CSRF token of the last page it saw."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.token = ""

    async def get(self, url: str, *, htmx: bool = False) -> httpx.Response:
        headers = {"HX-Request": "true"} if htmx else {}
        response = await self.client.get(url, headers=headers)
        match = CSRF_RE.search(response.text)
        if match:
            self.token = match.group(1)
        return response

    async def ask(self) -> httpx.Response:
        """Press "Ask for a new export" on the export page."""
        await self.get("/me/export")
        return await self.client.post("/me/export", data={"csrf_token": self.token})


Open = Callable[[User], Awaitable[Browser]]


@pytest.fixture
async def browser(app: Starlette) -> AsyncIterator[Open]:
    opened: list[httpx.AsyncClient] = []

    async def open_as(user: User) -> Browser:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
            base_url="http://testserver",
        )
        opened.append(client)
        assert (await log_in(client, user.username)).status_code == 303
        return Browser(client)

    yield open_as
    for client in opened:
        await client.aclose()


class Gate:
    """Holds an export job inside its forum section until released."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def reached(self) -> None:
        await asyncio.wait_for(self.entered.wait(), timeout=20)


@pytest.fixture
def gate(app: Starlette, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate()
    original = forum_export.sections

    async def waiting(ctx: ExportContext) -> dict[str, Any]:
        held.entered.set()
        await held.release.wait()
        return await original(ctx)

    monkeypatch.setattr(forum_export, "sections", waiting)
    yield held
    held.release.set()


def exports_folder(settings: Settings) -> Path:
    return export.exports_dir(settings)


def open_zip(content: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name).decode("utf-8") for name in archive.namelist()}


def move_clock(monkeypatch: pytest.MonkeyPatch, to: datetime) -> None:
    for module in (export, export_views):
        monkeypatch.setattr(module, "utcnow", lambda: to)


async def ready_export(browser: Open, user: User) -> tuple[Browser, DataExport]:
    web = await browser(user)
    assert (await web.ask()).status_code == 303
    await drain_jobs()
    made = await DataExport.get(user_id=user.id)
    assert made.status == ExportStatus.READY, made.error
    return web, made


# --- the page ----------------------------------------------------------------------------


async def test_the_page_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/me/export")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/me/export"
    response = await client.get("/me/export/1/download")
    assert response.status_code == 303


async def test_progress_is_shown_while_building_then_the_download(
    app: Starlette, browser: Open, gate: Gate
) -> None:
    learner = await make_user("lena", display_name="Lena Park")
    web = await browser(learner)
    empty = await web.get("/me/export")
    assert empty.status_code == 200
    assert "You have not asked for an export yet." in empty.text
    assert "hx-trigger" not in empty.text

    asked = await web.ask()
    assert asked.status_code == 303
    assert asked.headers["location"] == "/me/export?asked=1"
    await gate.reached()

    page = await web.get("/me/export?asked=1")
    assert "Your export is being prepared" in page.text
    assert "Being prepared" in page.text
    assert "Collecting your forum posts and their history" in page.text
    assert re.search(r'<progress max="100" value="20"', page.text)
    assert 'hx-get="/me/export?asked=1" hx-trigger="every 2s" hx-swap="outerHTML"' in page.text
    assert "Download ZIP" not in page.text

    block = await web.get("/me/export?asked=1", htmx=True)
    assert block.status_code == 200
    assert "<html" not in block.text and "<form" not in block.text
    assert block.text.lstrip().startswith('<section id="export-status"')
    assert 'hx-trigger="every 2s"' in block.text
    assert "Being prepared" in block.text and "Your export is being prepared" in block.text

    gate.release.set()
    await drain_jobs()
    made = await DataExport.get(user_id=learner.id)
    assert made.status == ExportStatus.READY and made.progress == 100
    assert made.size_bytes > 0 and made.finished_at is not None
    assert made.expires_at is not None
    hours = app.state.settings.export_hours
    assert made.expires_at - made.finished_at == timedelta(hours=hours)

    done = await web.get("/me/export?asked=1", htmx=True)
    assert "hx-trigger" not in done.text, "polling stops once nothing is being prepared"
    assert "Your export is being prepared" not in done.text
    assert "Ready" in done.text
    assert f'href="/me/export/{made.id}/download"' in done.text
    assert '<progress max="100" value="100"' in done.text

    told = await Notification.get(user_id=learner.id, kind="core.export_ready")
    assert told.link == "/me/export"
    assert "ready" in told.message and f"{made.expires_at:%Y-%m-%d %H:%M}" in told.message


async def test_download_is_the_zip_as_an_attachment(app: Starlette, browser: Open) -> None:
    learner = await make_user("mira", display_name="Mira Stone")
    web, made = await ready_export(browser, learner)
    response = await web.client.get(f"/me/export/{made.id}/download")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["cache-control"] == "no-store"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert re.search(r'filename="agora-export-mira-\d{8}-\d{4}\.zip"', disposition)
    assert int(response.headers["content-length"]) == made.size_bytes

    files = open_zip(response.content)
    assert set(files) == {"export.json", "summary.html", "README.txt"}
    data = json.loads(files["export.json"])
    assert list(data)[:3] == ["schema_version", "generated_at", "user_id"]
    assert data["schema_version"] == export.SCHEMA_VERSION == 1
    assert data["user_id"] == learner.id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", data["generated_at"])
    for key in ("profile", "courses", "sign_ins", "notifications", "data_recipients"):
        assert key in data
    for key in ("forum", "moderation", "peer_review"):
        assert key in data
    assert data["profile"]["username"] == "mira"
    assert data["data_exports"][0]["is_this_export"] is True
    assert data["data_exports"][0]["status"] == "running"

    summary = files["summary.html"]
    assert summary.startswith("<!doctype html>")
    assert "Mira Stone" in summary and "@mira" in summary
    assert "<script" not in summary and "<link" not in summary and "src=" not in summary
    assert not re.search(r"(href|src)=\"(https?:)?//", summary), "no external resources"
    assert "docs/export.md" in files["README.txt"]
    assert "schema version 1" in files["README.txt"]


async def test_summary_escapes_what_people_wrote(browser: Open) -> None:
    learner = await make_user("omar", display_name="<b>Omar</b>")
    await User.filter(id=learner.id).update(about='<script>alert("x")</script>')
    web, made = await ready_export(browser, learner)
    files = open_zip((await web.client.get(f"/me/export/{made.id}/download")).content)
    summary = files["summary.html"]
    assert "<script>" not in summary and "<b>Omar</b>" not in summary
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in summary
    assert json.loads(files["export.json"])["profile"]["about"] == '<script>alert("x")</script>'


async def test_someone_elses_export_is_not_found(browser: Open) -> None:
    owner = await make_user("olga")
    _, made = await ready_export(browser, owner)
    other = await browser(await make_user("otto"))
    response = await other.client.get(f"/me/export/{made.id}/download")
    assert response.status_code == 404
    assert "PK" not in response.text[:4]
    missing = await other.client.get(f"/me/export/{made.id + 1000}/download")
    assert missing.status_code == 404
    page = await other.get("/me/export")
    assert f"/me/export/{made.id}/download" not in page.text


async def test_an_expired_link_answers_410_and_the_file_is_deleted(
    app: Starlette, browser: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner = await make_user("ezra")
    web, made = await ready_export(browser, learner)
    assert made.expires_at is not None
    path = exports_folder(app.state.settings) / made.file_name
    assert path.is_file()

    move_clock(monkeypatch, made.expires_at - timedelta(minutes=1))
    assert (await web.client.get(f"/me/export/{made.id}/download")).status_code == 200

    move_clock(monkeypatch, made.expires_at + timedelta(seconds=1))
    gone = await web.client.get(f"/me/export/{made.id}/download")
    assert gone.status_code == 410
    assert "That download link expired" in gone.text
    assert "Ask for a new export" in gone.text

    page = await web.get("/me/export")
    assert "Expired" in page.text and "Link expired; file deleted" in page.text
    assert f"/me/export/{made.id}/download" not in page.text
    assert not path.exists()
    row = await DataExport.get(id=made.id)
    assert row.file_name == "" and row.stage.startswith("Expired")
    assert (await web.client.get(f"/me/export/{made.id}/download")).status_code == 410


async def test_purge_expired_deletes_only_expired_files(app: Starlette, browser: Open) -> None:
    _, old = await ready_export(browser, await make_user("ivan"))
    _, fresh = await ready_export(browser, await make_user("ines"))
    folder = exports_folder(app.state.settings)
    assert old.expires_at is not None
    await DataExport.filter(id=old.id).update(expires_at=utcnow() - timedelta(minutes=1))
    report = await housekeeping.run_housekeeping()  # every few minutes, in the worker
    assert report["exports"] == {"deleted": 1}
    assert not (folder / old.file_name).exists()
    assert (folder / fresh.file_name).is_file()
    assert await export.purge_expired() == 0


async def test_asking_needs_the_csrf_token(browser: Open) -> None:
    learner = await make_user("cora")
    web = await browser(learner)
    refused = await web.client.post("/me/export", data={"csrf_token": "0" * 64})
    assert refused.status_code == 403
    refused = await web.client.post("/me/export")
    assert refused.status_code == 403
    assert not await DataExport.filter(user_id=learner.id).exists()


async def test_a_second_request_while_one_is_built_returns_it(browser: Open, gate: Gate) -> None:
    learner = await make_user("sam")
    web = await browser(learner)
    assert (await web.ask()).status_code == 303
    await gate.reached()
    again = await web.ask()
    assert again.status_code == 303
    assert again.headers["location"] == "/me/export?already=1"
    page = await web.get("/me/export?already=1")
    assert "An export is already being prepared" in page.text
    assert await DataExport.filter(user_id=learner.id).count() == 1
    assert await OutboxEvent.filter(kind="core.export").count() == 1
    gate.release.set()


async def test_a_few_exports_a_day_then_a_clear_refusal(browser: Open) -> None:
    learner = await make_user("dana")
    web = await browser(learner)
    for _ in range(export.EXPORTS_PER_DAY):
        assert (await web.ask()).status_code == 303
        await drain_jobs()
    refused = await web.ask()
    assert refused.status_code == 429
    assert f"You can ask for {export.EXPORTS_PER_DAY} exports a day" in refused.text
    assert int(refused.headers["retry-after"]) > 23 * 3600
    assert "Download ZIP" in refused.text, "the refusal page still lists the exports"
    assert await DataExport.filter(user_id=learner.id).count() == export.EXPORTS_PER_DAY


async def test_failed_exports_say_why_and_do_not_count(
    browser: Open, monkeypatch: pytest.MonkeyPatch, app: Starlette
) -> None:
    async def broken(ctx: ExportContext) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(forum_export, "sections", broken)
    learner = await make_user("fay")
    web = await browser(learner)
    before = set(exports_folder(app.state.settings).iterdir())
    for _ in range(export.EXPORTS_PER_DAY + 1):
        assert (await web.ask()).status_code == 303
        await drain_jobs()
    failed = await DataExport.filter(user_id=learner.id)
    assert len(failed) == export.EXPORTS_PER_DAY + 1
    assert {e.status for e in failed} == {ExportStatus.FAILED}
    assert set(exports_folder(app.state.settings).iterdir()) == before, "no file left behind"
    page = await web.get("/me/export")
    assert "Failed" in page.text and "Please ask for a new one." in page.text
    assert "disk on fire" not in page.text
    assert not await Notification.filter(user_id=learner.id, kind="core.export_ready").exists()
    refused = await web.client.get(f"/me/export/{failed[0].id}/download")
    assert refused.status_code == 409


async def test_only_the_person_may_ask_for_their_export(db: Settings) -> None:
    learner, other = await make_user(), await make_user()
    with pytest.raises(PermissionDenied):
        await export.request_export(learner, acting_user=other)
    assert not await DataExport.exists()


# --- the job -------------------------------------------------------------------------------


async def test_delivering_the_job_twice_builds_and_notifies_once(db: Settings) -> None:
    learner = await make_user()
    made = await export.request_export(learner, acting_user=learner)
    await drain_jobs()
    event = await OutboxEvent.get(kind="core.export")
    assert event.delivered_at is not None
    built = await DataExport.get(id=made.id)
    assert built.status == ExportStatus.READY
    files = set(exports_folder(db).iterdir())

    await export.build_export(event)  # at-least-once delivery: the same event again
    await drain_jobs()
    again = await DataExport.get(id=made.id)
    assert (again.file_name, again.finished_at, again.size_bytes) == (
        built.file_name,
        built.finished_at,
        built.size_bytes,
    )
    assert set(exports_folder(db).iterdir()) == files
    assert await OutboxEvent.filter(kind="core.notify").count() == 1
    assert await Notification.filter(user_id=learner.id, kind="core.export_ready").count() == 1


async def test_a_second_delivery_while_building_waits_instead_of_building_again(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's sweep can hand over an event whose job is still running."""
    learner = await make_user()
    monkeypatch.setattr(jobs, "wake", _no_wake)
    made = await export.request_export(learner, acting_user=learner)
    event = await OutboxEvent.get(kind="core.export")
    held = Gate()
    original = forum_export.sections
    builds = 0

    async def counted(ctx: ExportContext) -> dict[str, Any]:
        nonlocal builds
        builds += 1
        held.entered.set()
        await held.release.wait()
        return await original(ctx)

    monkeypatch.setattr(forum_export, "sections", counted)
    files = set(exports_folder(db).iterdir())
    first = asyncio.create_task(jobs.deliver(event.id))
    await held.reached()
    guard = export._building[made.id]
    waiting = asyncio.Event()
    wait_for_first = guard.wait

    async def noted_wait() -> bool:
        waiting.set()
        return await wait_for_first()

    monkeypatch.setattr(guard, "wait", noted_wait)
    second = asyncio.create_task(jobs.deliver(event.id))
    await asyncio.wait_for(waiting.wait(), timeout=20)
    held.release.set()
    delivered = await asyncio.gather(first, second)
    assert sorted(delivered) == [False, True]
    assert builds == 1
    finished = await DataExport.get(id=made.id)
    assert finished.status == ExportStatus.READY
    assert set(exports_folder(db).iterdir()) == files | {exports_folder(db) / finished.file_name}
    assert await OutboxEvent.filter(kind="core.notify").count() == 1


async def test_a_job_cut_short_is_finished_by_the_next_delivery(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner = await make_user()
    monkeypatch.setattr(jobs, "wake", _no_wake)
    made = await export.request_export(learner, acting_user=learner)
    event = await OutboxEvent.get(kind="core.export")
    original = forum_export.sections

    async def cut_short(ctx: ExportContext) -> dict[str, Any]:
        raise asyncio.CancelledError  # the worker stopped mid-way

    monkeypatch.setattr(forum_export, "sections", cut_short)
    files = set(exports_folder(db).iterdir())
    with pytest.raises(asyncio.CancelledError):
        await export.build_export(event)
    stuck = await DataExport.get(id=made.id)
    assert stuck.status == ExportStatus.RUNNING
    assert set(exports_folder(db).iterdir()) == files

    monkeypatch.setattr(forum_export, "sections", original)
    assert await jobs.deliver(event.id)
    finished = await DataExport.get(id=made.id)
    assert finished.status == ExportStatus.READY
    assert set(exports_folder(db).iterdir()) == files | {exports_folder(db) / finished.file_name}


async def _no_wake() -> None:
    return None


async def test_an_export_lost_for_hours_no_longer_blocks(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner = await make_user()
    monkeypatch.setattr(jobs, "wake", _no_wake)
    lost = await export.request_export(learner, acting_user=learner)
    assert await export.request_export(learner, acting_user=learner) == lost
    later = utcnow() + export.STALE_AFTER + timedelta(minutes=1)
    monkeypatch.setattr(export, "utcnow", lambda: later)
    fresh = await export.request_export(learner, acting_user=learner)
    assert fresh.id != lost.id
    given_up = await DataExport.get(id=lost.id)
    assert given_up.status == ExportStatus.FAILED and "took too long" in given_up.error


async def test_file_names_are_unguessable_and_private(db: Settings) -> None:
    learner = await make_user()
    for _ in range(2):
        await export.request_export(learner, acting_user=learner)
        await drain_jobs()
    names = [e.file_name for e in await DataExport.filter(user_id=learner.id)]
    assert len(set(names)) == 2
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}\.zip", name)
        mode = (exports_folder(db) / name).stat().st_mode & 0o777
        assert mode == 0o600


# --- the core sections -----------------------------------------------------------------


async def test_core_sections_hold_sign_ins_and_tokens_but_never_their_secrets(
    db: Settings,
) -> None:
    from core import actions
    from core.export_sections import sections

    learner = await make_user("tess", display_name="Tess Quinn")
    await User.filter(id=learner.id).update(email="tess@example.org")
    learner = await User.get(id=learner.id)
    key = await auth.start_session(learner, db, user_agent="Firefox/140")
    token = await actions.issue_api_token(learner, name="laptop", acting_user=learner)
    await auth.end_session(key)
    settings = db.with_changes(
        database_url="postgres://agora:db-secret@db.internal:5432/agora",
        meili_url="https://search.internal:7700",
        meili_key="meili-secret",
        redis_url="redis://:redis-secret@queue.internal:6379/0",
        smtp_url="smtps://mailer:smtp-secret@smtp.example.org:465",
    )
    data = await sections(ExportContext(user=learner, settings=settings))
    text = json.dumps(data)
    for secret in ("db-secret", "meili-secret", "redis-secret", "smtp-secret", "mailer", key):
        assert secret not in text
    assert token not in text and auth.digest(token) not in text and auth.digest(key) not in text

    [sign_in] = data["sign_ins"]
    assert sign_in["user_agent"] == "Firefox/140"
    assert sign_in["revoked_at"] is not None and sign_in["live"] is False
    assert set(sign_in) == {
        "created_at",
        "last_seen_at",
        "expires_at",
        "revoked_at",
        "user_agent",
        "live",
    }
    [api_token] = data["api_tokens"]
    assert api_token["name"] == "laptop" and api_token["revoked_at"] is None
    assert data["profile"]["email"] == "tess@example.org"

    services = {s["service"]: s for s in data["data_recipients"]["services"]}
    assert services["database"]["host"] == "db.internal:5432"
    assert services["search"]["kind"] == "Meilisearch"
    assert services["search"]["host"] == "search.internal:7700"
    assert services["job queue"]["host"] == "queue.internal:6379"
    assert "job" in services["job queue"]["holds"]
    assert services["email"]["host"] == "smtp.example.org:465"

    plain = await sections(ExportContext(user=learner, settings=db))
    kinds = {s["service"]: s["kind"] for s in plain["data_recipients"]["services"]}
    assert kinds == {
        "database": "SQLite file on the Agora server" if db.is_sqlite else "PostgreSQL",
        "search": "embedded, on the Agora server",
    }, "no job queue or mail server is configured here"


# --- the command line ------------------------------------------------------------------


def command_env(settings: Settings) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update(
        AGORA_DATA_DIR=str(settings.data_dir),
        AGORA_DATABASE_URL=settings.database_url,
        AGORA_SECRET_KEY=settings.secret_key,
        AGORA_DEMO="0",
    )
    return env


async def agora(settings: Settings, *args: str) -> tuple[int, str, str]:
    """The real `agora` command in its own process: exit status, stdout, stderr."""
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


async def test_cli_writes_the_same_zip(db: Settings, tmp_path: Path) -> None:
    learner = await make_user("cli.learner", display_name="Cli Learner")
    target = tmp_path / "copy.zip"
    status, out, err = await agora(db, "users", "export", "CLI.Learner", "--output", str(target))
    assert status == 0, err
    assert str(target) in out
    assert "Collecting your forum posts" in err
    files = open_zip(target.read_bytes())
    assert set(files) == {"export.json", "summary.html", "README.txt"}
    data = json.loads(files["export.json"])
    assert data["user_id"] == learner.id and data["profile"]["username"] == "cli.learner"
    assert data["data_exports"] == []
    assert not await DataExport.exists(), "the command writes a file, not a download"


async def test_cli_unknown_user_is_a_clear_error(db: Settings, tmp_path: Path) -> None:
    target = tmp_path / "none.zip"
    status, out, err = await agora(db, "users", "export", "nobody", "--output", str(target))
    assert status == 1
    assert "No user 'nobody'" in err
    assert "Traceback" not in out + err
    assert not target.exists()

    await make_user("real")
    nowhere = tmp_path / "no" / "such" / "x.zip"
    status, out, err = await agora(db, "users", "export", "real", "--output", str(nowhere))
    assert status == 1
    assert "does not exist" in err and "Traceback" not in out + err


# --- everything at once ------------------------------------------------------------------


# Objects whose keys are data (criterion titles, notification categories), not schema.
DATA_KEYED = frozenset(
    {"email_prefs", "median_points_per_criterion", "levels_apart_from_staff_grade"}
)


def undocumented_keys(data: Any) -> list[str]:
    """Keys of export.json that docs/export.md never mentions."""
    doc = (ROOT / "docs" / "export.md").read_text(encoding="utf-8")
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                found.add(key)
                if key not in DATA_KEYED:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return sorted(k for k in found if not re.search(rf"(?<![\w]){re.escape(k)}(?![\w])", doc))


async def person(username: str, display_name: str) -> User:
    from core import actions as core_actions
    from tests.factories import PASSWORD

    return await core_actions.create_user(
        username=username,
        display_name=display_name,
        password=PASSWORD,
        email=f"{username}@mail.example",
        acting_user=None,
    )


async def test_a_busy_learners_export_holds_everything_and_no_one_elses_name(
    app: Starlette, browser: Open
) -> None:
    """A learner with history in every package exports it; all of it is there, under
    pseudonyms, and nobody else's username, display name or email is anywhere in it."""
    from core.models import Role
    from forum import actions as forum_actions
    from forum.models import ANONYMOUS_LABEL, Post, Thread
    from moderation import actions as moderation_actions
    from moderation import merkle
    from moderation.models import Act, Flag, LogEntry, Notice
    from peer_review import actions as peer_actions
    from peer_review.models import Grade, Review
    from peer_review.queries import load_rubric
    from tests.factories import add_member, make_course, make_forum, make_reply, make_thread
    from tests.peer_review.factories import COMMENT, Cast, answers_at, essay, make_assignment

    instructor = await person("ingrid.vance", "Ingrid Vance")
    course = await make_course(instructor, title="Ethics and essays")
    mentor = await person("morwenna.quill", "Morwenna Quill")
    ali = await person("ali.baxter", "Ali Baxter")
    lea = await person("lea.quillon", "Lea Quillon")
    bo = await person("bo.thistle", "Bo Thistle")
    carys = await person("carys.dunmore", "Carys Dunmore")
    others = [instructor, mentor, lea, bo, carys]
    await add_member(course, mentor, Role.MENTOR)
    for learner in (ali, lea, bo, carys):
        await add_member(course, learner)

    # Sign-ins: the browser logs in through the real form.
    web = await browser(ali)

    # Forum: a thread edited twice, replies by others (one anonymous), an anonymous reply of
    # Ali's elsewhere, a vote, and a reply of Ali's that is flagged and hidden.
    forum = await make_forum(course, title="General")
    thread = await make_thread(forum, ali, title="Is lying ever right?", body="Kant says no.")
    opening = await Post.get(thread_id=thread.id, is_opening=True)
    await forum_actions.edit_post(opening, body="Kant says never.", acting_user=ali)
    await make_reply(thread, lea, body="Consequences matter too.")
    await make_reply(thread, bo, body="A hidden voice agrees.", anonymous=True)
    reading = await make_thread(forum, lea, title="Reading list")
    lea_post = await make_reply(reading, lea, body="Start with Mill.")
    ali_anonymous = await make_reply(reading, ali, body="I found Mill hard.", anonymous=True)
    await forum_actions.set_vote(lea_post, up=True, acting_user=ali)
    spam = await make_reply(reading, bo, body="Buy cheap essays at my shop today.")
    ali_post = await make_reply(thread, ali, body="Only **fools** think so.")

    # Moderation: Ali flags spam (dismissed), Lea flags Ali's reply (hidden), Ali appeals and
    # the instructor overturns the act.
    await moderation_actions.flag_post(spam, category="spam", text="An advert.", acting_user=ali)
    await moderation_actions.flag_post(
        ali_post, category="harassment", text="Lea Quillon feels insulted.", acting_user=lea
    )
    dismissed = await moderation_actions.dismiss_flag(
        await Flag.get(flagger_id=ali.id),
        rule_code="R3",
        reason="A fair offer, not spam.",
        acting_user=mentor,
    )
    hidden = await moderation_actions.hide_post(
        ali_post, rule_code="R1", reason="Insults other learners.", acting_user=mentor
    )
    notice = await Notice.get(user_id=ali.id, entry_seq=hidden.seq)
    appeal = await moderation_actions.appeal(
        notice, text="I was quoting the reading, not calling anyone a fool.", acting_user=ali
    )
    decided = await moderation_actions.decide_appeal(
        appeal, overturn=True, decision="It quotes the set text.", acting_user=instructor
    )

    # Peer review: calibration, a submission, three reviews each way, a rating and a flag,
    # and the grade the outbox computes.
    cast = Cast(course, instructor, mentor, [ali, lea, bo, carys], carys)
    assignment = await make_assignment(
        cast,
        utcnow(),
        publish=False,
        calibration_required=1,
        reviews_wanted=3,
        reviews_required=3,
    )
    rubric = await load_rubric(assignment.id)
    sample = await peer_actions.add_calibration_sample(
        assignment,
        title="A sample essay",
        body=essay(7),
        reference=answers_at(rubric, [2, 1]),
        acting_user=instructor,
    )
    await peer_actions.publish_assignment(assignment, acting_user=instructor)
    for seed, learner in enumerate((ali, lea, bo, carys), start=1):
        await peer_actions.submit(assignment, body=essay(seed, 150), acting_user=learner)
    await drain_jobs()
    for learner in (ali, lea, bo, carys):
        positions = [3, 1] if learner.id == ali.id else [2, 1]
        await peer_actions.grade_calibration_sample(
            sample, answers=answers_at(rubric, positions), acting_user=learner
        )
    for _ in range(3):
        for learner in (ali, lea, bo, carys):
            review = await peer_actions.review_next(assignment, acting_user=learner)
            assert review is not None
            await peer_actions.submit_review(
                review, answers=answers_at(rubric, [2, 1]), overall=COMMENT, acting_user=learner
            )
    await drain_jobs()
    received = list(
        await Review.filter(submission__author_id=ali.id).order_by("submitted_at", "id")
    )
    await peer_actions.rate_review(received[0], helpfulness=4, acting_user=ali)
    await peer_actions.flag_review(
        received[1], reason="It marks down a section my essay does include.", acting_user=ali
    )
    await drain_jobs()
    grade = await Grade.get(author_id=ali.id)
    assert grade.final_percent is not None

    # Notifications: Ali reads them all on the notifications page.
    await web.get("/notifications")
    await web.client.post("/notifications", data={"csrf_token": web.token})
    read_before_export = await Notification.filter(user_id=ali.id).count()
    assert read_before_export >= 6

    # The export, as Ali asks for it and downloads it.
    assert (await web.ask()).status_code == 303
    await drain_jobs()
    made = await DataExport.get(user_id=ali.id)
    assert made.status == ExportStatus.READY, made.error
    response = await web.client.get(f"/me/export/{made.id}/download")
    assert response.status_code == 200
    files = open_zip(response.content)
    data = json.loads(files["export.json"])
    summary = files["summary.html"]

    assert list(data) == [
        "schema_version",
        "generated_at",
        "user_id",
        "profile",
        "courses",
        "sign_ins",
        "api_tokens",
        "notifications",
        "data_exports",
        "withheld",
        "data_recipients",
        "forum",
        "moderation",
        "peer_review",
    ]

    # Core.
    assert data["profile"]["username"] == "ali.baxter"
    assert data["profile"]["email"] == "ali.baxter@mail.example"
    [membership] = data["courses"]
    assert membership["slug"] == course.slug and membership["role"] == "learner"
    assert any("python-httpx" in s["user_agent"] and s["live"] for s in data["sign_ins"])
    messages = [n["message"] for n in data["notifications"]]
    assert len(messages) == read_before_export
    assert all(n["read_at"] is not None for n in data["notifications"])
    reply_notes = [m for m in messages if "replied in “Is lying ever right?”" in m]
    lea_name = reply_notes[0].split(" replied", 1)[0]
    assert re.fullmatch(r"Person \d+", lea_name)
    assert f"{ANONYMOUS_LABEL} replied in “Is lying ever right?”." in reply_notes
    assert any(n["kind"] == "moderation" for n in data["notifications"])
    assert [e["is_this_export"] for e in data["data_exports"]] == [True]
    [recipients] = data["data_recipients"]["per_course"]
    assert recipients["slug"] == course.slug
    mentors = next(r for r in recipients["recipients"] if "mentors" in r["who"])
    assert "(1 in this course)" in mentors["sees"] and mentors["people"] == 2

    # Forum.
    forum_data = data["forum"]
    posts = {p["post_id"]: p for p in forum_data["posts"]}
    assert set(posts) == {opening.id, ali_anonymous.id, ali_post.id}
    assert [v["text"] for v in posts[opening.id]["versions"]] == [
        "Kant says no.",
        "Kant says never.",
    ]
    assert posts[ali_anonymous.id]["anonymous"] is True
    assert posts[ali_post.id]["state"] == "visible", "the appeal overturned the hiding"
    [started] = forum_data["threads_started"]
    assert started["thread_id"] == thread.id and started["reply_count"] == 3
    [vote] = forum_data["votes_cast"]
    assert vote["post_id"] == lea_post.id
    assert {s["thread_id"] for s in forum_data["subscriptions"]} == {thread.id, reading.id}
    assert (await Thread.get(id=thread.id)).title == started["thread_title"]

    # Moderation: the entries about Ali, each provable against the one head included.
    moderation = data["moderation"]
    head = moderation["tree_head"]
    assert moderation["log_problems"] == []
    by_act: dict[str, list[dict[str, Any]]] = {}
    for entry in moderation["log_entries"]:
        by_act.setdefault(entry["act"], []).append(entry)
        leaf = merkle.leaf_hash(entry["canonical"].encode("utf-8"))
        assert leaf.hex() == entry["leaf_hash"]
        merkle.verify_inclusion(
            leaf,
            entry["index"],
            head["size"],
            [bytes.fromhex(h) for h in entry["audit_path"]],
            bytes.fromhex(head["root_hash"]),
        )
    assert head["size"] == await LogEntry.all().count()
    for act in (
        Act.CHANGE_ROLE,
        Act.RESOLVE_FLAG,
        Act.HIDE_POST,
        Act.DECIDE_APPEAL,
        Act.UNHIDE_POST,
    ):
        assert act.value in by_act, act
    [hide] = by_act[Act.HIDE_POST.value]
    assert hide["index"] == hidden.seq and hide["reason"] == "Insults other learners."
    mentor_name = hide["actor"]
    assert re.fullmatch(r"Person \d+", mentor_name) and mentor_name != lea_name
    assert by_act[Act.RESOLVE_FLAG.value][0]["index"] == dismissed.seq
    assert by_act[Act.RESOLVE_FLAG.value][0]["actor"] == mentor_name
    [decision] = by_act[Act.DECIDE_APPEAL.value]
    assert decision["index"] == decided.seq
    [appealed] = moderation["appeals"]
    assert appealed["status"] == "overturned"
    assert appealed["decided_by"] == decision["actor"] != mentor_name
    notices = {n["log_index"]: n for n in moderation["notices"]}
    assert notices[hidden.seq]["reason"] == "Insults other learners."
    assert notices[hidden.seq]["notification"]["read_at"] is not None
    [filed] = moderation["flags_filed"]
    assert filed["category"] == "spam" and filed["status"] == "resolved"
    [on_mine] = moderation["flags_on_my_content"]
    assert on_mine["post_id"] == ali_post.id and on_mine["category"] == "harassment"
    assert "text" not in on_mine and not any("flagger" in key for key in on_mine)

    # Peer review: the submission, reviews both ways, calibration and the computed grade.
    peer = data["peer_review"]
    [submitted] = peer["submissions"]
    assert submitted["assignment"]["title"] == assignment.title
    assert len(peer["reviews_given"]) == 3
    assert all(r["status"] == "submitted" for r in peer["reviews_given"])
    reviews_in = peer["reviews_received"]
    assert [r["reviewer"] for r in reviews_in] == ["Reviewer 1", "Reviewer 2", "Reviewer 3"]
    assert reviews_in[0]["your_helpfulness_rating"] == 4
    [review_flag] = peer["review_flags"]
    assert review_flag["reviewer"] == "Reviewer 2" and review_flag["state"] == "open"
    [calibration] = peer["calibration"]
    assert calibration["sample"] == "A sample essay" and calibration["agreement_rate"] < 1
    [computed] = peer["derived"]["grades"]
    assert computed["final_percent"] == grade.final_percent
    assert computed["reviews_counted"] == 3 and computed["explanation"]
    [estimate] = peer["derived"]["reviewer_estimates"]
    assert estimate["assignment"]["id"] == assignment.id and estimate["explanation"]

    # The readable summary carries the same history.
    for text in ("Is lying ever right?", "Kant says never.", "Insults other learners."):
        assert text in summary
    assert "Reviewer 2" in summary and assignment.title in summary

    # Every key is described in the schema document.
    assert undocumented_keys(data) == []

    # Nobody else is named anywhere: not in export.json, not in summary.html.
    for name, text in (("export.json", files["export.json"]), ("summary.html", summary)):
        folded = text.lower()
        for other in others:
            for value in (other.username, other.display_name, other.email):
                assert value is not None
                assert value.lower() not in folded, f"{value!r} appears in {name}"
