"""Meilisearch backend: a thin adapter over meilisearch_python_sdk.AsyncClient."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from meilisearch_python_sdk import AsyncClient, AsyncIndex
from meilisearch_python_sdk.errors import MeilisearchApiError, MeilisearchError
from meilisearch_python_sdk.models.settings import MeilisearchSettings, Pagination, TypoTolerance

from search.backends import (
    MAX_RESULT_WINDOW,
    PostDocument,
    SearchError,
    SearchHit,
    SearchQuery,
    SearchResults,
    SearchUnavailable,
    course_filter,
    validate_query,
)

ENGINE = "meilisearch"
PRIMARY_KEY = "doc_key"
# Private-use characters as highlight tags: stripped from documents on the way in, so any found
# in Meilisearch's output are its own, and can become <mark> after the text is escaped.
PRE, POST = "\ue000", "\ue001"
_MARKED = re.compile(f"{PRE}(.*?){POST}", re.DOTALL)
_WS = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]")
# Quotes (phrase search) and leading minus (exclusion) are operators to Meilisearch; the
# embedded engine reads them as plain punctuation, and so should this one.
_OPERATORS = re.compile(r'"|(?:(?<=\s)|^)-+')
CROP_WORDS = 30
RETRIEVED = ["post_id", "thread_id", "course_id", "url", "thread_title", "body"]


def doc_key(doc_id: str) -> str:
    """Injective mapping of any id onto Meilisearch's allowed primary key characters."""
    out: list[str] = []
    for ch in doc_id:
        if ch.isascii() and (ch.isalnum() or ch == "-"):
            out.append(ch)
        else:
            out.extend(f"_{b:02x}" for b in ch.encode())
    return "".join(out)


def _clean(text: str) -> str:
    return text.replace(PRE, "").replace(POST, "")


def marked_html(formatted: str) -> str:
    """Escape Meilisearch's formatted text, then turn its highlight tags into <mark>."""
    marked = _clean(_MARKED.sub(r"<mark>\1</mark>", html.escape(formatted)))
    return _WS.sub(" ", marked).strip()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _timestamp(moment: datetime) -> float:
    return moment.timestamp()


def to_meili(doc: PostDocument) -> dict[str, object]:
    """The JSON document stored for a post; anonymous posts carry no author field at all."""
    out: dict[str, object] = {
        PRIMARY_KEY: doc_key(doc.id),
        "id": doc.id,
        "post_id": doc.post_id,
        "course_id": doc.course_id,
        "forum_id": doc.forum_id,
        "thread_id": doc.thread_id,
        "thread_kind": doc.thread_kind,
        "thread_title": _clean(doc.thread_title),
        "body": _clean(doc.body),
        "is_answered": doc.is_answered,
        "created_at_ts": _timestamp(doc.created_at),
        "url": doc.url,
    }
    if doc.author_handle is not None:
        out["author_handle"] = doc.author_handle
    return out


def filters(q: SearchQuery, courses: list[int]) -> list[str]:
    """Meilisearch filter expressions (ANDed) for a validated query."""
    out = [f"course_id IN [{', '.join(str(c) for c in courses)}]"]
    if q.forum_id is not None:
        out.append(f"forum_id = {q.forum_id}")
    if q.thread_kind is not None:
        out.append(f"thread_kind = {_quote(q.thread_kind)}")
    if q.unanswered_only:
        out.append('thread_kind = "question"')
        out.append("is_answered = false")
    if q.author_handle is not None:
        out.append(f"author_handle = {_quote(q.author_handle)}")
    if q.created_after is not None:
        out.append(f"created_at_ts >= {_timestamp(q.created_after)!r}")
    if q.created_before is not None:
        out.append(f"created_at_ts < {_timestamp(q.created_before)!r}")
    return out


SETTINGS = MeilisearchSettings(
    searchable_attributes=["thread_title", "body"],
    filterable_attributes=[
        "course_id",
        "forum_id",
        "thread_kind",
        "is_answered",
        "author_handle",
        "created_at_ts",
    ],
    sortable_attributes=["created_at_ts"],
    typo_tolerance=TypoTolerance(enabled=True),
    pagination=Pagination(max_total_hits=MAX_RESULT_WINDOW),
)


def _from_httpx(exc: BaseException) -> bool:
    # The SDK lets some transport errors of its HTTP library through unwrapped.
    return type(exc).__module__.split(".")[0].startswith("httpx")


class MeiliBackend:
    """Search backend on a Meilisearch server; every write waits until it is searchable."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        index_uid: str = "agora_posts",
        timeout_seconds: int = 10,
        task_timeout_ms: int = 60_000,
    ) -> None:
        self._url = url
        self._uid = index_uid
        self._client = AsyncClient(url, api_key, timeout=timeout_seconds)
        self._task_timeout_ms = task_timeout_ms
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._closed = False

    @property
    def index_uid(self) -> str:
        """Name of the Meilisearch index."""
        return self._uid

    @asynccontextmanager
    async def _guard(self, action: str) -> AsyncIterator[None]:
        if self._closed:
            raise SearchUnavailable("search backend is closed")
        try:
            yield
        except MeilisearchApiError as exc:
            if exc.code == "index_not_found":
                self._ready = False
            if exc.status_code >= 500 or exc.status_code in (401, 403, 404, 408, 429):
                raise SearchUnavailable(f"Meilisearch {action} failed: {exc}") from exc
            raise SearchError(f"Meilisearch {action} failed: {exc}") from exc
        except (MeilisearchError, OSError) as exc:
            raise SearchUnavailable(f"Meilisearch {action} failed: {exc}") from exc
        except Exception as exc:
            if _from_httpx(exc):
                raise SearchUnavailable(f"Meilisearch {action} failed: {exc}") from exc
            raise

    async def _wait(self, task_uid: int, action: str) -> None:
        result = await self._client.wait_for_task(
            task_uid, timeout_in_ms=self._task_timeout_ms, interval_in_ms=10
        )
        if result.status != "succeeded":
            raise SearchError(f"Meilisearch {action} task {task_uid} failed: {result.error}")

    async def _index(self) -> AsyncIndex:
        if not self._ready:
            await self.ensure_ready()
        return self._client.index(self._uid)

    async def ensure_ready(self) -> None:
        """Create the index if missing and apply the settings (idempotent)."""
        async with self._ready_lock, self._guard("setup"):
            index = await self._client.get_or_create_index(self._uid, primary_key=PRIMARY_KEY)
            if index.primary_key is None:
                await index.update(PRIMARY_KEY)
            elif index.primary_key != PRIMARY_KEY:
                raise SearchError(
                    f"index {self._uid} has primary key {index.primary_key!r}, "
                    f"expected {PRIMARY_KEY!r}"
                )
            task = await index.update_settings(SETTINGS)
            await self._wait(task.task_uid, "settings")
            self._ready = True

    async def upsert(self, docs: Sequence[PostDocument]) -> None:
        """Add or replace documents by id and wait until they are searchable."""
        latest = {doc.id: doc for doc in docs}
        if not latest:
            return
        async with self._guard("upsert"):
            index = await self._index()
            task = await index.add_documents([to_meili(d) for d in latest.values()])
            await self._wait(task.task_uid, "upsert")

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove documents by id and wait until it is done."""
        keys = sorted({doc_key(i) for i in ids})
        if not keys:
            return
        async with self._guard("delete"):
            index = await self._index()
            task = await index.delete_documents(keys)
            await self._wait(task.task_uid, "delete")

    async def apply(self, docs: Sequence[PostDocument], delete_ids: Sequence[str]) -> None:
        """Delete ids (but those upserted too), then upsert docs; both waited for."""
        kept = {doc.id for doc in docs}
        await self.delete([i for i in delete_ids if i not in kept])
        await self.upsert(docs)

    async def delete_course(self, course_id: int) -> None:
        """Remove every document of a course and wait until it is done."""
        if not isinstance(course_id, int) or isinstance(course_id, bool):
            raise ValueError("course_id must be an int")
        async with self._guard("delete_course"):
            index = await self._index()
            task = await index.delete_documents_by_filter(f"course_id = {course_id}")
            await self._wait(task.task_uid, "delete_course")

    async def count(self, course_id: int | None = None) -> int:
        """Number of documents, overall or in one course."""
        async with self._guard("count"):
            index = await self._index()
            if course_id is None:
                stats = await index.get_stats()
                return stats.number_of_documents
            page = await index.get_documents(
                filter=f"course_id = {int(course_id)}", limit=1, fields=["post_id"]
            )
            return page.total

    async def search(self, q: SearchQuery) -> SearchResults:
        """Run a query through Meilisearch's ranking (typo, prefix, attribute order)."""
        validate_query(q)
        courses = course_filter(q)
        if not courses:
            return SearchResults(total=0, hits=[])
        text = _OPERATORS.sub(" ", q.text).strip()
        has_words = bool(_WORD.search(text))
        expression: list[str | list[str]] = [*filters(q, courses)]
        async with self._guard("search"):
            index = await self._index()
            result = await index.search(
                text if has_words else "",
                filter=expression,
                page=q.page,
                hits_per_page=q.per_page,
                sort=None if has_words else ["created_at_ts:desc"],
                attributes_to_retrieve=RETRIEVED,
                attributes_to_highlight=["thread_title", "body"],
                attributes_to_crop=["body"],
                crop_length=CROP_WORDS,
                crop_marker="…",
                highlight_pre_tag=PRE,
                highlight_post_tag=POST,
                show_ranking_score=True,
            )
        hits = []
        for hit in result.hits:
            formatted = hit.get("_formatted") or hit
            hits.append(
                SearchHit(
                    post_id=int(hit["post_id"]),
                    thread_id=int(hit["thread_id"]),
                    course_id=int(hit["course_id"]),
                    score=float(hit.get("_rankingScore", 0.0)) if has_words else 0.0,
                    title_html=marked_html(str(formatted.get("thread_title", ""))),
                    snippet_html=marked_html(str(formatted.get("body", ""))),
                    url=str(hit.get("url") or ""),
                )
            )
        total = result.total_hits if result.total_hits is not None else len(hits)
        return SearchResults(total=total, hits=hits)

    async def health(self) -> dict[str, object]:
        """Whether the server answers and the index exists."""
        try:
            async with self._guard("health"):
                status = (await self._client.health()).status
                stats = await self._client.index(self._uid).get_stats()
        except SearchError as exc:
            return {"ok": False, "engine": ENGINE, "detail": str(exc)}
        except Exception as exc:  # health must never raise
            return {"ok": False, "engine": ENGINE, "detail": f"unexpected error: {exc!r}"}
        return {
            "ok": status == "available",
            "engine": ENGINE,
            "detail": f"server {status}; index {self._uid}: {stats.number_of_documents} documents",
        }

    async def close(self) -> None:
        """Close the HTTP client; later calls raise SearchUnavailable."""
        if not self._closed:
            self._closed = True
            await self._client.aclose()

    async def delete_index(self) -> None:
        """Drop the whole index (for tests and full rebuilds)."""
        async with self._guard("delete_index"):
            await self._client.delete_index_if_exists(self._uid)
            self._ready = False
