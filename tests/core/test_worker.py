"""The job path with a real arq worker (`agora worker`) on a real Redis server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from core import actions, jobs
from core.models import Notification, OutboxEvent, Role
from core.settings import Settings
from tests.conftest import RedisServer
from tests.factories import make_course, make_user

pytestmark = pytest.mark.redis


@contextmanager
def running_worker(settings: Settings, redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "AGORA_DATA_DIR": str(settings.data_dir),
        "AGORA_DATABASE_URL": settings.database_url,
        "AGORA_SECRET_KEY": settings.secret_key,
        "AGORA_REDIS_URL": redis_url,
        "AGORA_OUTBOX_SWEEP_SECONDS": "1",
    }
    log_path = settings.data_dir / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "from core.cli import main; main()", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process.log_path = log_path  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_for_notification(user_id: int, process: subprocess.Popen[bytes]) -> Notification:
    for _ in range(300):
        found = await Notification.filter(user_id=user_id).first()
        if found is not None:
            return found
        if process.poll() is not None:
            output = process.log_path.read_text(errors="replace")  # type: ignore[attr-defined]
            pytest.fail(f"the worker exited early:\n{output}")
        await asyncio.sleep(0.1)
    pytest.fail("the worker did not deliver the notification within 30 s")


async def test_worker_delivers_an_outbox_job(db: Settings, redis_server: RedisServer) -> None:
    instructor = await make_user("ins", can_create_courses=True)
    learner = await make_user("lea")
    course = await make_course(instructor)
    dispatcher = jobs.configure(redis_server.url)
    try:
        with running_worker(db, redis_server.url) as worker:
            await actions.set_member_role(
                course, username=learner.username, role=Role.MENTOR, acting_user=instructor
            )
            notification = await wait_for_notification(learner.id, worker)
    finally:
        await dispatcher.close()
        jobs.configure(None)
    assert "mentor" in notification.message
    event = await OutboxEvent.get(kind="core.notify")
    assert event.delivered_at is not None


async def test_writes_succeed_while_redis_is_down_and_jobs_run_when_it_returns(
    db: Settings, redis_server: RedisServer
) -> None:
    instructor = await make_user("ins", can_create_courses=True)
    learner = await make_user("lea")
    course = await make_course(instructor)
    dispatcher = jobs.configure(redis_server.url)
    try:
        redis_server.stop()
        health = await dispatcher.health()
        assert health["ok"] is False

        membership = await actions.set_member_role(
            course, username=learner.username, role=Role.MENTOR, acting_user=instructor
        )
        assert membership.role == Role.MENTOR
        pending = await OutboxEvent.filter(delivered_at=None).count()
        assert pending == 1
        assert not await Notification.filter(user_id=learner.id).exists()

        redis_server.start()
        with running_worker(db, redis_server.url) as worker:
            notification = await wait_for_notification(learner.id, worker)
        assert (await dispatcher.health())["ok"] is True
    finally:
        await dispatcher.close()
        jobs.configure(None)
    assert "mentor" in notification.message
    assert await OutboxEvent.filter(delivered_at=None).count() == 0
