"""Generate a realistic course into SQLite or PostgreSQL, through the real schema, fast.

At --scale 1: 5,000 learners (and mentors), 50 forums, 20,000 threads, 200,000 posts (some
anonymous, some withdrawn, some edited with revisions), votes, subscriptions, read markers,
and 100,000 moderation log entries (hides, removals, staff edits, locks, pins, warnings,
silences, suspensions, lifts, role changes) with their notices and sanctions, and the posts
and threads in the state those acts left them. Some threads have exactly 50 posts.

The database is migrated with the project's own migrations; rows are bulk-inserted
(executemany on SQLite, COPY on PostgreSQL). Post HTML comes from forum.markup on a pool
of bodies, every account shares one argon2 hash, and the log entries, leaves, signed tree
heads and running state are built with moderation.log's own functions, so
`agora audit verify` accepts them. Writes a manifest (bench-dataset.json) into the data
folder that the other scripts read.

Run: python benchmarks/generate.py --backend sqlite|postgres [--scale S] [--data-dir DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from benchmarks.common import (  # noqa: E402
    Dataset,
    create_postgres_database,
    database_url,
    stage,
)
from benchmarks.course import (  # noqa: E402
    COURSE_SLUG,
    PASSWORD,
    CourseBuilder,
    Sizes,
    body_pool,
)
from benchmarks.history import Table  # noqa: E402

if TYPE_CHECKING:
    from moderation.log import Signer

# --- writing -------------------------------------------------------------------------------

ORDER = (
    "users", "course", "members", "rules", "forums", "threads", "posts", "revisions", "votes",
    "subscriptions", "visits", "log_entries", "heads", "log_state", "notices", "sanctions",
)  # fmt: skip


def _check_columns(name: str, columns: Sequence[str], schema: dict[str, bool]) -> None:
    """Fail clearly when the schema gained a required column this generator does not fill."""
    missing = [c for c, required in schema.items() if required and c not in columns]
    unknown = [c for c in columns if c not in schema]
    if missing or unknown:
        raise SystemExit(
            f"{name}: the schema and benchmarks/generate.py disagree (not filled: {missing}, "
            f"not in the table: {unknown}); teach the generator about the change."
        )


def write_sqlite(path: Path, tables: dict[str, Table]) -> None:
    sqlite3.register_adapter(datetime, lambda d: d.isoformat(" "))
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA synchronous=OFF")
        with con:
            for key in ORDER:
                table = tables[key]
                info = con.execute(f"PRAGMA table_info({table.name})").fetchall()
                # (cid, name, type, notnull, default, pk): required = NOT NULL, no default, not pk
                schema = {row[1]: bool(row[3]) and row[4] is None and not row[5] for row in info}
                _check_columns(table.name, table.columns, schema)
                marks = ", ".join("?" * len(table.columns))
                con.executemany(
                    f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({marks})",
                    table.rows,
                )
    finally:
        con.close()


async def write_postgres(url: str, tables: dict[str, Table]) -> None:
    import asyncpg

    con = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        async with con.transaction():
            for key in ORDER:
                table = tables[key]
                info = await con.fetch(
                    "SELECT column_name, is_nullable, column_default "
                    "FROM information_schema.columns WHERE table_name = $1",
                    table.name,
                )
                schema = {
                    r["column_name"]: r["is_nullable"] == "NO" and r["column_default"] is None
                    for r in info
                }
                _check_columns(table.name, table.columns, schema)
                await con.copy_records_to_table(
                    table.name, records=table.rows, columns=list(table.columns)
                )
        for key in ORDER:
            name = tables[key].name
            await con.execute(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"
            )
        # A running site's autovacuum keeps statistics; a fresh bulk load has none yet.
        await con.execute("ANALYZE")
    finally:
        await con.close()


def build(
    sizes: Sizes,
    seed: int,
    signer: Signer,
    *,
    pool_size: int = 600,
    timings: dict[str, float] | None = None,
) -> CourseBuilder:
    """Every row of the course in memory, the log signed with `signer`."""
    from core.passwords import hash_password

    builder = CourseBuilder(sizes, seed, hash_password(PASSWORD), datetime.now(UTC))
    with stage("build rows in memory", timings):
        builder.pool = body_pool(builder.rng, pool_size)
        builder.people()
        builder.forums()
        builder.threads_and_posts()
    with stage("moderation history", timings):
        builder.moderation()
        builder.log_tables(signer)
        builder.post_tables()
    return builder


def generate(
    backend: str,
    data_dir: Path,
    *,
    scale: float = 1.0,
    seed: int = 0,
    log_entries: int | None = None,
    postgres_label: str = "data",
) -> Dataset:
    """Build the course, migrate a new database, write everything, save the manifest."""
    from core.db import migrate
    from core.settings import load_settings
    from moderation import log

    timings: dict[str, float] = {}
    data_dir.mkdir(parents=True, exist_ok=True)
    pg_name = None
    if backend == "postgres":
        pg_name = asyncio.run(create_postgres_database(postgres_label))
        url = database_url(pg_name)
    else:
        url = f"sqlite://{data_dir / 'agora.sqlite3'}"
    settings = load_settings(
        {"AGORA_DATA_DIR": str(data_dir), "AGORA_DATABASE_URL": url, "AGORA_DEMO": "0"}
    )
    sizes = Sizes.at(scale, log_entries)
    print(f"generating {backend} course: {sizes}")
    with stage("migrate", timings):
        asyncio.run(migrate(settings))
    builder = build(sizes, seed, log.load_signer(data_dir), timings=timings)
    with stage(f"write {backend}", timings):
        if backend == "postgres":
            asyncio.run(write_postgres(url, builder.tables))
        else:
            write_sqlite(data_dir / "agora.sqlite3", builder.tables)
    picks = builder.picks()
    dataset = Dataset(
        backend=backend,
        database_url=url,
        data_dir=str(data_dir),
        scale=scale,
        course_slug=COURSE_SLUG,
        password=PASSWORD,
        counts=builder.counts(),
        timings=timings,
        postgres_database=pg_name,
        **picks,
    )
    dataset.save()
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--log-entries", type=int, default=None, help="default 100,000 times the scale"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a new temp folder")
    parser.add_argument("--postgres-label", default="data", help="agora_bench_<label>_<random>")
    args = parser.parse_args()
    if args.scale <= 0:
        parser.error("--scale must be positive")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix=f"agora-bench-{args.backend}-"))
    start = time.perf_counter()
    dataset = generate(
        args.backend,
        data_dir,
        scale=args.scale,
        seed=args.seed,
        log_entries=args.log_entries,
        postgres_label=args.postgres_label,
    )
    print(f"done in {time.perf_counter() - start:.1f} s: {json.dumps(dataset.counts)}")
    print(f"data folder: {dataset.data_dir}")
    print(f"database:    {dataset.database_url}")
    if dataset.postgres_database:
        print(f"(drop it when done: DROP DATABASE {dataset.postgres_database})")


if __name__ == "__main__":
    main()
