"""The standalone verifier against a live site: verdicts, exit codes, saved heads, bad input.

(Tampered logs are in test_tamper.py.)
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from core.settings import Settings
from moderation import cli, log, verify
from moderation.verify import verify_site
from tests.moderation.test_log import build_log, make_world
from tests.moderation.test_tamper import agora

pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@pytest.fixture
async def outside(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agora.test") as c:
        yield c


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def live_url(app: Starlette) -> AsyncIterator[str]:
    """The app served over real HTTP on this event loop (its lifespan already runs)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_an_intact_log_checks_out(app: Starlette, outside: httpx.AsyncClient) -> None:
    world = await make_world(3)
    await build_log(world, 5)
    report = await verify_site(outside, None)
    assert report.ok and report.exit_code == 0, report.lines()
    assert report.size == (await log.latest_head()).size  # type: ignore[union-attr]
    assert report.head == (await outside.get("/api/v1/log/head")).json()
    assert report.verdict() == f"OK: all {report.size} entries check out against the signed head"


async def test_a_saved_head_is_extended_consistently(
    app: Starlette, outside: httpx.AsyncClient
) -> None:
    world = await make_world(3)
    await build_log(world, 4)
    saved = (await outside.get("/api/v1/log/head")).json()
    await build_log(world, 4)
    report = await verify_site(outside, saved)
    assert report.ok, report.lines()
    assert report.size == saved["size"] + 4
    assert any("consistent extension" in note for note in report.notes)
    # The same head again, and a head saved at the current size, check out too.
    assert (await verify_site(outside, report.head)).ok
    assert (await cli.audit_log(saved)).ok


async def test_an_empty_log_checks_out(app: Starlette, outside: httpx.AsyncClient) -> None:
    report = await verify_site(outside, None)
    assert report.ok and report.size == 0 and report.head is None


async def test_a_saved_head_that_was_never_signed_by_the_site_is_reported(
    app: Starlette, outside: httpx.AsyncClient
) -> None:
    await build_log(await make_world(2), 3)
    head = (await outside.get("/api/v1/log/head")).json()
    forged = dict(head, signature=base64.b64encode(b"\x01" * 64).decode())
    report = await verify_site(outside, forged)
    assert report.status == "tampered"
    assert any("saved head's signature does not verify" in p for p in report.problems)
    other = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    other_key = base64.b64encode(other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    message = log.head_message(head["size"], base64.b64decode(head["root"]), head["signed_at"])
    foreign = dict(
        head,
        public_key=other_key.decode(),
        signature=base64.b64encode(other.sign(message)).decode(),
    )
    report = await verify_site(outside, foreign)
    assert report.status == "tampered"
    assert any("different key" in p for p in report.problems)
    # A head from the future (larger than the log) means the log shrank.
    future = dict(head, size=head["size"] + 10)
    report = await verify_site(outside, future)
    assert any("the log shrank" in p for p in report.problems)


@pytest.mark.parametrize(
    "saved",
    [
        {"size": "three"},
        [],
        {"size": 2, "root": "%%%", "signed_at": "x", "signature": "", "public_key": ""},
        {"size": -1},
    ],
    ids=["size-text", "not-an-object", "bad-base64", "negative"],
)
async def test_a_malformed_saved_head_is_bad_input(
    saved: object, app: Starlette, outside: httpx.AsyncClient
) -> None:
    report = await verify_site(outside, saved)  # type: ignore[arg-type]
    assert report.status == "error" and report.exit_code == 2
    assert report.verdict().startswith("CANNOT VERIFY")


async def test_an_unreachable_site_is_exit_code_2() -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}", timeout=2) as c:
        report = await verify_site(c, None)
    assert report.status == "error" and report.exit_code == 2
    assert "cannot reach" in report.error


async def test_a_site_that_is_not_agora_is_exit_code_2() -> None:
    async def not_found(request: object) -> PlainTextResponse:
        return PlainTextResponse("nothing here", status_code=404)

    async def garbage(request: object) -> JSONResponse:
        return JSONResponse({"public_key": "not base64!"})

    for routes in ([Route("/{path:path}", not_found)], [Route("/api/v1/log/public-key", garbage)]):
        transport = httpx.ASGITransport(app=Starlette(routes=routes))
        async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as c:
            report = await verify_site(c, None)
        assert report.status == "error" and report.exit_code == 2, report.lines()


async def test_the_command_line_saves_and_checks_heads(
    app: Starlette, live_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = await make_world(3)
    await build_log(world, 3)
    saved = tmp_path / "head.json"
    code = await asyncio.to_thread(verify.main, [live_url, "--save", str(saved)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("OK: all") and "Saved the head" in out
    first = json.loads(saved.read_text(encoding="utf-8"))
    head = await log.latest_head()
    assert head is not None and first == log.head_json(head)
    await build_log(world, 2)
    code = await asyncio.to_thread(
        verify.main, [live_url + "/", "--head", str(saved), "--save", str(saved)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "consistent extension" in out
    assert json.loads(saved.read_text(encoding="utf-8"))["size"] == first["size"] + 2


async def test_the_command_line_reports_bad_input_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert verify.main(["http://127.0.0.1:9", "--head", str(bad)]) == 2
    assert verify.main(["http://127.0.0.1:9", "--head", str(tmp_path / "missing.json")]) == 2
    assert verify.main(["ftp://example.org"]) == 2
    assert "CANNOT VERIFY" in capsys.readouterr().out
    code = await asyncio.to_thread(
        verify.main, [f"http://127.0.0.1:{free_port()}", "--timeout", "2"]
    )
    assert code == 2


async def test_agora_audit_head_prints_the_head_to_save(
    settings: Settings, app: Starlette, outside: httpx.AsyncClient, tmp_path: Path
) -> None:
    code, out, err = await agora(settings, "audit", "head")
    assert code == 1 and "empty" in err
    await build_log(await make_world(2), 2)
    code, out, err = await agora(settings, "audit", "head")
    assert code == 0, err
    head = json.loads(out)
    assert head == (await outside.get("/api/v1/log/head")).json()
    saved = tmp_path / "head.json"
    saved.write_text(out, encoding="utf-8")
    code, out, err = await agora(settings, "audit", "verify", "--head", str(saved))
    assert code == 0, out + err
    assert f"entries: {head['size']}" in out and f"signed tree heads: {head['size']}" in out
    saved.write_text('{"size": "many"}', encoding="utf-8")
    code, out, err = await agora(settings, "audit", "verify", "--head", str(saved))
    assert code == 2 and "size" in err
