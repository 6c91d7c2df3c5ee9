"""Pages under load: the thread page and the forum index, against the ceiling, and memory.

For each dataset (SQLite, PostgreSQL) and each worker count, runs the real `agora serve
--workers N`, logs in as a learner through the login form, checks the thread page shows its
50 posts, then drives it with wrk (default -t2 -c32 -d10s --latency, a warm-up run, then the
median of 3 runs). The baseline is benchmarks/ceiling.py served by uvicorn with the same
number of workers in the same run. After the load it reads VmRSS of each worker process.

Run: python benchmarks/web.py [--dataset DIR ...] [--workers 1,2] [--duration 10] [--runs 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import httpx  # noqa: E402

from benchmarks.common import (  # noqa: E402
    ROOT,
    Dataset,
    Figure,
    Server,
    WrkSummary,
    add_dataset_arguments,
    agora_server,
    datasets,
    free_port,
    log_in,
    machine,
    report,
    wrk_median,
)

THREAD_P99_TARGET_MS = 100.0
THREAD_RATIO_TARGET = 0.5
RSS_TARGET_MB = 200.0


@dataclass(slots=True)
class Load:
    duration: float
    runs: int
    warmup: float
    connections: int
    threads: int

    def measure(self, url: str, headers: list[str]) -> WrkSummary:
        return wrk_median(
            url,
            runs=self.runs,
            duration=self.duration,
            warmup=self.warmup,
            connections=self.connections,
            threads=self.threads,
            headers=headers,
        )


def ceiling_server(workers: int, log_path: Path) -> Server:
    port = free_port()
    args = [sys.executable, str(ROOT / "benchmarks" / "ceiling.py"), "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return Server([*args, "--workers", str(workers)], env, port, log_path)


def _posts_on(html: str) -> int:
    return len(re.findall(r'<article[^>]*\bid="post-\d+"', html))


def measure_ceiling(workers: int, load: Load, logs: Path) -> tuple[WrkSummary, float, int]:
    server = ceiling_server(workers, logs / f"ceiling-{workers}.log")
    with server.start(ready_path="/thread"):
        page = httpx.get(server.base_url + "/thread", timeout=30)
        summary = load.measure(server.base_url + "/thread", [])
        rss = max(server.worker_rss_mb())
    print(
        f"  ceiling, {workers} worker(s): {summary.line()}  "
        f"({_posts_on(page.text)} posts, {len(page.content):,} bytes)"
    )
    return summary, rss, len(page.content)


def measure_agora(
    dataset: Dataset, workers: int, load: Load, logs: Path
) -> tuple[WrkSummary, WrkSummary, list[float], int]:
    server = agora_server(dataset, workers, logs / f"agora-{dataset.backend}-{workers}.log")
    with server.start():
        login = log_in(server.base_url, dataset.viewer, dataset.password)
        headers = [f"Cookie: {login.cookie_header}"]
        thread_url = f"{server.base_url}/courses/{dataset.course_slug}/threads/{dataset.thread_id}"
        index_url = f"{server.base_url}/courses/{dataset.course_slug}/forums"
        page = httpx.get(thread_url, headers={"Cookie": login.cookie_header}, timeout=30)
        shown = _posts_on(page.text)
        if page.status_code != 200 or shown != dataset.thread_posts:
            raise RuntimeError(
                f"the thread page answered {page.status_code} with {shown} posts "
                f"(expected 200 with {dataset.thread_posts}); see {server.log_path}"
            )
        thread = load.measure(thread_url, headers)
        index = load.measure(index_url, headers)
        rss = server.worker_rss_mb()
        after = httpx.get(thread_url, headers={"Cookie": login.cookie_header}, timeout=30)
        if after.status_code != 200:
            raise RuntimeError(f"after the load the thread page answered {after.status_code}")
    print(f"  {dataset.backend}, {workers} worker(s), thread page: {thread.line()}")
    print(f"  {dataset.backend}, {workers} worker(s), forum index: {index.line()}")
    print(
        f"  {dataset.backend}, {workers} worker(s): worker RSS after load "
        + ", ".join(f"{mb:.0f} MB" for mb in rss)
        + f"; thread page {len(page.content):,} bytes"
    )
    return thread, index, rss, len(page.content)


def run(sets: list[Dataset], worker_counts: list[int], load: Load, logs: Path) -> list[Figure]:
    figures: list[Figure] = []
    logs.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; server logs in {logs}")
    for workers in worker_counts:
        print(f"{workers} worker(s):")
        ceiling, ceiling_rss, ceiling_bytes = measure_ceiling(workers, load, logs)
        for dataset in sets:
            thread, index, rss, page_bytes = measure_agora(dataset, workers, load, logs)
            where = f"{dataset.backend}, {workers}w"
            last = workers == max(worker_counts)
            size_note = (
                f"page {page_bytes:,} bytes, ceiling {ceiling_bytes:,} bytes"
                if dataset is sets[0]
                else ""
            )
            figures += [
                Figure(
                    f"thread page req/s ({where})",
                    thread.requests_per_second,
                    "req/s",
                    "ceiling",
                    ceiling.requests_per_second,
                    target=f">= {THREAD_RATIO_TARGET:.0%} of ceiling",
                    target_on="ratio",
                    target_limit=THREAD_RATIO_TARGET,
                    note=size_note,
                ),
                Figure(
                    f"thread page p50 ({where})",
                    thread.p50_ms,
                    "ms",
                    "ceiling",
                    ceiling.p50_ms,
                    better="lower",
                ),
                Figure(
                    f"thread page p99 ({where})",
                    thread.p99_ms,
                    "ms",
                    "ceiling",
                    ceiling.p99_ms,
                    better="lower",
                    target=f"< {THREAD_P99_TARGET_MS:.0f} ms" if last else "",
                    target_limit=THREAD_P99_TARGET_MS if last else None,
                ),
                Figure(
                    f"forum index req/s ({where})",
                    index.requests_per_second,
                    "req/s",
                    "ceiling",
                    ceiling.requests_per_second,
                ),
                Figure(
                    f"forum index p99 ({where})",
                    index.p99_ms,
                    "ms",
                    "ceiling",
                    ceiling.p99_ms,
                    better="lower",
                ),
                Figure(
                    f"worker RSS after load ({where})",
                    max(rss),
                    "MB",
                    "ceiling worker",
                    ceiling_rss,
                    better="lower",
                    target=f"<= {RSS_TARGET_MB:.0f} MB",
                    target_limit=RSS_TARGET_MB,
                ),
            ]
            errors = thread.errors + index.errors
            if errors:
                figures[-1].note = f"{errors} failed or non-2xx/3xx responses under wrk"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_dataset_arguments(parser)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3, help="wrk runs; the median is reported")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--logs", type=Path, default=None, help="folder for the server logs")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    load = Load(args.duration, args.runs, args.warmup, args.connections, args.threads)
    with datasets(args, "web") as sets:
        logs = args.logs or Path(tempfile.mkdtemp(prefix="agora-bench-web-"))
        figures = run(sets, worker_counts, load, logs)
    report(figures, args.results_json)


if __name__ == "__main__":
    main()
