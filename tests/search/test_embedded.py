"""Behaviour specific to the embedded tantivy backend: files on disk, writers, recovery."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import tantivy

from search.backends import SearchQuery, SearchUnavailable
from search.embedded import EmbeddedBackend, _within, typo_budget
from tests.search.conftest import MakePost


def q(text: str, *courses: int) -> SearchQuery:
    return SearchQuery(text=text, course_ids=list(courses))


async def ids(backend: EmbeddedBackend, query: SearchQuery) -> list[int]:
    return [hit.post_id for hit in (await backend.search(query)).hits]


async def filled(path: Path, make_post: MakePost, n: int = 5) -> list[int]:
    backend = EmbeddedBackend(path)
    posts = [make_post(1, body=f"matrix inverse {i}") for i in range(n)]
    await backend.upsert(posts)
    await backend.close()
    return [p.post_id for p in posts]


async def test_persists_across_reopen(tmp_path: Path, make_post: MakePost) -> None:
    path = tmp_path / "index"
    written = await filled(path, make_post)
    reopened = EmbeddedBackend(path)
    try:
        assert await reopened.count() == len(written)
        assert sorted(await ids(reopened, q("matrix", 1))) == sorted(written)
        assert reopened.recovered_from is None
    finally:
        await reopened.close()


async def test_missing_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there"
    backend = EmbeddedBackend(path)
    await backend.ensure_ready()
    report = await backend.health()
    await backend.close()
    assert path.is_dir()
    assert report["ok"] is True
    assert str(path) in str(report["detail"])


async def test_directory_removed_while_open_recovers(tmp_path: Path, make_post: MakePost) -> None:
    path = tmp_path / "index"
    backend = EmbeddedBackend(path)
    try:
        await backend.upsert([make_post(1, body="old entry")])
        shutil.rmtree(path)
        post = make_post(1, body="fresh entry")
        try:
            await backend.upsert([post])
        except SearchUnavailable:
            await backend.upsert([post])  # the failed call reopened the index afresh
        assert await ids(backend, q("fresh", 1)) == [post.post_id]
        assert await ids(backend, q("old", 1)) == []
    finally:
        await backend.close()


def _corrupt_meta(path: Path) -> None:
    (path / "meta.json").write_text("{ not json")


def _drop_segment_files(path: Path) -> None:
    for file in path.glob("*.idx"):
        file.unlink()


def _truncate_stores(path: Path) -> None:
    for file in path.glob("*.store"):
        file.write_bytes(file.read_bytes()[:10])


def _foreign_schema(path: Path) -> None:
    shutil.rmtree(path)
    path.mkdir()
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("something_else", stored=True)
    index = tantivy.Index(builder.build(), path=str(path))
    writer = index.writer(15_000_000, 1)
    writer.add_document(tantivy.Document(something_else="x"))
    writer.commit()
    writer.wait_merging_threads()


@pytest.mark.parametrize(
    "damage", [_corrupt_meta, _drop_segment_files, _truncate_stores, _foreign_schema]
)
async def test_damaged_index_is_set_aside_and_rebuilt(
    tmp_path: Path,
    make_post: MakePost,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
) -> None:
    path = tmp_path / "index"
    await filled(path, make_post)
    damage(path)
    backend = EmbeddedBackend(path)
    try:
        with caplog.at_level(logging.WARNING, logger="search.embedded"):
            await backend.ensure_ready()
        assert "reindex" in caplog.text
        assert backend.recovered_from is not None and backend.recovered_from.is_dir()
        assert backend.recovered_from.parent == path.parent
        assert await backend.count() == 0
        post = make_post(1, body="rebuilt entry")
        await backend.upsert([post])
        assert await ids(backend, q("rebuilt", 1)) == [post.post_id]
        report = await backend.health()
        assert report["ok"] is True and "set aside" in str(report["detail"])
    finally:
        await backend.close()


async def test_concurrent_writes_and_reads(make_post: MakePost) -> None:
    backend = EmbeddedBackend(None)
    batches = [[make_post(1, body=f"concurrency batch {b}") for _ in range(10)] for b in range(20)]
    doomed = batches[0][:5]

    async def reader() -> int:
        runs = 0
        for _ in range(20):
            await backend.search(q("concurrency", 1))
            runs += 1
            await asyncio.sleep(0)
        return runs

    try:
        results = await asyncio.gather(
            *(backend.upsert(batch) for batch in batches),
            reader(),
            reader(),
        )
        assert results[-2:] == [20, 20]
        await asyncio.gather(backend.delete([p.id for p in doomed]), backend.upsert(batches[1]))
        assert await backend.count(1) == 200 - len(doomed)
        total = (await backend.search(SearchQuery("concurrency", [1], per_page=100))).total
        assert total == 195
    finally:
        await backend.close()


async def test_two_handles_on_one_directory_take_turns_writing(
    tmp_path: Path, make_post: MakePost
) -> None:
    # Stands in for two processes (web and worker) sharing one index directory.
    path = tmp_path / "index"
    first, second = EmbeddedBackend(path), EmbeddedBackend(path)
    try:
        await asyncio.gather(
            *(first.upsert([make_post(1)]) for _ in range(5)),
            *(second.upsert([make_post(1)]) for _ in range(5)),
        )
        # Each handle sees its own commits at once and the other's within a moment.
        counts = {await first.count(), await second.count()}
        assert 10 in counts
        for _ in range(100):
            if await first.count() == await second.count() == 10:
                break
            await asyncio.sleep(0.05)
        assert await first.count() == await second.count() == 10
    finally:
        await first.close()
        await second.close()


async def test_writer_lock_held_elsewhere_times_out(tmp_path: Path, make_post: MakePost) -> None:
    path = tmp_path / "index"
    backend = EmbeddedBackend(path, lock_timeout=0.2)
    await backend.ensure_ready()
    index = tantivy.Index.open(str(path))
    writer = index.writer(15_000_000, 1)
    try:
        with pytest.raises(SearchUnavailable, match="lock"):
            await backend.upsert([make_post(1)])
    finally:
        writer.wait_merging_threads()
    await backend.upsert([make_post(1)])
    assert await backend.count() == 1
    await backend.close()


async def test_event_loop_keeps_running_during_a_large_write(make_post: MakePost) -> None:
    backend = EmbeddedBackend(None)
    posts = [make_post(1, body="word " * 200) for _ in range(3000)]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    try:
        await backend.upsert(posts)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await backend.close()
    assert ticks >= 5


async def test_anonymous_author_is_not_in_the_index(make_post: MakePost) -> None:
    backend = EmbeddedBackend(None)
    try:
        await backend.upsert([make_post(1, author_handle=None, body="secret question")])
        await backend.upsert([make_post(1, author_handle="Known_One", body="open question")])
        searcher = backend._open_sync().searcher()
        assert searcher.doc_freq("author_handle", "known_one") == 1
        assert searcher.num_docs == 2
        for _, address in searcher.search(tantivy.Query.all_query(), 10).hits:
            stored = searcher.doc(address).to_dict()
            assert "author_handle" not in stored
            assert "Known_One" not in repr(stored) and "known_one" not in repr(stored)
        # Handle filters ignore case, as Meilisearch's do.
        found = await backend.search(SearchQuery("", [1], author_handle="KNOWN_ONE"))
        assert found.total == 1
    finally:
        await backend.close()


async def test_non_ascii_text_is_matched_and_marked(make_post: MakePost) -> None:
    backend = EmbeddedBackend(None)
    try:
        post = make_post(
            1, thread_title="Übung 3 🙂", body="Ünïcödé 🙂 text: the café naïve approach"
        )
        await backend.upsert([post])
        [hit] = (await backend.search(q("cafe naive", 1))).hits
        assert "<mark>café</mark> <mark>naïve</mark>" in hit.snippet_html
        [hit] = (await backend.search(q("ubung", 1))).hits
        assert hit.title_html == "<mark>Übung</mark> 3 🙂"
    finally:
        await backend.close()


async def test_words_missing_together_fall_back_to_any_word(make_post: MakePost) -> None:
    backend = EmbeddedBackend(None)
    try:
        both = make_post(1, body="bayes theorem and priors")
        one = make_post(1, body="bayes nets")
        await backend.upsert([both, one])
        assert await ids(backend, q("bayes priors", 1)) == [both.post_id]
        assert sorted(await ids(backend, q("bayes unicorn", 1))) == sorted(
            [both.post_id, one.post_id]
        )
    finally:
        await backend.close()


def test_typo_budget_follows_word_length() -> None:
    assert [typo_budget("x" * n) for n in (1, 4, 5, 8, 9, 20)] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("word", "token", "limit", "prefix", "expected"),
    [
        ("calibraton", "calibration", 2, False, True),
        ("calibration", "calibration", 1, False, True),
        ("method", "methd", 1, False, True),
        ("method", "mehtod", 1, False, True),  # a transposition is one edit
        ("method", "mthd", 1, False, False),
        ("calib", "calibration", 0, True, True),
        ("calbi", "calibration", 1, True, True),
        ("calib", "cobalt", 1, True, False),
        ("exam", "exams", 0, False, False),
    ],
)
def test_edit_distance(word: str, token: str, limit: int, prefix: bool, expected: bool) -> None:
    assert _within(word, token, limit, prefix) is expected
