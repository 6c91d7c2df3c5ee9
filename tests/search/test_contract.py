"""Behaviour every search backend must show, exercised only through the SearchBackend interface."""

from __future__ import annotations

import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from search.backends import (
    MAX_PER_PAGE,
    MAX_QUERY_CHARS,
    MAX_RESULT_WINDOW,
    PostDocument,
    SearchBackend,
    SearchQuery,
    SearchResults,
    SearchUnavailable,
)
from search.embedded import EmbeddedBackend
from search.factory import make_backend
from search.meili import MeiliBackend, doc_key, marked_html, to_meili
from tests.search.conftest import T0, MakePost, NewEngine

Course = Callable[[], int]


def q(text: str, *courses: int, **options: object) -> SearchQuery:
    return SearchQuery(text=text, course_ids=list(courses), **options)  # type: ignore[arg-type]


def assert_safe(html_text: str) -> None:
    """Nothing but <mark> and </mark> may appear as markup."""
    assert "<" not in html_text.replace("<mark>", "").replace("</mark>", "")
    assert ">" not in html_text.replace("<mark>", "").replace("</mark>", "")
    assert html_text.count("<mark>") == html_text.count("</mark>")


async def found(engine: SearchBackend, query: SearchQuery) -> list[int]:
    results = await engine.search(query)
    for hit in results.hits:
        assert_safe(hit.title_html)
        assert_safe(hit.snippet_html)
    return [hit.post_id for hit in results.hits]


def marked(html_text: str) -> list[str]:
    return [m.lower() for m in re.findall(r"<mark>(.*?)</mark>", html_text)]


# --- matching ---------------------------------------------------------------------------------


async def test_plain_word(engine: SearchBackend, course: Course, make_post: MakePost) -> None:
    c = course()
    hit = make_post(c, body="Can someone explain the calibration step of peer review?")
    miss = make_post(c, body="When is the midterm exam?")
    await engine.upsert([hit, miss])
    assert await found(engine, q("calibration", c)) == [hit.post_id]
    assert await found(engine, q("CALIBRATION", c)) == [hit.post_id]
    assert await found(engine, q("x" * 60, c)) == []


async def test_typo_is_tolerated(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    post = make_post(c, body="The calibration essays are due Friday.")
    await engine.upsert([post])
    assert await found(engine, q("calibraton", c)) == [post.post_id]
    assert await found(engine, q("calibraton essays", c)) == [post.post_id]


async def test_short_words_allow_no_typo(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    await engine.upsert([make_post(c, body="The exam is on Monday.")])
    assert await found(engine, q("exma", c)) == []


async def test_prefix_of_last_word(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    post = make_post(c, body="Peer calibration starts next week.")
    other = make_post(c, body="Office hours moved.")
    await engine.upsert([post, other])
    assert await found(engine, q("calib", c)) == [post.post_id]
    assert await found(engine, q("peer calib", c)) == [post.post_id]


async def test_exact_match_ranks_above_typo_match(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    typo = make_post(c, body="Notes on the gradient methd from lecture.")
    exact = make_post(c, body="Notes on the gradient method from lecture.")
    await engine.upsert([typo, exact])
    assert await found(engine, q("method", c)) == [exact.post_id, typo.post_id]


# --- filters ----------------------------------------------------------------------------------


async def test_course_filter_is_mandatory(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c1, c2 = course(), course()
    mine = make_post(c1, body="Lagrange multipliers question")
    theirs = make_post(c2, body="Lagrange multipliers question")
    await engine.upsert([mine, theirs])
    assert await found(engine, q("lagrange", c1)) == [mine.post_id]
    assert await found(engine, q("", c1)) == [mine.post_id]
    assert sorted(await found(engine, q("lagrange", c1, c2))) == sorted(
        [mine.post_id, theirs.post_id]
    )
    for text in ("lagrange", ""):
        assert await engine.search(q(text)) == SearchResults(total=0, hits=[])


async def test_forum_filter(engine: SearchBackend, course: Course, make_post: MakePost) -> None:
    c = course()
    a = make_post(c, forum_id=10, body="homework help")
    b = make_post(c, forum_id=11, body="homework help")
    await engine.upsert([a, b])
    assert await found(engine, q("homework", c, forum_id=10)) == [a.post_id]
    assert await found(engine, q("", c, forum_id=11)) == [b.post_id]


async def test_thread_kind_filter(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    question = make_post(c, thread_kind="question", body="recursion depth")
    discussion = make_post(c, thread_kind="discussion", body="recursion depth")
    await engine.upsert([question, discussion])
    assert await found(engine, q("recursion", c, thread_kind="question")) == [question.post_id]
    assert await found(engine, q("", c, thread_kind="discussion")) == [discussion.post_id]


async def test_unanswered_only(engine: SearchBackend, course: Course, make_post: MakePost) -> None:
    c = course()
    open_q = make_post(c, thread_kind="question", is_answered=False, body="pointer arithmetic")
    done_q = make_post(c, thread_kind="question", is_answered=True, body="pointer arithmetic")
    talk = make_post(c, thread_kind="discussion", is_answered=False, body="pointer arithmetic")
    await engine.upsert([open_q, done_q, talk])
    assert await found(engine, q("pointer", c, unanswered_only=True)) == [open_q.post_id]
    assert await found(engine, q("", c, unanswered_only=True)) == [open_q.post_id]


async def test_author_handle_filter(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    ada = make_post(c, author_handle="ada", body="binary trees")
    ada_anon = make_post(c, author_handle=None, body="binary trees")
    bob = make_post(c, author_handle="bob", body="binary trees")
    adam = make_post(c, author_handle="adam", body="binary trees")
    await engine.upsert([ada, ada_anon, bob, adam])
    assert await found(engine, q("binary", c, author_handle="ada")) == [ada.post_id]
    assert await found(engine, q("", c, author_handle="ada")) == [ada.post_id]
    assert await found(engine, q("", c, author_handle="carol")) == []


async def test_date_range(engine: SearchBackend, course: Course, make_post: MakePost) -> None:
    c = course()
    early, middle, late = (
        make_post(c, minutes=m, body="lab report") for m in (10_000, 10_060, 10_120)
    )
    await engine.upsert([early, middle, late])
    at = middle.created_at
    assert await found(engine, q("", c, created_after=at)) == [late.post_id, middle.post_id]
    assert await found(engine, q("lab", c, created_before=at)) == [early.post_id]
    window = {"created_after": at, "created_before": at + timedelta(minutes=1)}
    assert await found(engine, q("report", c, **window)) == [middle.post_id]


# --- highlighting -----------------------------------------------------------------------------


async def test_highlight_marks_the_hit(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    post = make_post(
        c, thread_title="Calibration deadline", body="When does calibration close this week?"
    )
    await engine.upsert([post])
    results = await engine.search(q("calibration", c))
    [hit] = results.hits
    assert marked(hit.title_html) == ["calibration"]
    assert marked(hit.snippet_html) == ["calibration"]
    assert "<mark>calibration</mark> close" in hit.snippet_html
    # Engines may mark a whole word or only the part a prefix (or typo'd prefix) matched.
    typo = (await engine.search(q("calibraton", c))).hits[0]
    assert any(m.startswith("calibrat") for m in marked(typo.snippet_html))
    prefix = (await engine.search(q("calib", c))).hits[0]
    assert any(m.startswith("calib") for m in marked(prefix.snippet_html))


async def test_user_html_is_escaped(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    post = make_post(
        c,
        thread_title='<img src=x onerror="alert(1)"> & friends',
        body="<script>alert(1)</script> calibration <mark>fake</mark> \ue000forged\ue001 'q'",
    )
    await engine.upsert([post])
    [hit] = (await engine.search(q("calibration", c))).hits
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hit.snippet_html
    assert "&lt;mark&gt;fake&lt;/mark&gt;" in hit.snippet_html
    assert marked(hit.snippet_html) == ["calibration"]
    assert hit.title_html.startswith("&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp;")
    [plain] = (await engine.search(q("", c))).hits
    assert "<mark>" not in plain.snippet_html
    assert "&lt;script&gt;" in plain.snippet_html


async def test_snippet_of_long_body_shows_the_match(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    filler = "The lecture covered many unrelated logistics and reading assignments. " * 30
    post = make_post(c, body=filler + "Finally the eigenvalue decomposition appeared. " + filler)
    await engine.upsert([post])
    [hit] = (await engine.search(q("eigenvalue", c))).hits
    assert marked(hit.snippet_html) == ["eigenvalue"]
    assert len(hit.snippet_html) < 600


# --- ordering and paging ----------------------------------------------------------------------


async def test_title_and_body_match_beats_passing_mention(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    passing = make_post(
        c,
        thread_title="Week 5 logistics",
        body="Room change for Thursday, snacks provided, and calibration is mentioned once. "
        "Please bring laptops, chargers and the printed reading for the seminar.",
    )
    strong = make_post(
        c,
        thread_title="Calibration scores",
        body="My calibration score seems off after the calibration round.",
    )
    await engine.upsert([passing, strong])
    assert await found(engine, q("calibration", c)) == [strong.post_id, passing.post_id]


async def test_empty_text_lists_newest_first(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    posts = [make_post(c, minutes=20_000 + i, body=f"post number {i}") for i in range(5)]
    await engine.upsert([posts[2], posts[0], posts[4], posts[1], posts[3]])
    newest_first = [p.post_id for p in reversed(posts)]
    assert await found(engine, q("", c)) == newest_first
    assert await found(engine, q("   ", c)) == newest_first
    assert await found(engine, q(" ?! ", c)) == newest_first


async def test_pagination(engine: SearchBackend, course: Course, make_post: MakePost) -> None:
    c = course()
    posts = [make_post(c, body=f"tutorial session {i}") for i in range(25)]
    await engine.upsert(posts)
    for text in ("", "tutorial"):
        pages = [await engine.search(q(text, c, page=n, per_page=10)) for n in (1, 2, 3, 4)]
        assert [r.total for r in pages] == [25, 25, 25, 25]
        ids = [[h.post_id for h in r.hits] for r in pages]
        assert [len(x) for x in ids] == [10, 10, 5, 0]
        flat = [i for page in ids for i in page]
        assert sorted(flat) == sorted(p.post_id for p in posts)


# --- writes -----------------------------------------------------------------------------------


async def test_delete(engine: SearchBackend, course: Course, make_post: MakePost) -> None:
    c = course()
    keep = make_post(c, body="dynamic programming")
    gone = make_post(c, body="dynamic programming")
    await engine.upsert([keep, gone])
    await engine.delete([gone.id, "post:does-not-exist"])
    assert await found(engine, q("dynamic", c)) == [keep.post_id]
    assert await engine.count(c) == 1
    await engine.delete([])


async def test_apply_upserts_and_deletes_at_once(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    stays, goes, changes = (make_post(c, body="graph colouring") for _ in range(3))
    await engine.upsert([stays, goes, changes])
    changed = replace(changes, body="graph colouring, revised")
    fresh = make_post(c, body="graph colouring")
    # An id both upserted and deleted keeps its new document.
    await engine.apply([changed, fresh], [goes.id, changes.id, "post:does-not-exist"])
    assert sorted(await found(engine, q("graph", c))) == sorted(
        [stays.post_id, changes.post_id, fresh.post_id]
    )
    assert await found(engine, q("revised", c)) == [changes.post_id]
    await engine.apply([], [])


async def test_delete_course(engine: SearchBackend, course: Course, make_post: MakePost) -> None:
    c1, c2 = course(), course()
    await engine.upsert([make_post(c1, body="graph colouring") for _ in range(3)])
    await engine.upsert([make_post(c2, body="graph colouring") for _ in range(2)])
    before = await engine.count()
    await engine.delete_course(c1)
    assert await engine.count(c1) == 0
    assert await engine.count(c2) == 2
    assert await engine.count() == before - 3
    assert await found(engine, q("graph", c1, c2)) != []
    assert await found(engine, q("graph", c1)) == []


async def test_upsert_replaces(engine: SearchBackend, course: Course, make_post: MakePost) -> None:
    c = course()
    post = make_post(c, body="I used the trapezoid rule for question 3.")
    await engine.upsert([post])
    edited = replace(post, body="I switched to Simpson's rule for question 3.")
    await engine.upsert([edited])
    await engine.upsert([edited])
    assert await found(engine, q("trapezoid", c)) == []
    assert await found(engine, q("simpson", c)) == [post.post_id]
    assert await engine.count(c) == 1
    # The last version of an id in one batch wins.
    first, second = replace(post, body="version alpha"), replace(post, body="version omega")
    await engine.upsert([first, second])
    assert await found(engine, q("omega", c)) == [post.post_id]
    assert await found(engine, q("alpha", c)) == []
    await engine.upsert([])


async def test_count(engine: SearchBackend, course: Course, make_post: MakePost) -> None:
    c = course()
    assert await engine.count(c) == 0
    before = await engine.count()
    await engine.upsert([make_post(c) for _ in range(4)])
    assert await engine.count(c) == 4
    assert await engine.count() == before + 4


# --- anonymity --------------------------------------------------------------------------------


async def test_anonymous_posts_leave_no_author_trace(
    engine: SearchBackend, course: Course, make_post: MakePost
) -> None:
    c = course()
    anon = make_post(c, author_handle=None, body="I am not sure about the proof in lemma 2.")
    signed = make_post(c, author_handle="zoe_quill", body="I am not sure about lemma 4 either.")
    await engine.upsert([anon, signed])
    for text in ("zoe_quill", "zoe", "quill", "Zoe Quill"):
        assert anon.post_id not in await found(engine, q(text, c))
    assert await found(engine, q("", c, author_handle="zoe_quill")) == [signed.post_id]
    assert await found(engine, q("lemma", c, author_handle="zoe_quill")) == [signed.post_id]
    # The same handle made anonymous by an edit is no longer attributable.
    await engine.upsert([replace(signed, author_handle=None)])
    assert await found(engine, q("", c, author_handle="zoe_quill")) == []


# --- validation, health, lifecycle ------------------------------------------------------------

BAD_QUERIES = {
    "page 0": {"page": 0},
    "per_page 0": {"per_page": 0},
    "per_page too big": {"per_page": MAX_PER_PAGE + 1},
    "past the result window": {"page": MAX_RESULT_WINDOW // 10 + 1, "per_page": 10},
    "text too long": {"text": "x" * (MAX_QUERY_CHARS + 1)},
    "unknown kind": {"thread_kind": "poll"},
    "naive date": {"created_after": datetime(2025, 1, 1)},
    "empty range": {"created_after": T0, "created_before": T0},
    "course id not int": {"course_ids": ["1"]},
}


@pytest.mark.parametrize("change", BAD_QUERIES.values(), ids=BAD_QUERIES.keys())
async def test_bad_queries_raise_value_error(
    engine: SearchBackend, change: dict[str, object]
) -> None:
    query = replace(q("calibration", 1), **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await engine.search(query)


async def test_query_of_max_length_is_accepted(engine: SearchBackend, course: Course) -> None:
    results = await engine.search(q("word " * (MAX_QUERY_CHARS // 5), course()))
    assert results.total == 0


async def test_health(engine: SearchBackend) -> None:
    report = await engine.health()
    assert report["ok"] is True
    assert report["engine"] in {"tantivy", "meilisearch"}
    assert isinstance(report["detail"], str)


async def test_ensure_ready_is_idempotent(engine: SearchBackend, course: Course) -> None:
    await engine.ensure_ready()
    await engine.ensure_ready()
    assert (await engine.search(q("", course()))).total == 0


async def test_closed_backend_is_unavailable(new_engine: NewEngine, make_post: MakePost) -> None:
    fresh = new_engine()
    await fresh.ensure_ready()
    await fresh.upsert([make_post(1)])
    await fresh.close()
    await fresh.close()
    with pytest.raises(SearchUnavailable):
        await fresh.search(q("text", 1))
    with pytest.raises(SearchUnavailable):
        await fresh.upsert([make_post(1)])
    assert (await fresh.health())["ok"] is False


# --- Meilisearch without a server (always runs) ----------------------------------------------


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_meili_down_raises_search_unavailable(make_post: MakePost) -> None:
    meili = MeiliBackend(closed_port_url(), "key", index_uid="agora_down", timeout_seconds=2)
    calls: list[Callable[[], Awaitable[object]]] = [
        meili.ensure_ready,
        lambda: meili.upsert([make_post(1)]),
        lambda: meili.delete(["post:1"]),
        lambda: meili.delete_course(1),
        lambda: meili.search(q("calibration", 1)),
        lambda: meili.search(q("", 1, unanswered_only=True)),
        meili.count,
        lambda: meili.count(1),
    ]
    try:
        for call in calls:
            with pytest.raises(SearchUnavailable):
                await call()
        report = await meili.health()
        assert report["ok"] is False
        assert report["engine"] == "meilisearch"
        assert report["detail"]
        # Malformed queries are refused before any connection is attempted.
        with pytest.raises(ValueError):
            await meili.search(q("x", 1, per_page=0))
        assert await meili.search(q("x")) == SearchResults(total=0, hits=[])
    finally:
        await meili.close()


def test_meili_documents_of_anonymous_posts_have_no_author(make_post: MakePost) -> None:
    signed = make_post(7, author_handle="zoe_quill")
    anon = replace(signed, author_handle=None)
    assert to_meili(signed)["author_handle"] == "zoe_quill"
    stored = to_meili(anon)
    assert "author_handle" not in stored
    assert "zoe" not in repr(stored)


def test_meili_keys_are_valid_and_distinct() -> None:
    ids = ["post:1", "post-1", "post_1", "post_3a1", "post:é", "a/b c"]
    keys = [doc_key(i) for i in ids]
    assert len(set(keys)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)


def test_meili_highlight_markers_become_mark_after_escaping() -> None:
    formatted = "<b>x</b> \ue000calib\ue001ration & \ue000more\ue001 \ue000"
    out = marked_html(formatted)
    assert out == "&lt;b&gt;x&lt;/b&gt; <mark>calib</mark>ration &amp; <mark>more</mark>"
    assert_safe(out)


async def test_factory_picks_the_engine(tmp_path: Path) -> None:
    embedded = make_backend(None, None, tmp_path)
    assert isinstance(embedded, EmbeddedBackend)
    assert embedded.path is not None and embedded.path.parent == tmp_path
    blank = make_backend("", "key", tmp_path)
    assert isinstance(blank, EmbeddedBackend)
    meili = make_backend("http://127.0.0.1:7700", None, tmp_path)
    assert isinstance(meili, MeiliBackend)
    for made in (embedded, blank, meili):
        assert isinstance(made, SearchBackend)
        await made.close()


def test_post_document_validates() -> None:
    good = PostDocument(
        id="post:1",
        post_id=1,
        course_id=1,
        forum_id=1,
        thread_id=1,
        thread_kind="question",
        thread_title="t",
        body="b",
        author_handle=None,
        is_answered=False,
        created_at=T0,
    )
    for change in (
        {"id": ""},
        {"thread_kind": "poll"},
        {"author_handle": ""},
        {"created_at": datetime(2025, 1, 1)},
        {"course_id": "3"},
    ):
        with pytest.raises(ValueError):
            replace(good, **change)
