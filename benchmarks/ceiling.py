"""The ceiling: a bare Starlette + Jinja2 endpoint rendering a 50-post thread from memory.

No database, no sessions, no middleware: what the web stack alone can serve on this machine.
The page has the shape and about the size of Agora's thread page (a post card per post with
author, time, body HTML, a vote form and a reply form per answer), and uvicorn runs with the
options `agora serve` uses, so the gap to the real thread page is the application's own work.

Run: python benchmarks/ceiling.py [--port P] [--workers N]   (GET /thread)
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import argparse  # noqa: E402
import random  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from jinja2 import Environment, FileSystemLoader, select_autoescape  # noqa: E402
from markupsafe import Markup  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import HTMLResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

TEMPLATES = _HERE / "templates"


@dataclass(slots=True)
class Post:
    id: int
    author: str
    handle: str | None
    created_at: datetime
    body_html: Markup
    votes: int
    replies: list[Post] = field(default_factory=list)


@dataclass(slots=True)
class Thread:
    id: int
    title: str
    kind: str
    opening: Post
    answers: list[Post]


def sample_thread(seed: int = 0) -> Thread:
    """A thread of 50 posts: the opening post, 29 answers and 20 replies under them."""
    from benchmarks.course import body_pool

    rng = random.Random(seed)
    pool = body_pool(rng, 50)
    start = datetime(2026, 1, 12, 9, 30, tzinfo=UTC)

    def post(n: int) -> Post:
        anonymous = rng.random() < 0.08
        return Post(
            id=1000 + n,
            author="Anonymous learner" if anonymous else f"Learner {rng.randint(1, 5000)}",
            handle=None if anonymous else f"learner{rng.randint(1, 5000):05d}",
            created_at=start + timedelta(minutes=37 * n),
            body_html=Markup(pool[n][1]),
            votes=rng.randint(0, 4),
        )

    answers = [post(n) for n in range(1, 30)]
    for n in range(30, 50):
        answers[(n * 7) % len(answers)].replies.append(post(n))
    return Thread(
        1, "How does the chain rule relate to substitution?", "question", post(0), answers
    )


def create_app() -> Starlette:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template("ceiling_thread.html")
    thread = sample_thread()

    async def thread_page(request: Request) -> HTMLResponse:
        html = template.render(
            thread=thread,
            course="Foundations of Quantitative Reasoning",
            slug="bench-course",
            viewer="Learner 7",
            csrf_token="0" * 64,
        )
        return HTMLResponse(html)

    return Starlette(routes=[Route("/thread", thread_page)])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same uvicorn options as `agora serve` (core/cli.py).
    uvicorn.run(
        "benchmarks.ceiling:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        log_level="info",
    )


if __name__ == "__main__":
    main()
