"""The search interface every backend implements, and the types it exchanges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

ThreadKind = Literal["discussion", "question"]
THREAD_KINDS: frozenset[str] = frozenset({"discussion", "question"})

MAX_QUERY_CHARS = 500
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 20
# Deepest result reachable by paging; past it a query is refused rather than served slowly.
MAX_RESULT_WINDOW = 1000
MAX_ID_CHARS = 200


class SearchError(Exception):
    """A search engine failure that is not a plain outage."""


class SearchUnavailable(SearchError):
    """The engine cannot be reached or used right now; retry later."""


@dataclass(frozen=True, slots=True)
class PostDocument:
    """One forum post as the search index sees it."""

    id: str
    post_id: int
    course_id: int
    forum_id: int
    thread_id: int
    thread_kind: ThreadKind
    thread_title: str
    body: str
    author_handle: str | None
    is_answered: bool
    created_at: datetime
    url: str = ""

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > MAX_ID_CHARS:
            raise ValueError(f"document id must be 1-{MAX_ID_CHARS} characters")
        if self.thread_kind not in THREAD_KINDS:
            raise ValueError(f"thread_kind must be one of {sorted(THREAD_KINDS)}")
        if self.author_handle is not None and not self.author_handle:
            raise ValueError("author_handle must be None (anonymous) or a non-empty handle")
        for name in ("post_id", "course_id", "forum_id", "thread_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an int")
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        object.__setattr__(self, "created_at", self.created_at.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A search: course_ids always limits results (empty: none); after <= created_at < before."""

    text: str
    course_ids: Sequence[int]
    forum_id: int | None = None
    thread_kind: ThreadKind | None = None
    unanswered_only: bool = False
    author_handle: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result; title_html and snippet_html are escaped text plus <mark> tags only."""

    post_id: int
    thread_id: int
    course_id: int
    score: float
    title_html: str
    snippet_html: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class SearchResults:
    """A page of hits and the (possibly estimated) number of matching posts."""

    total: int
    hits: list[SearchHit] = field(default_factory=list)


@runtime_checkable
class SearchBackend(Protocol):
    """What the indexing jobs and the search views rely on, whatever the engine."""

    async def ensure_ready(self) -> None:
        """Create the index and its settings if needed; safe to call repeatedly."""
        ...

    async def upsert(self, docs: Sequence[PostDocument]) -> None:
        """Add or replace documents by id; visible to search when this returns."""
        ...

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove documents by id; unknown ids are ignored."""
        ...

    async def apply(self, docs: Sequence[PostDocument], delete_ids: Sequence[str]) -> None:
        """Upsert docs and delete ids as one change (an id in both keeps its new document)."""
        ...

    async def delete_course(self, course_id: int) -> None:
        """Remove every document of one course."""
        ...

    async def search(self, q: SearchQuery) -> SearchResults:
        """Run a query; raises ValueError for malformed queries before touching the engine."""
        ...

    async def count(self, course_id: int | None = None) -> int:
        """Number of indexed documents, overall or in one course."""
        ...

    async def health(self) -> dict[str, object]:
        """Report {"ok", "engine", "detail"}; never raises."""
        ...

    async def close(self) -> None:
        """Release resources; later calls raise SearchUnavailable."""
        ...


def validate_query(q: SearchQuery) -> None:
    """Raise ValueError if the query is malformed."""
    if not isinstance(q.text, str):
        raise ValueError("text must be a string")
    if len(q.text) > MAX_QUERY_CHARS:
        raise ValueError(f"search text is limited to {MAX_QUERY_CHARS} characters")
    if isinstance(q.course_ids, str | bytes):
        raise ValueError("course_ids must be a sequence of ints")
    for cid in q.course_ids:
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise ValueError("course_ids must be a sequence of ints")
    if q.forum_id is not None and (not isinstance(q.forum_id, int) or isinstance(q.forum_id, bool)):
        raise ValueError("forum_id must be an int or None")
    if q.thread_kind is not None and q.thread_kind not in THREAD_KINDS:
        raise ValueError(f"thread_kind must be one of {sorted(THREAD_KINDS)} or None")
    if q.author_handle is not None and not q.author_handle:
        raise ValueError("author_handle must be None or a non-empty handle")
    for name in ("page", "per_page"):
        value = getattr(q, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an int")
    if q.page < 1:
        raise ValueError("page must be 1 or more")
    if not 1 <= q.per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}")
    if q.page * q.per_page > MAX_RESULT_WINDOW:
        raise ValueError(f"results past the first {MAX_RESULT_WINDOW} cannot be paged to")
    for name in ("created_after", "created_before"):
        value = getattr(q, name)
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    if (
        q.created_after is not None
        and q.created_before is not None
        and q.created_after >= q.created_before
    ):
        raise ValueError("created_after must be earlier than created_before")


def course_filter(q: SearchQuery) -> list[int]:
    """The distinct course ids a validated query may see, in a stable order."""
    return sorted(set(q.course_ids))
