"""Run the benchmark suite (`make bench`) and print one summary table.

Generates the course into SQLite and PostgreSQL, then runs each script as its own process
against it: web (thread page, forum index, memory), log (audit verify, proofs, appends),
posting (32 concurrent writers), search and aggregation. Every script prints its own figures
as it goes; the summary lists each figure with its baseline from the same run, the ratio,
the target and whether it was met. Nothing here fails on a missed target.

Run: python benchmarks/run.py [--scale 1.0] [--only web,log,posting,search,aggregation]
     [--duration 10] [--runs 3] [--keep]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from benchmarks.common import (  # noqa: E402
    Dataset,
    fmt,
    machine,
    read_results,
    remove_dataset,
    stage,
    table,
)

SCRIPTS = ("web", "log", "posting", "search", "aggregation")
NEEDS_DATA = {"web", "log", "posting"}


def script(name: str) -> str:
    return str(_HERE / f"{name}.py")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = the full sizes")
    parser.add_argument("--only", default=",".join(SCRIPTS), help="scripts to run")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3, help="wrk runs (median reported)")
    parser.add_argument("--workers", default="1,2", help="web worker counts")
    parser.add_argument("--posting-seconds", type=float, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the generated datasets")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown scripts {unknown}; choose from {', '.join(SCRIPTS)}")
    if args.scale <= 0:
        parser.error("--scale must be positive")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    work = Path(tempfile.mkdtemp(prefix="agora-bench-"))
    results = work / "results.jsonl"
    timings: dict[str, float] = {}
    failures: list[str] = []
    made: dict[str, Dataset] = {}
    started = time.perf_counter()
    print(f"machine: {machine()}")
    print(f"scale {args.scale}, scripts {', '.join(only)}, work folder {work}")

    def launch(name: str, *extra: str) -> None:
        with stage(name, timings):
            done = subprocess.run(
                [sys.executable, script(name), *extra, "--results-json", str(results)],
                check=False,
            )
        if done.returncode != 0:
            failures.append(f"{name} exited with {done.returncode}")

    try:
        if NEEDS_DATA & set(only):
            wanted = backends if set(only) - {"posting"} else ["postgres"]
            for backend in wanted:
                folder = work / backend
                command = [sys.executable, script("generate"), "--backend", backend]
                command += ["--scale", str(args.scale), "--data-dir", str(folder)]
                with stage(f"generate {backend}", timings):
                    # Its own process: the ORM keeps one database dialect per process.
                    done = subprocess.run([*command, "--postgres-label", "suite"], check=False)
                if done.returncode != 0:
                    failures.append(f"generating {backend} exited with {done.returncode}")
                    continue
                made[backend] = Dataset.load(folder)
        data = [arg for b in backends if b in made for arg in ("--dataset", made[b].data_dir)]
        if "web" in only:
            launch(
                "web",
                *data,
                "--duration",
                str(args.duration),
                "--runs",
                str(args.runs),
                "--workers",
                args.workers,
                "--logs",
                str(work / "logs"),
            )
        if "log" in only:
            launch("moderation_log", *data)
        if "posting" in only and "postgres" in made:
            launch(
                "posting",
                "--dataset",
                made["postgres"].data_dir,
                "--duration",
                str(args.posting_seconds),
                "--logs",
                str(work / "logs"),
            )
        if not args.keep:
            for dataset in made.values():
                remove_dataset(dataset)
            made.clear()
        if "search" in only:
            launch("search", "--posts", str(max(1_000, round(200_000 * args.scale))))
        if "aggregation" in only:
            reviews = max(1_000, round(100_000 * args.scale))
            submissions = max(300, round(30_000 * args.scale))
            launch("aggregation", "--reviews", str(reviews), "--submissions", str(submissions))
    finally:
        if made and not args.keep:
            for dataset in made.values():
                remove_dataset(dataset)

    print()
    print("=" * 100)
    print(f"SUMMARY (scale {args.scale}; {machine()})")
    print(table(read_results(results)))
    print()
    print("stage timings: " + ", ".join(f"{k} {fmt(v, 's')}" for k, v in timings.items()))
    print(f"total {fmt(time.perf_counter() - started, 's')}")
    for dataset in made.values():
        print(f"kept dataset: {dataset.data_dir} ({dataset.database_url})")
    for failure in failures:
        print(f"FAILED: {failure}")


if __name__ == "__main__":
    main()
