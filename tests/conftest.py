"""Fixtures shared by the whole suite.

Database tests run once on SQLite and once on PostgreSQL: the `backend` fixture is
parametrized, makes a fresh database for this run, migrates it, and drops it at the end
(only databases it created). Without a reachable PostgreSQL server those runs are skipped
and the summary says so loudly, except under CI=true, where they fail.

Fixtures, by what a test needs:
- `db`: an open, empty database (action and model tests).
- `app` / `client`: the whole web application with its lifespan, and an httpx client.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from core import jobs, runtime
from core.app import create_app
from core.db import migrate
from core.settings import Settings, load_settings
from search.embedded import EmbeddedBackend

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_URL = os.environ.get(
    "AGORA_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("AGORA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_loud_skips: dict[str, str] = {}


def skip_or_fail(service: str, reason: str) -> None:
    """Skip a test whose service is missing; in CI a missing service is a failure."""
    if IN_CI:
        pytest.fail(f"{service} is required under CI=true but is unavailable: {reason}")
    _loud_skips[service] = reason
    pytest.skip(f"{service} unavailable: {reason}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _loud_skips:
        terminalreporter.section("SERVICES MISSING: these tests were SKIPPED", sep="!", red=True)
        for service, reason in sorted(_loud_skips.items()):
            terminalreporter.line(f"  {service}: {reason}", red=True)
        terminalreporter.line("  (under CI=true they fail instead)", red=True)


def make_settings(database_url: str, data_dir: Path, **overrides: str) -> Settings:
    env = {
        "AGORA_DATA_DIR": str(data_dir),
        "AGORA_DATABASE_URL": database_url,
        "AGORA_SECRET_KEY": "test-secret-" + "x" * 40,
        "AGORA_DEMO": "0",
        **overrides,
    }
    return load_settings(env)


async def _create_postgres_database() -> tuple[str, str]:
    import asyncpg

    name = f"agora_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(
        POSTGRES_URL.replace("postgres://", "postgresql://", 1), timeout=5
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def _drop_postgres_database(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(
        POSTGRES_URL.replace("postgres://", "postgresql://", 1), timeout=5
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="agora-test-") as path:
        yield Path(path)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[Settings]:
    """Settings for a freshly made, migrated database of one kind, for the whole run."""
    if request.param == "sqlite":
        settings = make_settings(f"sqlite://{data_dir / 'test.sqlite3'}", data_dir)
        await migrate(settings)
        yield settings
        return
    try:
        name, url = await _create_postgres_database()
    except Exception as exc:
        skip_or_fail("PostgreSQL", f"{type(exc).__name__}: {exc}")
        return
    try:
        settings = make_settings(url, data_dir)
        await migrate(settings)
        yield settings
    finally:
        await _drop_postgres_database(name)


async def reset_tables() -> None:
    """Empty every table between tests (the migration record stays).

    The log's append-only triggers are taken off for the clean-up and put back.
    """
    from tortoise.connection import get_connection

    from moderation import triggers

    connection = get_connection("default")
    await triggers.remove(connection)
    try:
        await _delete_all_rows(connection)
    finally:
        await triggers.install(connection)


async def _delete_all_rows(connection: Any) -> None:
    if connection.capabilities.dialect == "postgres":
        _, rows = await connection.execute_query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'tortoise_migrations'"
        )
        names = ", ".join(f'"{row["tablename"]}"' for row in rows)
        if names:
            await connection.execute_script(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        return
    _, rows = await connection.execute_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' "
        "AND name NOT IN ('tortoise_migrations') AND name NOT LIKE 'sqlite_%'"
    )
    statements = "".join(f'DELETE FROM "{row["name"]}";' for row in rows)
    await connection.execute_script(
        f"PRAGMA foreign_keys = OFF;{statements}PRAGMA foreign_keys = ON;"
    )


@pytest.fixture
def reused_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each password hashed once per run (`tests.factories.reuse_password_hashes`). A module
    whose tests make users asks for it with
    `pytestmark = pytest.mark.usefixtures("reused_password_hashes")`."""
    from tests.factories import reuse_password_hashes

    reuse_password_hashes(monkeypatch)


@pytest.fixture
def settings(backend: Settings) -> Settings:
    # Tortoise caches compiled INSERT/DELETE statements per connection name, and both
    # backends use the name "default" in one process: start each test with an empty cache.
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    EXECUTOR_CACHE.clear()
    return backend


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Settings]:
    """An open database with every table empty; jobs run in this process; a fresh
    in-memory search index."""
    opened = await runtime.start(settings, queue=False, search=EmbeddedBackend(None))
    try:
        await reset_tables()
        yield settings
        await drain_jobs()
    finally:
        await runtime.stop(opened)


async def drain_jobs() -> None:
    dispatcher = jobs.dispatcher()
    if isinstance(dispatcher, jobs.InProcessDispatcher):
        await dispatcher.drain()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The application with its lifespan running, on an empty database."""
    application = create_app(settings, search=EmbeddedBackend(None))
    async with application.router.lifespan_context(application):
        await reset_tables()
        yield application
        await drain_jobs()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous browser-like client (cookies kept) talking to `app`."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


async def csrf_token(client: httpx.AsyncClient, page: str = "/login") -> str:
    """The CSRF token a real form on `page` would carry."""
    response = await client.get(page)
    match = CSRF_RE.search(response.text)
    assert match, f"no CSRF token on {page}"
    return match.group(1)


class RedisServer:
    """A private redis-server on a free port that a test may stop and start again."""

    def __init__(self, binary: str, workdir: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.binary = binary
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import time

        import redis

        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running private Redis (real server binary); stopped at the end."""
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail("Redis", "redis-server is not installed")
        raise AssertionError("unreachable")
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
