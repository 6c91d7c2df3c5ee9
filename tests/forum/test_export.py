"""The forum section of a data export: every post with every version, and nobody else's name."""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from core.export import ExportContext
from core.models import Role, User
from core.settings import Settings
from forum import actions
from forum.export import sections
from forum.models import ANONYMOUS_LABEL, Post, Thread
from tests.factories import (
    add_member,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


async def _export(user: User) -> tuple[ExportContext, dict[str, Any]]:
    ctx = ExportContext(user=user)
    data = await sections(ctx)
    json.dumps(data, allow_nan=False)  # plain JSON all the way down
    return ctx, data["forum"]


async def test_posts_threads_votes_follows_and_visits(db: Settings) -> None:
    teacher = await make_user("t.quill", display_name="Theodora Quillfeather")
    course = await make_course(teacher, title="Compilers")
    mentor = await make_user("m.vantwest", display_name="Marguerite Vantwest")
    learner = await make_user("l.brightwater", display_name="Lena Brightwater")
    classmate = await make_user("c.oakhollow", display_name="Casimir Oakhollow")
    await add_member(course, mentor, Role.MENTOR)
    await add_member(course, learner)
    await add_member(course, classmate)
    forum = await make_forum(course, title="Help")

    question = await make_thread(
        forum, learner, kind="question", title="How do pointers work?", body="First draft."
    )
    opening = await Post.get(thread_id=question.id, is_opening=True)
    opening = await actions.edit_post(
        opening, body="Second draft.", title="How do C pointers work?", acting_user=learner
    )
    opening = await actions.edit_post(
        opening,
        body="Moderated text.",
        acting_user=mentor,
        rule_code="R5",
        reason="Removed a phone number from the question.",
    )
    anonymous_answer = await make_reply(
        question, classmate, body="An anonymous answer.", anonymous=True
    )
    named_answer = await make_reply(question, classmate, body="A named answer.")
    await actions.accept_answer(
        await Thread.get(id=question.id), anonymous_answer, acting_user=learner
    )
    await actions.set_vote(named_answer, up=True, acting_user=learner)

    other_thread = await make_thread(forum, classmate, title="Lab two")
    mine_anonymous = await make_reply(
        other_thread, learner, body="Anonymous from me.", anonymous=True
    )
    withdrawn = await make_reply(other_thread, learner, body="Oops, wrong thread.")
    await actions.delete_own_post(withdrawn, acting_user=learner)
    endorsed = await make_reply(other_thread, learner, body="A good explanation.")
    await actions.endorse(endorsed, endorsed=True, acting_user=mentor)
    await actions.set_vote(endorsed, up=True, acting_user=classmate)
    unfollowed = await make_thread(forum, classmate, title="Not for me")
    await actions.set_subscription(unfollowed, subscribed=True, acting_user=learner)
    await actions.set_subscription(unfollowed, subscribed=False, acting_user=learner)
    await actions.mark_visited(unfollowed, acting_user=learner)

    ctx, forum_data = await _export(learner)

    posts = {p["post_id"]: p for p in forum_data["posts"]}
    assert list(posts) == [opening.id, mine_anonymous.id, withdrawn.id, endorsed.id]
    first = posts[opening.id]
    assert first["is_opening_post"] and first["thread_title"] == "How do C pointers work?"
    assert first["course_slug"] == course.slug and first["forum_title"] == "Help"
    assert first["url"] == f"/courses/{course.slug}/threads/{question.id}#post-{opening.id}"
    assert first["text"] == "Moderated text." and first["state"] == "visible"
    versions = first["versions"]
    assert [v["text"] for v in versions] == ["First draft.", "Second draft.", "Moderated text."]
    assert [v["title"] for v in versions] == [
        "How do pointers work?",
        "How do C pointers work?",
        "How do C pointers work?",
    ]
    mentor_name = ctx.pseudonym(mentor.id)
    assert mentor_name.startswith("Person ")
    assert [v["written_by"] for v in versions] == ["you", "you", mentor_name]
    assert [v["by_staff"] for v in versions] == [False, False, True]
    assert versions[-1]["replaced_at"] is None
    # Each version is replaced exactly when the next one was written.
    for earlier, later in itertools.pairwise(versions):
        assert earlier["replaced_at"] == later["written_at"]
        assert ISO.match(later["written_at"])
    assert versions[0]["written_at"] == first["created_at"]
    # The revision row and the post are written in the same transaction, a moment apart.
    last_edit = datetime.fromisoformat(first["edited_at"])
    assert abs(datetime.fromisoformat(versions[-1]["written_at"]) - last_edit) < timedelta(
        seconds=1
    )

    assert posts[mine_anonymous.id]["anonymous"] is True
    assert posts[mine_anonymous.id]["text"] == "Anonymous from me."
    assert posts[mine_anonymous.id]["reply_to_post_id"] is None
    gone = posts[withdrawn.id]
    assert gone["deleted_at"] is not None and gone["text"] == "" and gone["versions"] == []
    assert posts[endorsed.id]["is_endorsed"] is True and posts[endorsed.id]["vote_count"] == 1

    [started] = forum_data["threads_started"]
    assert started["thread_id"] == question.id and started["kind"] == "question"
    accepted = started["accepted_answer"]
    assert accepted["post_id"] == anonymous_answer.id
    assert accepted["author"] == ANONYMOUS_LABEL, "an anonymous answer's author stays unknown"

    [vote] = forum_data["votes_cast"]
    assert vote["post_id"] == named_answer.id and vote["thread_title"] == "How do C pointers work?"
    assert ISO.match(vote["voted_at"])
    followed = {s["thread_id"] for s in forum_data["subscriptions"]}
    assert followed == {question.id, other_thread.id}
    visited = {v["thread_id"]: v for v in forum_data["visit_markers"]}
    assert set(visited) == {question.id, unfollowed.id}

    text = json.dumps(forum_data, ensure_ascii=False)
    for person in (teacher, mentor, classmate):
        assert person.username not in text and person.display_name not in text
    assert classmate.id not in ctx._pseudonyms, "the classmate appears nowhere, not even numbered"


async def test_a_post_of_someone_else_is_not_exported(db: Settings) -> None:
    course = await make_course()
    learner, other = await make_user(), await make_user()
    await add_member(course, learner)
    await add_member(course, other)
    forum = await make_forum(course)
    thread = await make_thread(forum, other, body="Their words, not yours.")
    await make_reply(thread, other, body="More of their words.")
    _, data = await _export(learner)
    assert data == {
        "posts": [],
        "threads_started": [],
        "votes_cast": [],
        "subscriptions": [],
        "visit_markers": [],
    }
