"""Posting under load: 32 concurrent writers through the real forms, with every side effect.

Runs `agora serve --workers N` (default 2) on a generated dataset (PostgreSQL by default),
logs 32 learners in through the login form, and lets each one post for --duration seconds
over keep-alive connections: four replies, then an edit of one of their own earlier posts
(a revision), and so on, in 200 threads. Every request carries a unique token in its text.
Writes go through the real path (CSRF, permission, sanction and flood checks, the action's
transaction with its outbox rows); the outbox is delivered in the web processes as `agora
serve` does without Redis, which also updates the embedded search index.

Then it waits until every outbox row written during the run is delivered and checks that
nothing was lost: each accepted reply is a post with its token, each accepted edit left
exactly one revision and the new text, every outbox row is delivered without error, and
the search index holds a document with the current text of every post touched.

The baseline is the same rows written bare: one INSERT per post (or a revision INSERT and a
post UPDATE per edit) plus its outbox INSERTs, one transaction per write, by 32 concurrent
connections straight to the database, in the same run. Its rows are deleted afterwards.
The flood rule's limit is raised for the run (its counter is still written).

Run: python benchmarks/posting.py [--dataset DIR] [--duration 15] [--writers 32] [--workers 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlencode, urlsplit  # noqa: E402

from benchmarks.common import (  # noqa: E402
    AGORA,
    Dataset,
    Figure,
    Login,
    add_dataset_arguments,
    agora_server,
    datasets,
    log_in,
    machine,
    percentile,
    report,
    stage,
)

POSTS_PER_SECOND_TARGET = 200.0
EDIT_EVERY = 5


# --- a small keep-alive HTTP/1.1 client --------------------------------------------------


class HttpConnection:
    """One keep-alive connection; a few dozen lines instead of a client library's overhead."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_form(self, path: str, form: dict[str, str], cookie: str) -> int:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None and self.writer is not None
        body = urlencode(form).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nCookie: {cookie}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None


# --- the workload --------------------------------------------------------------------------


@dataclass(slots=True)
class Write:
    kind: str  # "reply" or "edit"
    token: str
    target: int  # thread id for a reply, post id for an edit
    status: int = 0
    seconds: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.status == 303


@dataclass(slots=True)
class Writer:
    username: str
    login: Login
    own_posts: list[int]
    writes: list[Write] = field(default_factory=list)


def text_with(token: str, rng: random.Random) -> str:
    words = "thanks this helped me see why the limit exists and how the proof works".split()
    rng.shuffle(words)
    return f"{' '.join(words).capitalize()}. Reference {token}."


async def write_loop(
    writer: Writer, base: str, dataset: Dataset, threads: list[int], until: float, seed: int
) -> None:
    split = urlsplit(base)
    connection = HttpConnection(split.hostname or "127.0.0.1", split.port or 80)
    rng = random.Random(seed)
    slug = dataset.course_slug
    n = 0
    try:
        while time.monotonic() < until:
            n += 1
            token = f"bx{secrets.token_hex(6)}"
            if n % EDIT_EVERY == 0 and writer.own_posts:
                post_id = rng.choice(writer.own_posts)
                write = Write("edit", token, post_id)
                path = f"/courses/{slug}/posts/{post_id}/edit"
            else:
                thread_id = rng.choice(threads)
                write = Write("reply", token, thread_id)
                path = f"/courses/{slug}/threads/{thread_id}/reply"
            form = {"csrf_token": writer.login.csrf_token, "body": text_with(token, rng)}
            start = time.perf_counter()
            try:
                write.status = await connection.post_form(path, form, writer.login.cookie_header)
            except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
                write.status = -1
                await connection.close()
            write.seconds = time.perf_counter() - start
            writer.writes.append(write)
    finally:
        await connection.close()


# --- reading the database back -------------------------------------------------------------


class Db:
    """Direct queries against the dataset's database (asyncpg or sqlite3)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.pg: Any = None
        self.lite: sqlite3.Connection | None = None

    async def __aenter__(self) -> Db:
        if self.dataset.backend == "postgres":
            import asyncpg

            url = self.dataset.database_url.replace("postgres://", "postgresql://", 1)
            self.pg = await asyncpg.connect(url)
        else:
            path = self.dataset.database_url.removeprefix("sqlite://")
            self.lite = sqlite3.connect(path, timeout=30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.pg is not None:
            await self.pg.close()
        if self.lite is not None:
            self.lite.close()

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.pg is not None:
            for n in range(len(args), 0, -1):
                sql = sql.replace(f"?{n}", f"${n}")
            return [tuple(r) for r in await self.pg.fetch(sql, *args)]
        assert self.lite is not None
        for n in range(len(args), 0, -1):
            sql = sql.replace(f"?{n}", "?")
        return self.lite.execute(sql, args).fetchall()

    async def value(self, sql: str, *args: Any) -> Any:
        rows = await self.rows(sql, *args)
        return rows[0][0] if rows else None

    async def high_water(self) -> dict[str, int]:
        tables = {"post": "agora_post", "revision": "agora_revision", "outbox": "agora_outbox"}
        return {
            key: int(await self.value(f"SELECT COALESCE(MAX(id), 0) FROM {table}") or 0)
            for key, table in tables.items()
        }


async def wait_for_outbox(db: Db, since: int, limit: float) -> tuple[float, int]:
    """Seconds until no outbox row after `since` is undelivered (and how many are left)."""
    start = time.monotonic()
    left = 0
    while time.monotonic() - start < limit:
        left = int(
            await db.value(
                "SELECT COUNT(*) FROM agora_outbox WHERE id > ?1 AND delivered_at IS NULL", since
            )
        )
        if left == 0:
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - start, left


def index_bodies(data_dir: Path, post_ids: list[int]) -> dict[int, str]:
    """The stored body of each post's document in the embedded index (absent: not indexed)."""
    import tantivy

    index = tantivy.Index.open(str(data_dir / "search-index"))
    index.reload()
    searcher = index.searcher()
    found: dict[int, str] = {}
    for post_id in post_ids:
        query = tantivy.Query.term_query(index.schema, "id", f"post:{post_id}")
        hits = searcher.search(query, 1).hits
        if hits:
            body = searcher.doc(hits[0][1])["body"]
            found[post_id] = body[0] if body else ""
    return found


@dataclass(slots=True)
class Check:
    problems: list[str]
    posts: int
    revisions: int
    outbox: int


async def check_nothing_lost(
    db: Db, dataset: Dataset, mark: dict[str, int], writes: list[Write]
) -> Check:
    problems: list[str] = []
    replies = [w for w in writes if w.kind == "reply" and w.accepted]
    edits = [w for w in writes if w.kind == "edit" and w.accepted]
    new_posts = await db.rows(
        "SELECT id, thread_id, body_markdown FROM agora_post WHERE id > ?1", mark["post"]
    )
    by_token = {}
    for post_id, thread_id, body in new_posts:
        token = body.rsplit("Reference ", 1)[-1].rstrip(".")
        by_token[token] = (post_id, thread_id)
    lost = [w.token for w in replies if w.token not in by_token]
    if lost:
        problems.append(f"{len(lost)} accepted replies have no post (e.g. {lost[0]})")
    stray = len(new_posts) - len(replies)
    if stray:
        problems.append(f"{stray} posts exist whose request was not answered with a redirect")
    revisions = await db.rows(
        "SELECT post_id FROM agora_revision WHERE id > ?1 ORDER BY id", mark["revision"]
    )
    if len(revisions) != len(edits):
        problems.append(f"{len(revisions)} new revisions for {len(edits)} accepted edits")
    last_edit: dict[int, str] = {}
    for w in edits:
        last_edit[w.target] = w.token
    edited = await db.rows(
        "SELECT id, body_markdown FROM agora_post WHERE id IN ("
        + ",".join(str(i) for i in last_edit or [0])
        + ")"
    )
    bodies = dict(edited)
    wrong = [i for i, token in last_edit.items() if token not in str(bodies.get(i, ""))]
    if wrong:
        problems.append(f"{len(wrong)} edited posts do not show their last edit")
    outbox = await db.rows(
        "SELECT kind, delivered_at, last_error FROM agora_outbox WHERE id > ?1", mark["outbox"]
    )
    undelivered = sum(1 for _, delivered, _ in outbox if delivered is None)
    failed = sum(1 for _, _, error in outbox if error)
    if undelivered or failed:
        problems.append(f"outbox: {undelivered} rows undelivered, {failed} with an error")
    kinds: dict[str, int] = {}
    for kind, _, _ in outbox:
        kinds[kind] = kinds.get(kind, 0) + 1
    if kinds.get("forum.reply", 0) != len(replies):
        problems.append(f"{kinds.get('forum.reply', 0)} forum.reply rows for {len(replies)} posts")
    if kinds.get("search.index_post", 0) < len(replies) + len(edits):
        problems.append(
            f"{kinds.get('search.index_post', 0)} search.index_post rows for "
            f"{len(replies) + len(edits)} writes"
        )
    expected = {post_id: token for token, (post_id, _) in by_token.items()}
    expected.update(last_edit)
    indexed = index_bodies(dataset.path, sorted(expected))
    # Hidden or removed posts are rightly kept out of the index.
    visible = dict(
        await db.rows(
            "SELECT id, state FROM agora_post WHERE id IN ("
            + ",".join(str(i) for i in expected or [0])
            + ")"
        )
    )
    missing = [i for i in expected if visible.get(i) == "visible" and i not in indexed]
    stale = [i for i in expected if i in indexed and expected[i] not in indexed[i]]
    if missing:
        problems.append(f"{len(missing)} posts have no search document")
    if stale:
        problems.append(f"{len(stale)} search documents do not have the post's current text")
    return Check(problems, len(new_posts), len(revisions), len(outbox))


# --- the baseline --------------------------------------------------------------------------


async def bare_inserts(dataset: Dataset, writes: list[Write], writers: int) -> float:
    """Seconds to write the same rows as plain INSERTs, `writers` connections at once."""
    now = datetime.now(UTC)
    payload = json.dumps({"post_id": 0})
    jobs: asyncio.Queue[Write] = asyncio.Queue()
    for write in writes:
        jobs.put_nowait(write)
    if dataset.backend != "postgres":
        path = dataset.database_url.removeprefix("sqlite://")
        lite = sqlite3.connect(path, timeout=30, isolation_level=None)
        sqlite3.register_adapter(datetime, lambda d: d.isoformat(" "))
        start = time.perf_counter()
        for write in writes:
            lite.execute("BEGIN")
            _sqlite_write(lite, write, now, payload)
            lite.execute("COMMIT")
        elapsed = time.perf_counter() - start
        lite.execute("DELETE FROM agora_outbox WHERE payload LIKE '%\"bare\"%'")
        lite.execute("DELETE FROM agora_revision WHERE previous_markdown = 'bare baseline'")
        lite.execute("DELETE FROM agora_post WHERE body_markdown LIKE 'bare baseline%'")
        lite.close()
        return elapsed
    import asyncpg

    url = dataset.database_url.replace("postgres://", "postgresql://", 1)
    pool = await asyncpg.create_pool(url, min_size=writers, max_size=writers)

    async def worker() -> None:
        async with pool.acquire() as con:
            while not jobs.empty():
                write = jobs.get_nowait()
                async with con.transaction():
                    await _pg_write(con, write, now)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(writers)))
        elapsed = time.perf_counter() - start
        async with pool.acquire() as con:
            await con.execute("DELETE FROM agora_outbox WHERE payload ? 'bare'")
            await con.execute(
                "DELETE FROM agora_revision WHERE previous_markdown = 'bare baseline'"
            )
            await con.execute("DELETE FROM agora_post WHERE body_markdown LIKE 'bare baseline%'")
    finally:
        await pool.close()
    return elapsed


async def _pg_write(con: Any, write: Write, now: datetime) -> None:
    body = f"bare baseline {write.token}"
    if write.kind == "reply":
        kinds: tuple[str, ...]
        post_id = await con.fetchval(
            "INSERT INTO agora_post (thread_id, is_opening, is_anonymous, body_markdown, body_html,"
            " created_at, revision_count, is_endorsed, vote_count, state) VALUES"
            " ($1, false, false, $2, $3, $4, 0, false, 0, 'visible') RETURNING id",
            write.target,
            body,
            f"<p>{body}</p>",
            now,
        )
        kinds = ("forum.reply", "search.index_post")
    else:
        await con.execute(
            "INSERT INTO agora_revision (post_id, edited_at, previous_markdown, by_staff)"
            " VALUES ($1, $2, 'bare baseline', false)",
            write.target,
            now,
        )
        post_id = write.target
        kinds = ("search.index_post",)
    for kind in kinds:
        await con.execute(
            "INSERT INTO agora_outbox (kind, payload, created_at, delivered_at, attempts)"
            " VALUES ($1, $2, $3, $3, 0)",
            kind,
            json.dumps({"post_id": post_id, "bare": True}),
            now,
        )


def _sqlite_write(lite: sqlite3.Connection, write: Write, now: datetime, payload: str) -> None:
    body = f"bare baseline {write.token}"
    if write.kind == "reply":
        cursor = lite.execute(
            "INSERT INTO agora_post (thread_id, is_opening, is_anonymous, body_markdown, body_html,"
            " created_at, revision_count, is_endorsed, vote_count, state) VALUES"
            " (?, 0, 0, ?, ?, ?, 0, 0, 0, 'visible')",
            (write.target, body, f"<p>{body}</p>", now),
        )
        post_id = cursor.lastrowid
        kinds: tuple[str, ...] = ("forum.reply", "search.index_post")
    else:
        lite.execute(
            "INSERT INTO agora_revision (post_id, edited_at, previous_markdown, by_staff)"
            " VALUES (?, ?, 'bare baseline', 0)",
            (write.target, now),
        )
        post_id = write.target
        kinds = ("search.index_post",)
    for kind in kinds:
        lite.execute(
            "INSERT INTO agora_outbox (kind, payload, created_at, delivered_at, attempts)"
            " VALUES (?, ?, ?, ?, 0)",
            (kind, json.dumps({"post_id": post_id, "bare": True}), now, now),
        )


# --- putting it together -------------------------------------------------------------------


async def drive(
    dataset: Dataset, base: str, logins: dict[str, Login], duration: float
) -> tuple[list[Writer], float]:
    writers = [
        Writer(name, logins[name], list(dataset.edit_posts.get(name, []))) for name in logins
    ]
    until = time.monotonic() + duration
    start = time.perf_counter()
    await asyncio.gather(
        *(
            write_loop(w, base, dataset, dataset.writer_threads, until, seed)
            for seed, w in enumerate(writers)
        )
    )
    return writers, time.perf_counter() - start


def run(dataset: Dataset, args: argparse.Namespace) -> list[Figure]:
    logs = args.logs or Path(tempfile.mkdtemp(prefix="agora-bench-posting-"))
    logs.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; server log in {logs}")
    where = f"{dataset.backend}, {args.workers}w, {args.writers} writers"
    if args.reindex:
        with stage(f"agora search reindex ({dataset.counts.get('posts', 0):,} posts)"):
            subprocess.run(
                [str(AGORA), "search", "reindex"],
                env=dataset.env(),
                check=True,
                stdout=subprocess.DEVNULL,
            )
    names = dataset.writers[: args.writers]
    server = agora_server(
        dataset, args.workers, logs / "agora.log", AGORA_POST_RATE_LIMIT="1000000"
    )
    with server.start():
        with stage(f"log in {len(names)} writers"):
            with ThreadPoolExecutor(max_workers=8) as pool:
                done = pool.map(lambda name: log_in(server.base_url, name, dataset.password), names)
                logins = dict(zip(names, done, strict=True))

        async def measured() -> tuple[list[Writer], float, float, int, Check, dict[str, int]]:
            async with Db(dataset) as db:
                mark = await db.high_water()
                writers, elapsed = await drive(dataset, server.base_url, logins, args.duration)
                drain, left = await wait_for_outbox(db, mark["outbox"], args.drain_limit)
                writes = [w for writer in writers for w in writer.writes]
                check = await check_nothing_lost(db, dataset, mark, writes)
                return writers, elapsed, drain, left, check, mark

        with stage(f"{args.duration:.0f} s of posting"):
            writers, elapsed, drain, left, check, _ = asyncio.run(measured())
    writes = [w for writer in writers for w in writer.writes]
    accepted = [w for w in writes if w.accepted]
    refused = len(writes) - len(accepted)
    statuses: dict[int, int] = {}
    for w in writes:
        statuses[w.status] = statuses.get(w.status, 0) + 1
    latencies = [w.seconds * 1000 for w in accepted]
    rate = len(accepted) / elapsed
    end_to_end = len(accepted) / (elapsed + drain)
    print(
        f"  {len(writes)} writes in {elapsed:.1f} s: {len(accepted)} accepted "
        f"({sum(1 for w in accepted if w.kind == 'edit')} edits), statuses {statuses}"
    )
    print(
        f"  {rate:.1f} writes/s accepted; outbox drained {drain:.1f} s after the last write "
        f"({left} left); {end_to_end:.1f} writes/s end to end"
    )
    print(
        f"  latency p50 {percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms;"
        f" {check.posts} posts, {check.revisions} revisions, {check.outbox} outbox rows written"
    )
    for problem in check.problems:
        print(f"  LOST OR WRONG: {problem}")
    if not check.problems:
        print("  nothing lost: every post, revision, outbox row and search document is there")
    with stage("bare INSERT baseline"):
        bare = asyncio.run(bare_inserts(dataset, accepted, args.writers))
    bare_rate = len(accepted) / bare if bare else float("nan")
    print(f"  bare INSERTs: {bare_rate:.0f} writes/s ({len(accepted)} writes in {bare:.2f} s)")
    lost_note = "; ".join(check.problems) if check.problems else "nothing lost"
    if refused:
        lost_note += f"; {refused} requests refused or failed (statuses {statuses})"
    return [
        Figure(
            f"posting writes/s, accepted ({where})",
            rate,
            "writes/s",
            "bare INSERT",
            bare_rate,
            target=f">= {POSTS_PER_SECOND_TARGET:.0f}/s",
            target_limit=POSTS_PER_SECOND_TARGET,
            note=lost_note,
        ),
        Figure(
            f"posting writes/s, side effects done ({where})",
            end_to_end,
            "writes/s",
            "bare INSERT",
            bare_rate,
            target=f">= {POSTS_PER_SECOND_TARGET:.0f}/s",
            target_limit=POSTS_PER_SECOND_TARGET,
            note=f"outbox drained {drain:.1f} s after the last write",
        ),
        Figure(f"posting p99 latency ({where})", percentile(latencies, 99), "ms", better="lower"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_dataset_arguments(parser)
    parser.set_defaults(backends="postgres")
    parser.add_argument("--duration", type=float, default=15, help="seconds of posting")
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--drain-limit", type=float, default=300, help="seconds to wait for the outbox"
    )
    parser.add_argument(
        "--reindex", action="store_true", help="index the generated posts first (slow)"
    )
    parser.add_argument("--logs", type=Path, default=None, help="folder for the server log")
    args = parser.parse_args()
    figures: list[Figure] = []
    with datasets(args, "posting") as sets:
        for dataset in sets:
            if len(dataset.writers) < args.writers:
                parser.error(f"the dataset has {len(dataset.writers)} writers")
            figures += run(dataset, args)
    report(figures, args.results_json)


if __name__ == "__main__":
    main()
