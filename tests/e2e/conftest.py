"""A live Agora server (the embedded set-up a user gets from `make run`) and Debian's Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.templating import STATIC_DIR
from tests.conftest import skip_or_fail

CHROMIUM = os.environ.get("AGORA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    log_path: Path

    def agora(self, *args: str, stdin: str = "") -> str:
        """Run an `agora` command against this server's database."""
        done = subprocess.run(
            [sys.executable, "-c", "from core.cli import main; main()", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`agora serve` on a free port with a fresh data folder."""
    assert (STATIC_DIR / "vendor" / "htmx.min.js").exists(), (
        "static/vendor/htmx.min.js is missing: run `make setup` (installs htmx from npm)"
    )
    data_dir = tmp_path_factory.mktemp("live")
    port = _free_port()
    env = {**os.environ, "AGORA_DATA_DIR": str(data_dir), "AGORA_DEMO": "0"}
    for name in ("AGORA_DATABASE_URL", "AGORA_REDIS_URL", "AGORA_MEILI_URL"):
        env.pop(name, None)
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from core.cli import main; main()",
                "serve",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the server did not start:\n" + log_path.read_text(errors="replace"))
        time.sleep(0.1)
    try:
        yield LiveServer(url=url, env=env, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[object]:
    """Debian's Chromium driven by Playwright (no browser download)."""
    if shutil.which(CHROMIUM) is None:
        skip_or_fail("Chromium", f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()
