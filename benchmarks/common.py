"""What the benchmark scripts share: figures and the summary table, datasets, servers, wrk.

Nothing here asserts timing. A `Figure` is one measured value with the baseline measured in
the same run, their ratio, and the target the project set for it; `met` only reports.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
AGORA = BIN / "agora"
POSTGRES_ADMIN_URL = os.environ.get(
    "AGORA_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
BENCH_DB_PREFIX = "agora_bench_"
MANIFEST = "bench-dataset.json"


# --- figures and the summary ---------------------------------------------------------------


@dataclass(slots=True)
class Figure:
    """One measured value against its baseline; `better` says which direction is good."""

    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    # "higher" (throughput) or "lower" (latency, time, memory).
    better: str = "higher"
    target: str = ""
    # Checked against the value ("value") or against value/baseline ("ratio").
    target_on: str = "value"
    target_limit: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or math.isnan(self.value):
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target_limit is None:
            return None
        subject = self.ratio if self.target_on == "ratio" else self.value
        if subject is None or math.isnan(subject):
            return None
        if self.better == "higher":
            return subject >= self.target_limit
        return subject <= self.target_limit

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figure:
        return cls(**data)


def fmt(value: float | None, unit: str = "") -> str:
    """A number for the table: three significant figures or so, with its unit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 100:
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def table(figures: Sequence[Figure]) -> str:
    """The summary: figure, baseline, ratio, target, met."""
    header = ("figure", "value", "baseline", "ratio", "target", "met")
    rows = [header]
    for f in figures:
        baseline = f"{fmt(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline_name else ""
        ratio = "" if f.ratio is None else f"{f.ratio:.3g}"
        met = {True: "met", False: "NOT MET", None: ""}[f.met]
        rows.append((f.name, fmt(f.value, f.unit), baseline, ratio, f.target, met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def report(figures: Sequence[Figure], results_json: str | None) -> None:
    """Print a script's figures; append them to the run's results file when there is one."""
    print()
    print(table(figures))
    sys.stdout.flush()
    save(figures, results_json)


def save(figures: Sequence[Figure], results_json: str | None) -> None:
    if results_json:
        with open(results_json, "a", encoding="utf-8") as handle:
            for figure in figures:
                handle.write(json.dumps(figure.to_json()) + "\n")


def read_results(path: Path) -> list[Figure]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Figure.from_json(json.loads(line)) for line in lines if line.strip()]


# --- small statistics ----------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


def median(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


@contextmanager
def stage(name: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Print how long a step took (and keep it in `timings`)."""
    print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    if timings is not None:
        timings[name] = elapsed
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {elapsed:.1f} s", flush=True)


# --- datasets ------------------------------------------------------------------------------


@dataclass(slots=True)
class Dataset:
    """A generated course in one database, described by the manifest in its data folder."""

    backend: str
    database_url: str
    data_dir: str
    scale: float
    course_slug: str
    password: str
    viewer: str
    thread_id: int
    thread_posts: int
    forum_id: int
    writers: list[str]
    writer_threads: list[int]
    edit_posts: dict[str, list[int]]
    counts: dict[str, int]
    timings: dict[str, float]
    postgres_database: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.data_dir)

    def save(self) -> None:
        (self.path / MANIFEST).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, data_dir: str | Path) -> Dataset:
        manifest = Path(data_dir) / MANIFEST
        if not manifest.exists():
            raise SystemExit(f"{manifest} does not exist: generate a dataset first (generate.py)")
        return cls(**json.loads(manifest.read_text(encoding="utf-8")))

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of an `agora` process on this dataset."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
        env.update(
            AGORA_DATA_DIR=self.data_dir,
            AGORA_DATABASE_URL=self.database_url,
            AGORA_DEMO="0",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env


def admin_url() -> str:
    return POSTGRES_ADMIN_URL.replace("postgres://", "postgresql://", 1)


def database_url(name: str) -> str:
    return f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


async def create_postgres_database(label: str) -> str:
    """A new, empty database named agora_bench_<label>_<random>; returns its name."""
    import asyncpg

    name = f"{BENCH_DB_PREFIX}{label}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(admin_url(), timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_postgres_database(name: str) -> None:
    """Drop a database this suite created (never any other)."""
    import asyncpg

    if not name.startswith(BENCH_DB_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a benchmark database")
    admin = await asyncpg.connect(admin_url(), timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def remove_dataset(dataset: Dataset) -> None:
    if dataset.postgres_database:
        asyncio.run(drop_postgres_database(dataset.postgres_database))
    shutil.rmtree(dataset.data_dir, ignore_errors=True)


# --- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after it do not.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree = _children()
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_mb(pid: int) -> float:
    """VmRSS of a process in MB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Server:
    """A web server process group started by this suite, stopped by its own process id."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, log_path: Path) -> None:
        self.args, self.env, self.port, self.log_path = args, env, port, log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/healthz", timeout: float = 120) -> Server:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(self.args)} exited with {self.process.returncode}; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.base_url + ready_path, timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"the server did not answer within {timeout:.0f} s")
        # With several workers the supervisor answers through whichever worker is up first.
        time.sleep(1.0 if self.worker_count() > 1 else 0.1)
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def worker_count(self) -> int:
        return len(self.worker_pids())

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's workers, or the server itself."""
        if self.process is None:
            return []
        children = [p for p in descendants(self.process.pid) if "multiprocessing" in cmdline(p)]
        workers = [p for p in children if "resource_tracker" not in cmdline(p)]
        return workers or [self.process.pid]

    def worker_rss_mb(self) -> list[float]:
        return [rss_mb(pid) for pid in self.worker_pids()]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def agora_server(dataset: Dataset, workers: int, log_path: Path, **env: str) -> Server:
    """`agora serve --workers N` on the dataset, on a free port (not yet started)."""
    port = free_port()
    args = [str(AGORA), "serve", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--workers", str(workers)]
    return Server(args, dataset.env(**env), port, log_path)


# --- logging in ----------------------------------------------------------------------------

_CSRF_INPUT = re.compile(r'name="csrf_token"\s+value="([0-9a-f]+)"')


@dataclass(slots=True)
class Login:
    """A browser that logged in through the real form: its cookies and its CSRF token."""

    cookies: dict[str, str]
    csrf_token: str

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in sorted(self.cookies.items()))


def log_in(base_url: str, username: str, password: str) -> Login:
    """GET the login form for its CSRF cookie and token, POST it, keep the session cookie."""
    with httpx.Client(base_url=base_url, timeout=30, follow_redirects=False) as client:
        page = client.get("/login")
        match = _CSRF_INPUT.search(page.text)
        if match is None:
            raise RuntimeError("the login page has no csrf_token field")
        response = client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": match.group(1)},
        )
        if response.status_code != 303 or "agora_session" not in client.cookies:
            raise RuntimeError(f"logging in as {username} failed: HTTP {response.status_code}")
        cookies = {name: client.cookies[name] for name in ("agora_session", "agora_csrf")}
        return Login(cookies=cookies, csrf_token=match.group(1))


# --- wrk -----------------------------------------------------------------------------------

WRK = shutil.which("wrk") or "/usr/bin/wrk"
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(slots=True)
class WrkRun:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkRun:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"unreadable wrk output:\n{output}")
    errors = 0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if bad:
        errors += int(bad.group(1))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return WrkRun(
        float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), int(total.group(1)), errors
    )


def wrk(
    url: str,
    *,
    duration: float,
    connections: int = 32,
    threads: int = 2,
    headers: Sequence[str] = (),
    timeout: float = 30,
) -> WrkRun:
    """One wrk run with latency percentiles."""
    args = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    # wrk gives up on a response after 2 s by default and leaves it out of the latencies;
    # a slow page must show up in p99 instead.
    args += ["--timeout", f"{timeout:g}s"]
    for header in headers:
        args += ["-H", header]
    done = subprocess.run([*args, url], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


@dataclass(slots=True)
class WrkSummary:
    """Medians over several wrk runs (each figure's own median)."""

    runs: list[WrkRun]

    @property
    def requests_per_second(self) -> float:
        return median([r.requests_per_second for r in self.runs])

    @property
    def p50_ms(self) -> float:
        return median([r.p50_ms for r in self.runs])

    @property
    def p99_ms(self) -> float:
        return median([r.p99_ms for r in self.runs])

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    def line(self) -> str:
        each = ", ".join(f"{r.requests_per_second:.0f}" for r in self.runs)
        return (
            f"{self.requests_per_second:8.1f} req/s (runs: {each})  p50 {self.p50_ms:7.1f} ms  "
            f"p99 {self.p99_ms:7.1f} ms  errors {self.errors}"
        )


def _probe(host: str, port: int, timeout: float) -> None:
    """One bare HTTP/1.0 request for a static file, read to the end."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"GET /static/favicon.svg HTTP/1.0\r\nHost: bench\r\n\r\n")
        while sock.recv(65536):
            pass


def settle(url: str, limit: float = 30) -> None:
    """Wait until the server has worked off requests that wrk left in flight when it stopped.

    Otherwise the next run starts behind a queue of abandoned requests. A static file needs no
    database or session, so an idle server answers it at once.
    """
    address = httpx.URL(url)
    deadline = time.monotonic() + limit
    quick = 0
    while quick < 2 and time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            _probe(address.host, address.port or 80, limit)
        except OSError:
            time.sleep(0.1)
        quick = quick + 1 if time.perf_counter() - start < 0.05 else 0


def wrk_median(url: str, *, runs: int, duration: float, warmup: float, **kwargs: Any) -> WrkSummary:
    """A warm-up run, then the median of `runs` measured runs, each on an idle server."""
    if warmup > 0:
        wrk(url, duration=warmup, **kwargs)
        settle(url)
    measured = []
    for _ in range(runs):
        measured.append(wrk(url, duration=duration, **kwargs))
        settle(url)
    return WrkSummary(measured)


def machine() -> str:
    """One line about where this ran."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}, "
        f"load average {load[0]:.2f} at start"
    )


def add_dataset_arguments(parser: Any) -> None:
    """--dataset DIR (repeatable) or --scale/--backends to generate fresh ones."""
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="DIR",
        help="data folder of a generated dataset (generate.py); repeat for several backends",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="size when generating")
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="backends to generate when no --dataset"
    )
    parser.add_argument("--results-json", default=None, help=argparse_suppress())


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


@contextmanager
def datasets(args: Any, label: str) -> Iterator[list[Dataset]]:
    """The datasets named on the command line, or fresh ones removed afterwards."""
    if args.dataset:
        yield [Dataset.load(path) for path in args.dataset]
        return
    import tempfile

    made: list[Dataset] = []
    try:
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            folder = Path(tempfile.mkdtemp(prefix=f"agora-bench-{backend}-"))
            # Its own process: the ORM keeps one database dialect per process.
            command = [sys.executable, str(ROOT / "benchmarks" / "generate.py")]
            command += ["--backend", backend, "--scale", str(args.scale)]
            command += ["--data-dir", str(folder), "--postgres-label", label]
            subprocess.run(command, check=True)
            made.append(Dataset.load(folder))
        yield made
    finally:
        for dataset in made:
            remove_dataset(dataset)
