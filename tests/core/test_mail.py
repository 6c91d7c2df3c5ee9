"""Email notifications against a real SMTP server (aiosmtpd) on this machine.

Each test starts a local server that keeps every message it receives; the assertions read
those messages as a person's mailbox would show them.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from core import actions, housekeeping, jobs, notifications, runtime
from core.app import create_app
from core.models import Course, Notification, OutboxEvent, Role, User
from core.settings import Settings
from core.timeutil import utcnow
from forum.models import Post, Thread
from moderation import actions as moderation
from moderation.models import Notice
from search.embedded import EmbeddedBackend
from tests.conftest import RedisServer, drain_jobs, reset_tables
from tests.factories import (
    add_member,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

BASE_URL = "https://agora.example"


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


class _Inbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(parsed)
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted"


class MailServer:
    """A real SMTP server on a free local port that a test can stop and start again."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.inbox = _Inbox()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        return list(self.inbox.messages)

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp_server() -> Iterator[MailServer]:
    server = MailServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def mail_db(settings: Settings, smtp_server: MailServer) -> AsyncIterator[Settings]:
    """Like `db`, with email sent to `smtp_server` and links made for BASE_URL."""
    configured = settings.with_changes(
        smtp_url=smtp_server.url, base_url=BASE_URL, mail_from="Agora <agora@agora.example>"
    )
    opened = await runtime.start(configured, queue=False, search=EmbeddedBackend(None))
    try:
        await reset_tables()
        yield configured
        await drain_jobs()
    finally:
        await runtime.stop(opened)


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


@dataclass
class Scene:
    course: Course
    thread: Thread
    asker: User  # started the thread, so follows it
    classmate: User
    mentor: User


async def scene(email: str | None = "asker@example.org", **modes: str) -> Scene:
    instructor = await make_user("ines")
    course = await make_course(instructor, title="Ethics")
    asker, classmate, mentor = (
        await make_user("asker", display_name="Asha"),
        await make_user("cara", display_name="Cara"),
        await make_user("mona", display_name="Mona"),
    )
    for member in (asker, classmate):
        await add_member(course, member)
    await add_member(course, mentor, Role.MENTOR)
    forum = await make_forum(course, title="General")
    thread = await make_thread(forum, asker, title="Is lying ever right?")
    await drain_jobs()
    # Start with nothing unread: being added to the course was a notification too.
    await actions.mark_notifications_read(asker, acting_user=asker)
    chosen = notifications.email_modes(asker) | modes
    await notifications.update_email_settings(
        asker, email=email or "", modes=chosen, acting_user=asker
    )
    return Scene(course, thread, await User.get(id=asker.id), classmate, mentor)


async def test_a_forum_reply_is_emailed_right_away_when_chosen(
    mail_db: Settings, smtp_server: MailServer
) -> None:
    s = await scene(forum="immediate")
    post = await make_reply(s.thread, s.classmate, body="Kant would say never.")
    await drain_jobs()

    (message,) = smtp_server.messages
    assert smtp_server.inbox.recipients == [["asker@example.org"]]
    assert message["Subject"] == "Cara replied in “Is lying ever right?”."
    assert message["From"] == "Agora <agora@agora.example>"
    assert message["List-Unsubscribe"] == f"<{BASE_URL}/me/notifications/settings>"
    link = f"{BASE_URL}/courses/{s.course.slug}/threads/{s.thread.id}#post-{post.id}"
    assert link in body_of(message)
    notification = await Notification.get(user_id=s.asker.id, kind="reply")
    assert notification.emailed_at is not None
    assert message["Message-ID"] == f"<agora.notification.{notification.id}@agora.example>"

    # Delivered again (at least once), it is not sent again.
    await jobs.enqueue("core.email", {"notification_id": notification.id})
    await jobs.wake()
    await drain_jobs()
    assert len(smtp_server.messages) == 1
    # The replier hears nothing about their own reply.
    assert not await Notification.filter(user_id=s.classmate.id, kind="reply").exists()


async def test_the_daily_digest_gathers_notifications_into_one_email_once(
    mail_db: Settings, smtp_server: MailServer
) -> None:
    s = await scene()  # forum defaults to the daily digest
    await make_reply(s.thread, s.classmate, body="First thought.")
    await make_reply(s.thread, s.mentor, body="Second thought.")
    await drain_jobs()
    assert smtp_server.messages == []

    report = await housekeeping.run_housekeeping()
    assert report["digests"] == {
        "sent": [{"user": "asker", "notifications": 2}],
        "failed": [],
        "server_down": None,
    }
    (digest,) = smtp_server.messages
    text = body_of(digest)
    newest, oldest = "Mona replied in", "Cara replied in"
    assert newest in text and oldest in text
    assert text.index(newest) < text.index(oldest)
    assert f"{BASE_URL}/courses/{s.course.slug}/threads/{s.thread.id}#post-" in text
    assert digest["Subject"] == "Your Agora digest: 2 new notifications"
    assert not await Notification.filter(user_id=s.asker.id, kind="reply", emailed_at=None)
    asker = await User.get(id=s.asker.id)
    assert asker.last_digest_at is not None

    # A second run sends nothing, and a new reply waits for the next day's digest.
    assert (await notifications.send_due_digests()).sent == []
    await make_reply(s.thread, s.classmate, body="Third thought.")
    await drain_jobs()
    assert (await notifications.send_due_digests()).sent == []
    assert len(smtp_server.messages) == 1
    tomorrow = utcnow() + timedelta(days=1)
    assert (await notifications.send_due_digests(tomorrow)).sent == [("asker", 1)]
    assert body_of(smtp_server.messages[1]).count("replied in") == 1
    assert smtp_server.messages[1]["Subject"] == "Your Agora digest: 1 new notification"


async def test_read_notifications_stay_out_of_the_digest(
    mail_db: Settings, smtp_server: MailServer
) -> None:
    s = await scene()
    await make_reply(s.thread, s.classmate)
    await drain_jobs()
    await Notification.filter(user_id=s.asker.id).update(read_at=utcnow())
    assert (await notifications.send_due_digests()).sent == []
    assert smtp_server.messages == []


async def test_off_sends_no_email_but_keeps_the_notification_in_the_app(
    mail_db: Settings, smtp_server: MailServer
) -> None:
    s = await scene(forum="off", peer_review="off", account="off")
    await make_reply(s.thread, s.classmate)
    await add_member(s.course, s.asker, Role.MENTOR)  # an account notification
    await drain_jobs()
    assert (await notifications.send_due_digests()).sent == []
    assert smtp_server.messages == []
    kinds = sorted(
        await Notification.filter(user_id=s.asker.id, read_at=None).values_list("kind", flat=True)
    )
    assert kinds == ["reply", "role"]


async def test_a_moderation_notice_is_emailed_even_with_every_category_off(
    mail_db: Settings, smtp_server: MailServer
) -> None:
    s = await scene(forum="off", peer_review="off", account="off")
    post = await make_reply(s.thread, s.asker, body="Only fools think so.")
    await drain_jobs()
    reason = "Calling classmates fools is an insult."
    await moderation.hide_post(post, rule_code="R1", reason=reason, acting_user=s.mentor)
    await drain_jobs()

    (message,) = smtp_server.messages
    assert message["Subject"].startswith("Moderation notice: Your post in “Is lying ever right?”")
    text = body_of(message)
    notice = await Notice.get(user_id=s.asker.id)
    assert "Rule R1: Be respectful" in text
    assert reason in text
    assert "How to appeal" in text
    assert f"{BASE_URL}/me/notices/{notice.id}/appeal" in text
    assert "Only fools think so." in text  # the content concerned
    assert "cannot be turned off" in text


async def test_without_an_email_address_nothing_is_sent(
    mail_db: Settings, smtp_server: MailServer
) -> None:
    s = await scene(email=None, forum="immediate")
    post = await make_reply(s.thread, s.asker)
    await make_reply(s.thread, s.classmate)
    await drain_jobs()
    await moderation.hide_post(
        await Post.get(id=post.id), rule_code="R2", reason="Off topic here.", acting_user=s.mentor
    )
    await drain_jobs()
    assert (await notifications.send_due_digests()).sent == []
    assert smtp_server.messages == []
    assert not await OutboxEvent.filter(kind="core.email").exists()
    assert await Notification.filter(user_id=s.asker.id, read_at=None).count() == 2


async def test_while_the_mail_server_is_down_nothing_is_lost(
    mail_db: Settings, smtp_server: MailServer
) -> None:
    s = await scene(forum="immediate")
    smtp_server.stop()
    await make_reply(s.thread, s.classmate, body="Sent while the server is down.")
    await drain_jobs()

    event = await OutboxEvent.get(kind="core.email")
    assert event.delivered_at is None and event.attempts == 1
    assert event.last_error and "SMTP" in event.last_error
    notification = await Notification.get(user_id=s.asker.id, kind="reply")
    assert notification.emailed_at is None  # but it is there, in the app

    smtp_server.start()
    assert await jobs.deliver_pending() == 1
    (message,) = smtp_server.messages
    assert message["Subject"] == "Cara replied in “Is lying ever right?”."
    assert (await Notification.get(id=notification.id)).emailed_at is not None


async def test_a_digest_that_cannot_be_sent_goes_out_when_the_server_is_back(
    mail_db: Settings, smtp_server: MailServer
) -> None:
    s = await scene()
    await make_reply(s.thread, s.classmate)
    await drain_jobs()
    smtp_server.stop()
    run = await notifications.send_due_digests()
    assert run.sent == [] and run.server_down is not None
    assert (await User.get(id=s.asker.id)).last_digest_at is None
    assert await Notification.filter(user_id=s.asker.id, kind="reply", emailed_at=None).count() == 1

    smtp_server.start()
    assert (await notifications.send_due_digests()).sent == [("asker", 1)]
    assert len(smtp_server.messages) == 1


async def test_a_changed_mind_before_sending_is_respected(
    mail_db: Settings, smtp_server: MailServer
) -> None:
    s = await scene(forum="immediate")
    smtp_server.stop()
    await make_reply(s.thread, s.classmate)
    await drain_jobs()
    asker = await User.get(id=s.asker.id)
    await notifications.update_email_settings(
        asker,
        email="asker@example.org",
        modes={**notifications.email_modes(asker), "forum": "daily"},
        acting_user=asker,
    )
    smtp_server.start()
    await jobs.deliver_pending()
    assert smtp_server.messages == []  # not right away any more: it waits for the digest
    assert (await notifications.send_due_digests()).sent == [("asker", 1)]


async def test_the_site_without_a_worker_sends_digests_by_itself(
    settings: Settings, smtp_server: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "HOUSEKEEPING_FIRST_DELAY_SECONDS", 0)
    monkeypatch.setattr(housekeeping, "EVERY_SECONDS", 0.05)
    configured = settings.with_changes(smtp_url=smtp_server.url, base_url=BASE_URL)
    application = create_app(configured, search=EmbeddedBackend(None), housekeeping=True)
    async with application.router.lifespan_context(application):
        await reset_tables()
        s = await scene()
        await make_reply(s.thread, s.classmate)
        await drain_jobs()
        for _ in range(200):
            if smtp_server.messages:
                break
            await asyncio.sleep(0.05)
    (digest,) = smtp_server.messages
    assert digest["Subject"] == "Your Agora digest: 1 new notification"


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`agora worker` in its own process, its output kept in `log_path`."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "from core.cli import main; main()", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.redis
async def test_the_worker_sends_the_email_of_a_notification_it_delivers(
    mail_db: Settings, smtp_server: MailServer, redis_server: RedisServer
) -> None:
    s = await scene(forum="immediate")
    env = {
        **os.environ,
        "AGORA_DATA_DIR": str(mail_db.data_dir),
        "AGORA_DATABASE_URL": mail_db.database_url,
        "AGORA_SECRET_KEY": mail_db.secret_key,
        "AGORA_REDIS_URL": redis_server.url,
        "AGORA_OUTBOX_SWEEP_SECONDS": "1",
        "AGORA_SMTP_URL": smtp_server.url,
        "AGORA_BASE_URL": BASE_URL,
    }
    dispatcher = jobs.configure(redis_server.url)
    log_path = mail_db.data_dir / "mail-worker.log"
    worker = start_worker(env, log_path)
    try:
        await make_reply(s.thread, s.classmate)
        for _ in range(300):
            if smtp_server.messages or worker.poll() is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)
        await dispatcher.close()
        jobs.configure(None)
    assert smtp_server.messages, log_path.read_text(errors="replace")
    assert smtp_server.messages[0]["Subject"] == "Cara replied in “Is lying ever right?”."
    assert await OutboxEvent.filter(delivered_at=None).count() == 0


async def test_the_digest_command_says_what_it_sent(
    mail_db: Settings, smtp_server: MailServer
) -> None:
    s = await scene()
    await make_reply(s.thread, s.classmate)
    await drain_jobs()
    env = {
        **os.environ,
        "AGORA_DATA_DIR": str(mail_db.data_dir),
        "AGORA_DATABASE_URL": mail_db.database_url,
        "AGORA_SECRET_KEY": mail_db.secret_key,
        "AGORA_SMTP_URL": smtp_server.url,
        "AGORA_DEMO": "0",
    }
    command = [sys.executable, "-c", "from core.cli import main; main()", "notifications", "digest"]
    first = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "Sent asker a digest of 1 notification."
    second = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )
    assert second.stdout.strip() == "No digest was due."
    assert len(smtp_server.messages) == 1
