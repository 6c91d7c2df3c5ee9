"""Rebuilding the index (search.indexing and `agora search ...`) and reporting its state.

The functions are exercised in this process against the test database and the in-memory
engine; the commands run as a real `agora` process against the same database, with an
on-disk index in a folder of their own.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from core import jobs
from core.models import Course, OutboxEvent, Role, User
from core.settings import Settings
from core.timeutil import utcnow
from forum import actions as forum_actions
from forum.models import Forum, Post, PostState, Thread
from moderation import actions as moderation
from search import indexing, service
from search.backends import PostDocument, SearchBackend, SearchQuery, SearchUnavailable
from search.tasks import document_id
from tests.conftest import drain_jobs
from tests.factories import (
    add_member,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

REASON = "Please keep this forum on topic."
ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass(slots=True)
class Site:
    alpha: Course
    beta: Course
    alpha_forum: Forum
    beta_forum: Forum
    alpha_staff: User
    beta_staff: User
    learner: User
    mentor: User


async def _posts(forum: Forum, author: User, words: Sequence[str]) -> list[Post]:
    thread = await make_thread(forum, author, title=f"About {words[0]}", body=f"{words[0]}.")
    made = [await Post.get(thread_id=thread.id, is_opening=True)]
    for word in words[1:]:
        made.append(await make_reply(thread, author, body=f"Notes on {word}."))
    return made


@pytest.fixture
async def site(db: Settings) -> Site:
    """Two courses with posts in both, some of them hidden, removed or deleted."""
    alpha_staff, beta_staff = await make_user("anna"), await make_user("bert")
    alpha = await make_course(alpha_staff, title="Alpha studies")
    beta = await make_course(beta_staff, title="Beta studies")
    learner = await make_user("lena")
    await add_member(alpha, learner)
    mentor = await make_user("moe")
    await add_member(alpha, mentor, Role.MENTOR)
    alpha_forum, beta_forum = await make_forum(alpha), await make_forum(beta)
    a = await _posts(alpha_forum, mentor, ["apricot", "almond", "anise", "artichoke"])
    await _posts(alpha_forum, mentor, ["avocado", "arugula"])
    await _posts(beta_forum, beta_staff, ["banana", "basil", "beet"])
    thread = await Thread.get(id=a[0].thread_id)  # type: ignore[attr-defined]
    mine = await make_reply(thread, learner, body="Learner likes asparagus.")
    await moderation.hide_post(a[1], rule_code="R2", reason=REASON, acting_user=alpha_staff)
    await moderation.remove_post(a[2], rule_code="R2", reason=REASON, acting_user=alpha_staff)
    await forum_actions.delete_own_post(mine, acting_user=learner)
    await drain_jobs()
    return Site(alpha, beta, alpha_forum, beta_forum, alpha_staff, beta_staff, learner, mentor)


async def visible_ids(course: Course) -> set[int]:
    posts = await Post.filter(thread__course_id=course.id, deleted_at=None, state=PostState.VISIBLE)
    return {post.id for post in posts}


async def indexed_ids(course: Course) -> list[int]:
    ids: list[int] = []
    page = 1
    while True:
        results = await service.backend().search(
            SearchQuery(text="", course_ids=[course.id], page=page, per_page=100)
        )
        ids.extend(hit.post_id for hit in results.hits)
        if len(results.hits) < 100:
            return ids
        page += 1


async def assert_index_matches(*courses: Course) -> None:
    for course in courses:
        ids = await indexed_ids(course)
        assert len(ids) == len(set(ids)), "duplicates in the index"
        assert set(ids) == await visible_ids(course)
        assert await service.backend().count(course.id) == len(ids)


async def wipe(*courses: Course) -> None:
    for course in courses:
        await service.backend().delete_course(course.id)
        assert await service.backend().count(course.id) == 0


# --- reindex(), in this process ---------------------------------------------------------------


async def test_reindex_restores_a_wiped_index(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexing, "BATCH_SIZE", 3)  # several batches
    await assert_index_matches(site.alpha, site.beta)
    await wipe(site.alpha, site.beta)
    steps: list[int] = []
    indexed = await indexing.reindex(None, progress=steps.append)
    total_posts = await Post.all().count()
    assert sum(steps) == total_posts and len(steps) == -(-total_posts // 3)
    expected = len(await visible_ids(site.alpha)) + len(await visible_ids(site.beta))
    assert indexed == expected
    await assert_index_matches(site.alpha, site.beta)
    # Nothing hidden, removed or deleted came back.
    search = service.backend().search
    for word in ("almond", "anise", "asparagus"):
        assert (await search(SearchQuery(text=word, course_ids=[site.alpha.id]))).hits == []
    # Running it again changes nothing.
    assert await indexing.reindex(None, progress=None) == expected
    await assert_index_matches(site.alpha, site.beta)


async def test_reindex_of_one_course_leaves_the_others_alone(site: Site) -> None:
    await wipe(site.alpha, site.beta)
    stale = PostDocument(
        id=document_id(999_999),
        post_id=999_999,
        course_id=site.beta.id,
        forum_id=1,
        thread_id=1,
        thread_kind="discussion",
        thread_title="Gone",
        body="Gone banana.",
        author_handle=None,
        is_answered=False,
        created_at=(await Post.first()).created_at,  # type: ignore[union-attr]
    )
    await service.backend().upsert([stale])
    indexed = await indexing.reindex(site.alpha.id, progress=None)
    assert indexed == len(await visible_ids(site.alpha))
    await assert_index_matches(site.alpha)
    assert await indexed_ids(site.beta) == [999_999]  # not this run's business


async def test_reindex_deletes_documents_of_posts_that_no_longer_exist(site: Site) -> None:
    """E.g. the database was restored from a backup older than the index."""
    backend = service.backend()
    alpha_posts = sorted(await visible_ids(site.alpha))
    first = await Post.get(id=alpha_posts[0])
    template = PostDocument(
        id="x",
        post_id=0,
        course_id=site.alpha.id,
        forum_id=site.alpha_forum.id,
        thread_id=1,
        thread_kind="discussion",
        thread_title="Restored away",
        body="A ghost post.",
        author_handle="anna",
        is_answered=False,
        created_at=first.created_at,
    )
    last = await Post.all().order_by("-id").first()
    assert last is not None
    ghosts = [
        # far past every existing id, newer and older than the real posts
        replace(
            template,
            id=document_id(last.id + 500),
            post_id=last.id + 500,
            created_at=first.created_at + timedelta(days=3),
        ),
        replace(
            template,
            id=document_id(last.id + 501),
            post_id=last.id + 501,
            created_at=first.created_at - timedelta(days=3),
        ),
        # of a course that no longer exists
        replace(
            template,
            id=document_id(last.id + 502),
            post_id=last.id + 502,
            course_id=site.beta.id + 1000,
        ),
    ]
    await backend.upsert(ghosts)
    # A post that is gone from the database (a gap among the ids).
    gap = alpha_posts[1]
    await Post.filter(id=gap).delete()

    await indexing.reindex(None, progress=None)
    await assert_index_matches(site.alpha, site.beta)
    hits = await backend.search(SearchQuery(text="ghost", course_ids=[site.alpha.id]))
    assert hits.total == 0
    assert gap not in await indexed_ids(site.alpha)


class ChangeDuringWrite:
    """Runs `change` (a real edit and its delivered job) just before the first write lands."""

    def __init__(self, real: SearchBackend, change: object) -> None:
        self.real = real
        self.change = change
        self.fired = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    async def _first_write(self) -> None:
        if not self.fired:
            self.fired = True
            await self.change()  # type: ignore[operator]

    async def upsert(self, docs: Sequence[PostDocument]) -> None:
        await self._first_write()
        await self.real.upsert(docs)

    async def apply(self, docs: Sequence[PostDocument], delete_ids: Sequence[str]) -> None:
        await self._first_write()
        await self.real.apply(docs, delete_ids)


async def test_reindex_keeps_changes_made_while_it_runs(site: Site) -> None:
    real = service.backend()
    target = await Post.get(id=min(await visible_ids(site.alpha)))

    async def edit_and_deliver() -> None:
        await forum_actions.edit_post(
            await Post.get(id=target.id), body="Edited: quince.", acting_user=site.mentor
        )
        await drain_jobs()
        await jobs.deliver_pending()  # the job's upsert lands before reindex writes the old text

    service.use(ChangeDuringWrite(real, edit_and_deliver))  # type: ignore[arg-type]
    try:
        await indexing.reindex(None, progress=None)
    finally:
        service.use(real)
    hits = (await real.search(SearchQuery(text="quince", course_ids=[site.alpha.id]))).hits
    assert [hit.post_id for hit in hits] == [target.id]
    assert hits[0].snippet_html == "Edited: <mark>quince</mark>."
    await assert_index_matches(site.alpha, site.beta)


async def test_status_reports_counts_and_lag(site: Site) -> None:
    report = await indexing.status()
    assert report["available"] is True and report["engine"] == "tantivy"
    rows = {row["slug"]: row for row in report["courses"]}
    for course in (site.alpha, site.beta):
        visible = len(await visible_ids(course))
        assert rows[course.slug]["documents"] == rows[course.slug]["visible_posts"] == visible
    assert report["total"] == sum(row["documents"] for row in rows.values())
    assert report["lag_seconds"] is None and report["pending"] == 0

    await jobs.enqueue("search.index_post", {"post_id": min(await visible_ids(site.alpha))})
    await jobs.enqueue("forum.reply", {"post_id": 0})  # not a search job
    await OutboxEvent.filter(kind="search.index_post", delivered_at=None).update(
        created_at=utcnow() - timedelta(seconds=90)
    )
    report = await indexing.status()
    assert report["pending"] == 1 and 90 <= report["lag_seconds"] < 200
    await OutboxEvent.filter(delivered_at=None).update(delivered_at=utcnow())


async def test_reindex_while_the_engine_is_down_fails_cleanly(site: Site) -> None:
    class Down:
        def __getattr__(self, name: str) -> object:
            async def refuse(*args: object, **kwargs: object) -> object:
                raise SearchUnavailable("engine unreachable (injected)")

            return refuse

    real = service.backend()
    service.use(Down())  # type: ignore[arg-type]
    try:
        with pytest.raises(SearchUnavailable):
            await indexing.reindex(None, progress=None)
    finally:
        service.use(real)


# --- the commands, as a real process ----------------------------------------------------------


async def agora(settings: Settings, data_dir: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update(
        AGORA_DATABASE_URL=settings.database_url,
        AGORA_DATA_DIR=str(data_dir),
        AGORA_SECRET_KEY=settings.secret_key,
        AGORA_DEMO="0",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from core.cli import main; main()",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, output.decode()


def counts(output: str) -> dict[str, tuple[int, int]]:
    return {
        slug: (int(docs), int(visible))
        for slug, docs, visible in re.findall(
            r"^\s+(\S+): (\d+) documents, (\d+) visible posts$", output, re.MULTILINE
        )
    }


async def test_commands(site: Site, settings: Settings, tmp_path: Path) -> None:
    alpha, beta = len(await visible_ids(site.alpha)), len(await visible_ids(site.beta))
    # A folder of its own: the command's index starts empty, as after losing it.
    code, output = await agora(settings, tmp_path, "search", "status")
    assert code == 0, output
    assert counts(output) == {site.alpha.slug: (0, alpha), site.beta.slug: (0, beta)}
    assert "Documents: 0" in output
    assert "Indexing lag: 0 s" in output

    code, output = await agora(settings, tmp_path, "search", "reindex")
    assert code == 0, output
    assert f"Indexed {alpha + beta} visible posts of all courses." in output
    code, output = await agora(settings, tmp_path, "search", "status")
    assert counts(output) == {site.alpha.slug: (alpha, alpha), site.beta.slug: (beta, beta)}
    assert f"Documents: {alpha + beta}" in output

    # Wipe the index; a reindex of one course restores that course only.
    shutil.rmtree(tmp_path / "search-index")
    code, output = await agora(settings, tmp_path, "search", "reindex", "--course", site.beta.slug)
    assert code == 0, output
    assert f"Indexed {beta} visible posts of course {site.beta.slug}." in output
    code, output = await agora(settings, tmp_path, "search", "status")
    assert counts(output) == {site.alpha.slug: (0, alpha), site.beta.slug: (beta, beta)}

    code, output = await agora(settings, tmp_path, "search", "reindex", "--course", "nope")
    assert code != 0
    assert "There is no course with the slug 'nope'" in output
    assert "Traceback" not in output

    # A search job that has not been delivered shows as lag.
    await jobs.enqueue("search.index_post", {"post_id": min(await visible_ids(site.alpha))})
    code, output = await agora(settings, tmp_path, "search", "status")
    assert code == 0, output
    match = re.search(r"Indexing lag: ([\d.]+) s \(1 job waiting\)", output)
    assert match, output
    await jobs.deliver_pending()
