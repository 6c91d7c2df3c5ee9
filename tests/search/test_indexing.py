"""The index follows the forums: every change made through the real actions shows in search.

Each test changes something with forum.actions or moderation.actions, lets the outbox deliver
(drain_jobs), and asks the process's search backend what it now finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from core.models import Course, Role, User
from core.settings import Settings
from forum import actions
from forum.models import Forum, Post, Thread
from moderation import actions as moderation
from search import service
from search.backends import SearchQuery
from search.tasks import document_id, to_document
from search.views import Filters, member_scope, run_search
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


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@dataclass(slots=True)
class Cast:
    course: Course
    forum: Forum
    other_forum: Forum
    instructor: User
    mentor: User
    learner: User
    classmate: User
    other_course: Course
    outsider: User


@pytest.fixture
async def cast(db: Settings) -> Cast:
    instructor = await make_user("ingrid")
    course = await make_course(instructor, title="Ornithology")
    mentor = await make_user("marek")
    learner = await make_user("zebedee", display_name="Zebedee Quillfeather")
    classmate = await make_user("clio")
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, learner)
    await add_member(course, classmate)
    forum = await make_forum(course, title="Field notes")
    other_forum = await make_forum(course, title="Questions")
    outsider = await make_user("olaf")
    other_course = await make_course(outsider, title="Marine biology")
    await drain_jobs()
    return Cast(
        course, forum, other_forum, instructor, mentor, learner, classmate, other_course, outsider
    )


async def found(course_ids: list[int], text: str = "", **filters: Any) -> list[int]:
    results = await service.backend().search(
        SearchQuery(text=text, course_ids=course_ids, **filters)
    )
    ids = [hit.post_id for hit in results.hits]
    assert len(ids) == len(set(ids)), "a post appears twice"
    return ids


async def opening(thread: Thread) -> Post:
    return await Post.get(thread_id=thread.id, is_opening=True)


async def test_new_thread_and_reply_are_findable(cast: Cast) -> None:
    thread = await make_thread(
        cast.forum, cast.learner, title="Harbour sightings", body="Three pelicans near the harbour."
    )
    reply = await make_reply(thread, cast.classmate, body="I saw cormorants there too.")
    await drain_jobs()
    first = await opening(thread)
    assert await found([cast.course.id], "pelicans") == [first.id]
    assert await found([cast.course.id], "cormorants") == [reply.id]
    # Every post carries its thread's title.
    assert set(await found([cast.course.id], "sightings")) == {first.id, reply.id}
    assert await found([cast.other_course.id], "pelicans") == []


async def test_edits_replace_the_indexed_text(cast: Cast) -> None:
    thread = await make_thread(
        cast.forum,
        cast.learner,
        title="Wader identification",
        body="Is this a curlew or a whimbrel?",
    )
    post = await opening(thread)
    await drain_jobs()
    assert await found([cast.course.id], "curlew") == [post.id]
    await actions.edit_post(post, body="Is this a godwit or a dunlin?", acting_user=cast.learner)
    await drain_jobs()
    assert await found([cast.course.id], "godwit") == [post.id]
    assert await found([cast.course.id], "curlew") == []
    assert await found([cast.course.id], "whimbrel") == []
    # A new title reaches every post of the thread, not only the opening one.
    reply = await make_reply(thread, cast.classmate, body="Looks like a godwit to me.")
    post = await Post.get(id=post.id)
    await actions.edit_post(
        post, body=post.body_markdown, title="Shorebird identification", acting_user=cast.learner
    )
    await drain_jobs()
    assert set(await found([cast.course.id], "shorebird")) == {post.id, reply.id}
    assert await found([cast.course.id], "wader") == []


async def test_hide_unhide_remove_restore(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.mentor, title="Owl pellets")
    reply = await make_reply(thread, cast.learner, body="Dissecting barn owl pellets today.")
    await drain_jobs()
    assert await found([cast.course.id], "dissecting") == [reply.id]

    await moderation.hide_post(reply, rule_code="R2", reason=REASON, acting_user=cast.mentor)
    await drain_jobs()
    assert await found([cast.course.id], "dissecting") == []
    await moderation.unhide_post(
        await Post.get(id=reply.id), rule_code="R2", reason=REASON, acting_user=cast.mentor
    )
    await drain_jobs()
    assert await found([cast.course.id], "dissecting") == [reply.id]

    await moderation.remove_post(
        await Post.get(id=reply.id), rule_code="R2", reason=REASON, acting_user=cast.mentor
    )
    await drain_jobs()
    assert await found([cast.course.id], "dissecting") == []
    assert await found([cast.course.id]) == [(await opening(thread)).id]
    await moderation.restore_post(
        await Post.get(id=reply.id), rule_code="R2", reason=REASON, acting_user=cast.mentor
    )
    await drain_jobs()
    assert await found([cast.course.id], "dissecting") == [reply.id]


async def test_a_post_deleted_by_its_author_leaves_the_index(cast: Cast) -> None:
    thread = await make_thread(cast.forum, cast.classmate, title="Nest boxes")
    reply = await make_reply(thread, cast.learner, body="My nest box has blue tits.")
    await drain_jobs()
    assert await found([cast.course.id], "tits") == [reply.id]
    await actions.delete_own_post(reply, acting_user=cast.learner)
    await drain_jobs()
    assert await found([cast.course.id], "tits") == []
    assert await service.backend().count(cast.course.id) == 1


async def test_a_moved_thread_is_found_under_its_new_forum(cast: Cast) -> None:
    thread = await make_thread(
        cast.forum, cast.learner, title="Migration routes", body="Where do swallows winter?"
    )
    reply = await make_reply(thread, cast.classmate, body="Swallows winter in Africa.")
    await drain_jobs()
    both = {(await opening(thread)).id, reply.id}
    assert set(await found([cast.course.id], "swallows", forum_id=cast.forum.id)) == both
    await moderation.move_thread(
        await Thread.get(id=thread.id),
        cast.other_forum,
        rule_code="R2",
        reason=REASON,
        acting_user=cast.mentor,
    )
    await drain_jobs()
    assert await found([cast.course.id], "swallows", forum_id=cast.forum.id) == []
    assert set(await found([cast.course.id], "swallows", forum_id=cast.other_forum.id)) == both


async def test_accepting_an_answer_updates_the_unanswered_filter(cast: Cast) -> None:
    question = await make_thread(
        cast.forum,
        cast.learner,
        kind="question",
        title="Which binoculars?",
        body="8x42 or 10x42 binoculars?",
    )
    answer = await make_reply(question, cast.classmate, body="8x42 binoculars, brighter.")
    discussion = await make_thread(
        cast.forum, cast.learner, title="Binoculars chat", body="Binoculars are fun."
    )
    await drain_jobs()
    asked = {(await opening(question)).id, answer.id}
    assert set(await found([cast.course.id], "binoculars", unanswered_only=True)) == asked
    await actions.accept_answer(await Thread.get(id=question.id), answer, acting_user=cast.learner)
    await drain_jobs()
    assert await found([cast.course.id], "binoculars", unanswered_only=True) == []
    everything = set(await found([cast.course.id], "binoculars"))
    assert everything == asked | {(await opening(discussion)).id}
    await actions.accept_answer(await Thread.get(id=question.id), None, acting_user=cast.learner)
    await drain_jobs()
    assert set(await found([cast.course.id], "binoculars", unanswered_only=True)) == asked


async def test_anonymous_posts_carry_no_author(cast: Cast) -> None:
    signed = await make_thread(
        cast.forum, cast.learner, title="Heron colony", body="Visited the heron colony."
    )
    hidden_name = await make_reply(
        signed, cast.learner, anonymous=True, body="Anonymous note about egrets."
    )
    anonymous_thread = await make_thread(
        cast.forum, cast.learner, anonymous=True, title="Egret question", body="Egrets or herons?"
    )
    await drain_jobs()
    anonymous_ids = {hidden_name.id, (await opening(anonymous_thread)).id}
    # Neither the handle nor the name finds them, and the author filter never matches them.
    for words in ("zebedee", "Zebedee Quillfeather", "quillfeather"):
        assert set(await found([cast.course.id], words)).isdisjoint(anonymous_ids)
    assert await found([cast.course.id], author_handle="zebedee") == [(await opening(signed)).id]
    assert await found([cast.course.id], "egrets", author_handle="zebedee") == []
    assert set(await found([cast.course.id], "egrets")) == anonymous_ids
    # What goes to the engine has no author at all.
    post = await Post.get(id=hidden_name.id).select_related("author")
    thread = await Thread.get(id=signed.id)
    document = to_document(post, thread, cast.course)
    assert document.id == document_id(post.id)
    assert document.author_handle is None
    assert "zebedee" not in repr(document).lower()
    assert "quillfeather" not in repr(document).lower()


async def test_search_covers_only_the_askers_courses(cast: Cast) -> None:
    await make_thread(cast.forum, cast.learner, title="Puffin burrows", body="Puffins nest.")
    marine_forum = await make_forum(cast.other_course, title="Reefs")
    await make_thread(marine_forum, cast.outsider, title="Puffin diet", body="Puffins eat fish.")
    await drain_jobs()
    scope = await member_scope(cast.learner)
    assert set(scope.courses) == {cast.course.id}
    page = await run_search(Filters(text="puffins"), scope, cast.learner)
    assert page.hits and {hit.course.id for hit in page.hits} == {cast.course.id}
    # The outsider sees only their own course's post.
    outsider_scope = await member_scope(cast.outsider)
    page = await run_search(Filters(text="puffins"), outsider_scope, cast.outsider)
    assert {hit.course.id for hit in page.hits} == {cast.other_course.id}
    # Someone in no course finds nothing at all.
    loner = await make_user("lonely")
    page = await run_search(Filters(text="puffins"), await member_scope(loner), loner)
    assert page.hits == [] and page.total == 0


async def test_results_are_checked_against_the_database(cast: Cast) -> None:
    """A post hidden before its indexing job ran is not shown (the job has not run yet)."""
    thread = await make_thread(cast.forum, cast.learner, title="Kingfisher", body="Kingfisher!")
    await drain_jobs()
    post = await opening(thread)
    from forum.models import PostState

    # As if the job that follows a hide were still waiting: change the row only.
    await Post.filter(id=post.id).update(state=PostState.HIDDEN)
    assert await found([cast.course.id], "kingfisher") == [post.id]
    page = await run_search(
        Filters(text="kingfisher"), await member_scope(cast.classmate), cast.classmate
    )
    assert page.hits == []
