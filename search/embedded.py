"""Embedded search backend on tantivy: no service, index kept in a directory or in memory."""

from __future__ import annotations

import asyncio
import html
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import tantivy

from search.backends import (
    PostDocument,
    SearchHit,
    SearchQuery,
    SearchResults,
    SearchUnavailable,
    course_filter,
    validate_query,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

ENGINE = "tantivy"
STEM_TOKENIZER = "agora_stem"
WORD_TOKENIZER = "agora_words"
MAX_TOKEN_CHARS = 40
# Like Meilisearch: at most this many words of a query are searched.
MAX_QUERY_WORDS = 10
TITLE_BOOST = 2.0
# Fuzzy and prefix matches score a small constant, so an exact (BM25) match of a word always
# outranks a match of the same word that needed a typo or a completion.
FUZZY_TITLE_SCORE = 0.1
FUZZY_BODY_SCORE = 0.05
SNIPPET_CHARS = 200
SNIPPET_LEAD_CHARS = 40
MAX_SNIPPET_SPANS = 64
MAX_TITLE_CHARS = 300
WRITER_HEAP_PER_THREAD = 64_000_000
BULK_BATCH = 5_000
LOCK_RETRY_SECONDS = 0.05

_WS = re.compile(r"\s+")
_WORDISH = re.compile(r"[^\W_]")


def _is_panic(exc: BaseException) -> bool:
    # Rust panics surface as pyo3_runtime.PanicException, a BaseException that cannot be imported.
    return type(exc).__name__ == "PanicException"


def typo_budget(word: str) -> int:
    """Edits allowed for a query word: 0 below 5 chars, 1 for 5-8, 2 beyond (as Meilisearch)."""
    if len(word) >= 9:
        return 2
    if len(word) >= 5:
        return 1
    return 0


def _analyzer(stem: bool) -> tantivy.TextAnalyzer:
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_CHARS))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
    )
    if stem:
        builder = builder.filter(tantivy.Filter.stemmer("english"))
    return builder.build()


def _build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("post_id", stored=True)
    sb.add_integer_field("thread_id", stored=True)
    sb.add_integer_field("course_id", stored=True, indexed=True, fast=True)
    sb.add_integer_field("forum_id", indexed=True)
    sb.add_text_field("thread_kind", tokenizer_name="raw", index_option="basic")
    sb.add_boolean_field("is_answered", indexed=True)
    # Indexed only, never stored, and absent altogether for anonymous posts.
    sb.add_text_field("author_handle", tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("created_at_us", indexed=True, fast=True)
    sb.add_text_field("title", stored=True, tokenizer_name=STEM_TOKENIZER, index_option="freq")
    sb.add_text_field("body", stored=True, tokenizer_name=STEM_TOKENIZER, index_option="freq")
    sb.add_text_field("title_words", tokenizer_name=WORD_TOKENIZER, index_option="basic")
    sb.add_text_field("body_words", tokenizer_name=WORD_TOKENIZER, index_option="basic")
    sb.add_bytes_field("url", stored=True)
    return sb.build()


def _micros(value: datetime) -> int:
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _handle_key(handle: str) -> str:
    # Case-insensitive like Meilisearch's filters.
    return handle.lower()


def _to_tantivy(doc: PostDocument) -> tantivy.Document:
    d = tantivy.Document()
    d.add_text("id", doc.id)
    d.add_integer("post_id", doc.post_id)
    d.add_integer("thread_id", doc.thread_id)
    d.add_integer("course_id", doc.course_id)
    d.add_integer("forum_id", doc.forum_id)
    d.add_text("thread_kind", doc.thread_kind)
    d.add_boolean("is_answered", doc.is_answered)
    if doc.author_handle is not None:
        d.add_text("author_handle", _handle_key(doc.author_handle))
    d.add_integer("created_at_us", _micros(doc.created_at))
    d.add_text("title", doc.thread_title)
    d.add_text("body", doc.body)
    d.add_text("title_words", doc.thread_title)
    d.add_text("body_words", doc.body)
    d.add_bytes("url", doc.url.encode())
    return d


def _within(a: str, b: str, limit: int, prefix: bool) -> bool:
    """Whether b (or, with prefix, some prefix of b) is within `limit` edits of a.

    Restricted Damerau-Levenshtein (a transposition costs one), as tantivy's fuzzy queries.
    """
    if limit == 0:
        return b.startswith(a) if prefix else a == b
    la, lb = len(a), len(b)
    if lb < la - limit or (not prefix and lb > la + limit):
        return False
    big = limit + 1
    prev2: list[int] = []
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [big] * (lb + 1)
        cur[0] = i
        lo, hi = max(1, i - limit), min(lb, i + limit)
        for j in range(lo, hi + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            best = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                best = min(best, prev2[j - 2] + 1)
            cur[j] = min(best, big)
        if min(cur[lo - 1 : hi + 1]) > limit:
            return False
        prev2, prev = prev, cur
    if prefix:
        return min(prev) <= limit
    return prev[lb] <= limit


def _bigrams(word: str) -> set[str]:
    return {word[i : i + 2] for i in range(len(word) - 1)}


@dataclass(frozen=True, slots=True)
class _Terms:
    """The analysed words of a query, for building the query and for highlighting."""

    words: tuple[str, ...]
    stems: tuple[str, ...]
    prefix_last: bool

    def budget(self, i: int) -> int:
        return typo_budget(self.words[i])

    def is_prefix(self, i: int) -> bool:
        return self.prefix_last and i == len(self.words) - 1 and len(self.words[i]) >= 2


class _Highlighter:
    """Marks the words of a text that a query matched, escaping everything else."""

    def __init__(self, terms: _Terms, words: tantivy.TextAnalyzer, stems: tantivy.TextAnalyzer):
        self._terms = terms
        self._words = words
        self._stems = stems
        self._exact = set(terms.words)
        self._stem_set = set(terms.stems)
        self._cache: dict[str, bool] = {}
        # (word, edits allowed, prefix?, bigrams of word) for words that may match inexactly.
        self._inexact = [
            (word, terms.budget(i), terms.is_prefix(i), _bigrams(word))
            for i, word in enumerate(terms.words)
            if terms.budget(i) or terms.is_prefix(i)
        ]

    def _matches(self, token: str) -> bool:
        if token in self._exact:
            return True
        stemmed = self._stems.analyze(token)
        if stemmed and stemmed[0] in self._stem_set:
            return True
        for word, budget, prefix, grams in self._inexact:
            if len(token) < len(word) - budget or (not prefix and len(token) > len(word) + budget):
                continue
            head = token[: len(word) + budget] if prefix else token
            # Each edit removes at most three of the word's bigrams: a cheap test first.
            if len(grams - _bigrams(head)) > 3 * budget:
                continue
            if _within(word, token, budget, prefix):
                return True
        return False

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character ranges of matched words in text."""
        if not self._terms.words:
            return []
        cache = self._cache
        out: list[tuple[int, int]] = []
        # Verdicts are cached per distinct token: a page of hits repeats most of its words.
        for token in self._words.pre_tokenize(text).tokens:
            word = token.text
            hit = cache.get(word)
            if hit is None:
                hit = cache[word] = self._matches(word)
            if hit:
                out.append((token.char_offset_from, token.char_offset_to))
        return out

    def title(self, text: str) -> str:
        """The whole title (cut if very long) with matches marked."""
        cut = text[:MAX_TITLE_CHARS]
        spans = [(s, e) for s, e in self.spans(cut) if e <= len(cut)]
        return _render(cut, spans, 0, len(cut), ellipsis_end=len(text) > len(cut))

    def snippet(self, text: str) -> str:
        """A window of the body around its densest cluster of matches."""
        spans = self.spans(text)
        if len(text) <= SNIPPET_CHARS:
            return _render(text, spans, 0, len(text), ellipsis_end=False)
        start = 0
        if spans:
            best = _densest(text, spans[:MAX_SNIPPET_SPANS], SNIPPET_CHARS - SNIPPET_LEAD_CHARS)
            start = max(0, best - SNIPPET_LEAD_CHARS)
            # Begin at a word boundary.
            while 0 < start < best and not text[start - 1].isspace():
                start += 1
        end = min(len(text), start + SNIPPET_CHARS)
        if end < len(text):
            space = text.rfind(" ", start, end)
            if space > start + SNIPPET_CHARS // 2:
                end = space
        inside = [(s, e) for s, e in spans if s >= start and e <= end]
        return _render(text, inside, start, end, ellipsis_end=end < len(text))


def _densest(text: str, spans: list[tuple[int, int]], width: int) -> int:
    """Start of the span opening the window with the most distinct (then most) matched words."""
    best, best_score = spans[0][0], (-1, -1)
    for i, (start, _) in enumerate(spans):
        inside = [sp for sp in spans[i:] if sp[1] <= start + width]
        score = (len({text[a:b].lower() for a, b in inside}), len(inside))
        if score > best_score:
            best, best_score = start, score
    return best


def _render(
    text: str, spans: list[tuple[int, int]], start: int, end: int, *, ellipsis_end: bool
) -> str:
    out: list[str] = ["…"] if start > 0 else []
    pos = start
    for s, e in spans:
        if s < pos:
            continue
        out.append(_WS.sub(" ", html.escape(text[pos:s])))
        out.append(f"<mark>{html.escape(text[s:e])}</mark>")
        pos = e
    out.append(_WS.sub(" ", html.escape(text[pos:end])))
    if ellipsis_end:
        out.append("…")
    return "".join(out).strip()


class EmbeddedBackend:
    """Search backend on an embedded tantivy index; path None keeps the index in memory."""

    def __init__(self, path: Path | None, *, lock_timeout: float = 10.0) -> None:
        self._path = path
        self._lock_timeout = lock_timeout
        self._schema = _build_schema()
        self._local = threading.local()
        self._index: tantivy.Index | None = None
        self._write_lock = asyncio.Lock()
        self._open_lock = threading.Lock()
        self._closed = False
        self.recovered_from: Path | None = None

    @property
    def path(self) -> Path | None:
        """Directory of the index, or None when it lives in memory."""
        return self._path

    # --- plumbing -------------------------------------------------------------------------

    def _analyzers(self) -> tuple[tantivy.TextAnalyzer, tantivy.TextAnalyzer]:
        # One pair per thread: the bindings' analyzers are not meant to be shared across threads.
        pair: tuple[tantivy.TextAnalyzer, tantivy.TextAnalyzer] | None = getattr(
            self._local, "analyzers", None
        )
        if pair is None:
            pair = (_analyzer(stem=False), _analyzer(stem=True))
            self._local.analyzers = pair
        return pair

    def _register(self, index: tantivy.Index) -> None:
        index.register_tokenizer(STEM_TOKENIZER, _analyzer(stem=True))
        index.register_tokenizer(WORD_TOKENIZER, _analyzer(stem=False))

    def _open_dir(self, path: Path) -> tantivy.Index:
        index = tantivy.Index(self._schema, path=str(path), reuse=True)
        self._register(index)
        index.reload()
        searcher = index.searcher()
        # Reading one stored document catches damaged segment files now, not mid-search.
        if searcher.num_docs:
            hits = searcher.search(tantivy.Query.all_query(), 1).hits
            if hits:
                searcher.doc(hits[0][1])
        return index

    def _set_aside(self, path: Path, reason: BaseException) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        target = path.with_name(f"{path.name}.broken-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.broken-{stamp}-{n}")
        path.rename(target)
        self.recovered_from = target
        log.warning(
            "search index at %s could not be opened (%s); moved it to %s and started an empty "
            "index: reindex all posts",
            path,
            reason,
            target,
        )

    def _open_sync(self) -> tantivy.Index:
        with self._open_lock:
            if self._closed:
                raise SearchUnavailable("search backend is closed")
            if self._index is not None:
                return self._index
            if self._path is None:
                index = tantivy.Index(self._schema)
                self._register(index)
            else:
                self._path.mkdir(parents=True, exist_ok=True)
                try:
                    index = self._open_dir(self._path)
                except BaseException as exc:
                    if not (isinstance(exc, ValueError | OSError) or _is_panic(exc)):
                        raise
                    self._set_aside(self._path, exc)
                    self._path.mkdir(parents=True, exist_ok=True)
                    index = self._open_dir(self._path)
            self._index = index
            return index

    async def _run(self, fn: Callable[[], T]) -> T:
        """Run blocking engine work in a thread, turning engine failures into SearchUnavailable."""
        if self._closed:
            raise SearchUnavailable("search backend is closed")

        def guarded() -> T:
            try:
                return fn()
            except SearchUnavailable:
                raise
            except BaseException as exc:
                if isinstance(exc, ValueError | OSError | RuntimeError) or _is_panic(exc):
                    if self._path is not None and not _is_lock_busy(exc):
                        # Reopen (and repair if needed) on the next call.
                        with self._open_lock:
                            self._index = None
                    raise SearchUnavailable(f"embedded search index failed: {exc}") from None
                raise

        return await asyncio.to_thread(guarded)

    def _writer(self, index: tantivy.Index, ndocs: int) -> tantivy.IndexWriter:
        threads = 1 if ndocs < BULK_BATCH else 2
        deadline = time.monotonic() + self._lock_timeout
        while True:
            try:
                return index.writer(WRITER_HEAP_PER_THREAD * threads, threads)
            except ValueError as exc:
                if not _is_lock_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(LOCK_RETRY_SECONDS)

    def _write_sync(self, ndocs: int, ops: Callable[[tantivy.IndexWriter], None]) -> None:
        index = self._open_sync()
        # A writer per batch, released with its merges finished, so that another process may
        # take the index lock between batches.
        writer = self._writer(index, ndocs)
        try:
            ops(writer)
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            writer.wait_merging_threads()
        index.reload()

    async def _write(self, ndocs: int, ops: Callable[[tantivy.IndexWriter], None]) -> None:
        async with self._write_lock:
            await self._run(lambda: self._write_sync(ndocs, ops))

    # --- interface ------------------------------------------------------------------------

    async def ensure_ready(self) -> None:
        """Open or create the index (repairing a damaged one by starting afresh)."""
        async with self._write_lock:
            await self._run(self._open_sync)

    async def upsert(self, docs: Sequence[PostDocument]) -> None:
        """Add or replace documents by id, committed and visible on return."""
        await self.apply(docs, ())

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove documents by id."""
        await self.apply((), ids)

    async def apply(self, docs: Sequence[PostDocument], delete_ids: Sequence[str]) -> None:
        """Upsert docs and delete ids in one commit (an id in both keeps its new document)."""
        latest = {doc.id: doc for doc in docs}
        gone = sorted(set(delete_ids) - latest.keys())
        if not latest and not gone:
            return
        if self._closed:
            raise SearchUnavailable("search backend is closed")

        def ops(writer: tantivy.IndexWriter) -> None:
            for doc_id in gone:
                writer.delete_documents_by_term("id", doc_id)
            for doc in latest.values():
                writer.delete_documents_by_term("id", doc.id)
                writer.add_document(_to_tantivy(doc))

        await self._write(len(latest), ops)

    async def delete_course(self, course_id: int) -> None:
        """Remove every document of a course."""
        if not isinstance(course_id, int) or isinstance(course_id, bool):
            raise ValueError("course_id must be an int")

        def ops(writer: tantivy.IndexWriter) -> None:
            writer.delete_documents_by_term("course_id", course_id)

        await self._write(0, ops)

    async def count(self, course_id: int | None = None) -> int:
        """Number of documents, overall or in one course."""

        def run() -> int:
            searcher = self._open_sync().searcher()
            if course_id is None:
                return searcher.num_docs
            q = tantivy.Query.term_query(self._schema, "course_id", course_id)
            return _total(searcher.search(q, 1, count=True))

        return await self._run(run)

    async def search(self, q: SearchQuery) -> SearchResults:
        """Run a query: BM25 with typo and prefix matching, or newest first without text."""
        validate_query(q)
        courses = course_filter(q)
        if not courses:
            return SearchResults(total=0, hits=[])
        return await self._run(lambda: self._search_sync(q, courses))

    async def health(self) -> dict[str, object]:
        """Whether the index can be opened and read."""
        try:
            docs = await self.count()
        except Exception as exc:
            return {"ok": False, "engine": ENGINE, "detail": str(exc)}
        where = "memory" if self._path is None else str(self._path)
        detail = f"{docs} documents in {where}"
        if self.recovered_from is not None:
            detail += f"; damaged index set aside at {self.recovered_from}"
        return {"ok": True, "engine": ENGINE, "detail": detail}

    async def close(self) -> None:
        """Wait for pending writes and release the index."""
        async with self._write_lock:
            with self._open_lock:
                self._closed = True
                self._index = None

    # --- querying -------------------------------------------------------------------------

    def _terms(self, text: str) -> _Terms:
        words_an, stems_an = self._analyzers()
        words: list[str] = []
        stems: list[str] = []
        seen: set[str] = set()
        for token in words_an.pre_tokenize(text).tokens:
            if token.text in seen:
                continue
            seen.add(token.text)
            words.append(token.text)
            stemmed = stems_an.analyze(token.text)
            stems.append(stemmed[0] if stemmed else token.text)
            if len(words) == MAX_QUERY_WORDS:
                break
        ends_in_word = bool(text) and not text[-1].isspace()
        return _Terms(tuple(words), tuple(stems), prefix_last=ends_in_word)

    def _word_clause(self, terms: _Terms, i: int) -> tantivy.Query:
        s = self._schema
        stem, word = terms.stems[i], terms.words[i]
        budget, prefix = terms.budget(i), terms.is_prefix(i)
        parts: list[tuple[tantivy.Occur, tantivy.Query]] = [
            (
                tantivy.Occur.Should,
                tantivy.Query.boost_query(tantivy.Query.term_query(s, "title", stem), TITLE_BOOST),
            ),
            (tantivy.Occur.Should, tantivy.Query.term_query(s, "body", stem)),
        ]
        if budget or prefix:
            for field, score in (
                ("title_words", FUZZY_TITLE_SCORE),
                ("body_words", FUZZY_BODY_SCORE),
            ):
                fuzzy = tantivy.Query.fuzzy_term_query(
                    s, field, word, distance=budget, transposition_cost_one=True, prefix=prefix
                )
                parts.append((tantivy.Occur.Should, tantivy.Query.const_score_query(fuzzy, score)))
        return tantivy.Query.boolean_query(parts)

    def _filters(self, q: SearchQuery, courses: list[int]) -> list[tantivy.Query]:
        s = self._schema
        out = [tantivy.Query.term_set_query(s, "course_id", courses)]
        if q.forum_id is not None:
            out.append(tantivy.Query.term_query(s, "forum_id", q.forum_id))
        if q.thread_kind is not None:
            out.append(tantivy.Query.term_query(s, "thread_kind", q.thread_kind))
        if q.unanswered_only:
            out.append(tantivy.Query.term_query(s, "thread_kind", "question"))
            out.append(tantivy.Query.term_query(s, "is_answered", False))
        if q.author_handle is not None:
            out.append(tantivy.Query.term_query(s, "author_handle", _handle_key(q.author_handle)))
        if q.created_after is not None or q.created_before is not None:
            lower = None if q.created_after is None else _micros(q.created_after)
            upper = None if q.created_before is None else _micros(q.created_before)
            out.append(
                tantivy.Query.range_query(
                    s,
                    "created_at_us",
                    tantivy.FieldType.Integer,
                    lower,
                    upper,
                    include_lower=True,
                    include_upper=upper is None,
                )
            )
        return out

    def _search_sync(self, q: SearchQuery, courses: list[int]) -> SearchResults:
        index = self._open_sync()
        searcher = index.searcher()
        filters = [(tantivy.Occur.Must, f) for f in self._filters(q, courses)]
        terms = self._terms(q.text)
        offset = (q.page - 1) * q.per_page
        if not terms.words and _WORDISH.search(q.text):
            # Only words too long to be indexed: nothing can match them.
            return SearchResults(total=0, hits=[])
        if not terms.words:
            query = tantivy.Query.boolean_query(filters)
            result = searcher.search(
                query, q.per_page, count=True, order_by_field="created_at_us", offset=offset
            )
            scored = [(0.0, addr) for _, addr in result.hits]
        else:
            clauses = [self._word_clause(terms, i) for i in range(len(terms.words))]
            query = tantivy.Query.boolean_query(
                filters + [(tantivy.Occur.Must, c) for c in clauses]
            )
            result = searcher.search(query, q.per_page, count=True, offset=offset)
            if _total(result) == 0 and len(clauses) > 1:
                # No post has every word: fall back to posts with any of them, best first.
                anyword = tantivy.Query.boolean_query(
                    [(tantivy.Occur.Should, c) for c in clauses], minimum_number_should_match=1
                )
                query = tantivy.Query.boolean_query([*filters, (tantivy.Occur.Must, anyword)])
                result = searcher.search(query, q.per_page, count=True, offset=offset)
            scored = [(float(score), addr) for score, addr in result.hits]
        words_an, stems_an = self._analyzers()
        marker = _Highlighter(terms, words_an, stems_an)
        hits = []
        for score, addr in scored:
            doc = searcher.doc(addr)
            url = doc.get_first("url")
            hits.append(
                SearchHit(
                    post_id=_stored_int(doc, "post_id"),
                    thread_id=_stored_int(doc, "thread_id"),
                    course_id=_stored_int(doc, "course_id"),
                    score=score,
                    title_html=marker.title(str(doc.get_first("title") or "")),
                    snippet_html=marker.snippet(str(doc.get_first("body") or "")),
                    url=bytes(url).decode() if url is not None else "",
                )
            )
        return SearchResults(total=_total(result), hits=hits)


def _is_lock_busy(exc: BaseException) -> bool:
    return "LockBusy" in str(exc)


def _total(result: tantivy.SearchResult) -> int:
    # `count` exists at run time but is missing from the bundled stubs.
    return int(result.count)  # type: ignore[attr-defined]


def _stored_int(doc: tantivy.Document, name: str) -> int:
    value = doc.get_first(name)
    if not isinstance(value, int):
        raise ValueError(f"stored field {name} is missing")
    return value
