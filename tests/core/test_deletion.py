"""Deleting an account: the person goes, the public record stays readable and verifiable.

The person deleting is Quilla Zanzibar (@quillanz). After deletion her name, username, email
and about text must be gone from every text column of the database and from every page,
API answer and search result other people can reach, while "Deleted user" takes her place.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette
from tortoise.connection import get_connection

from core import actions, deletion
from core.errors import Conflict, PermissionDenied
from core.models import (
    ApiToken,
    AuthSession,
    Course,
    DataExport,
    ExportStatus,
    Membership,
    Notification,
    RateLimitCounter,
    Role,
    User,
)
from core.settings import Settings
from core.timeutil import utcnow
from forum import actions as forum_actions
from forum.models import Post, Revision, Subscription, Thread, ThreadVisit
from moderation import actions as moderation
from moderation import log
from moderation.models import LogEntry, Notice, SanctionKind
from peer_review import actions as peer
from peer_review import attachments
from peer_review.models import Assignment, Attachment, Grade, Review, Submission
from peer_review.queries import load_rubric
from tests.conftest import CSRF_RE, csrf_token, drain_jobs
from tests.factories import (
    PASSWORD,
    add_member,
    log_in,
    make_course,
    make_forum,
    make_reply,
    make_thread,
    make_user,
)
from tests.moderation.test_tamper import ROOT, agora, command_env
from tests.peer_review.factories import (
    COMMENT,
    answers_at,
    essay,
    make_assignment,
    make_cast,
    review_once,
)

USERNAME = "quillanz"
DISPLAY_NAME = "Quilla Zanzibar"
EMAIL = "quilla.zanzibar@example.org"
ABOUT = "Heliograph tinkerer from Vardo, fond of ptarmigans"
# Each is looked for case-insensitively; "quilla" alone catches any part of her name.
NEEDLES = (USERNAME, DISPLAY_NAME, EMAIL, ABOUT, "quilla", "zanzibar")
# A word only her posts contain, to find them through search.
SEARCH_WORD = "heliotropic"
REASON = "Personal remarks about another learner."


pytestmark = pytest.mark.usefixtures("reused_password_hashes")


@asynccontextmanager
async def browser(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Another browser on the same site, with its own cookies."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def make_person() -> User:
    person = await actions.create_user(
        username=USERNAME,
        display_name=DISPLAY_NAME,
        password=PASSWORD,
        email=EMAIL,
        acting_user=None,
    )
    # The profile page is not part of this test: fill the profile fields directly.
    await User.filter(id=person.id).update(
        about=ABOUT, links=["https://quilla.example.org"], email_prefs={"forum": "daily"}
    )
    return await User.get(id=person.id)


async def remembered_text() -> list[str]:
    """Every (table.column) whose stored text mentions her, in any table of the database."""
    connection = get_connection("default")
    columns: list[tuple[str, str]] = []
    if connection.capabilities.dialect == "postgres":
        _, rows = await connection.execute_query(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN "
            "('text', 'character varying', 'character', 'json', 'jsonb')"
        )
        columns = [(row["table_name"], row["column_name"]) for row in rows]
    else:
        _, tables = await connection.execute_query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        for table in tables:
            _, info = await connection.execute_query(f'PRAGMA table_info("{table["name"]}")')
            for column in info:
                kind = str(column["type"]).upper()
                if any(word in kind for word in ("CHAR", "TEXT", "JSON", "CLOB")):
                    columns.append((table["name"], column["name"]))
    assert ("agora_user", "display_name") in columns and ("agora_post", "body_markdown") in columns
    found = []
    for table, column in columns:
        _, rows = await connection.execute_query(
            f'SELECT CAST("{column}" AS TEXT) AS v FROM "{table}"'
        )
        for row in rows:
            value = (row["v"] or "").lower()
            if any(needle.lower() in value for needle in NEEDLES):
                found.append(f"{table}.{column}: {value[:120]!r}")
    return found


def assert_unnamed(response: httpx.Response) -> None:
    assert response.status_code == 200, (response.request.url, response.status_code)
    text = response.text.lower()
    for needle in NEEDLES:
        assert needle.lower() not in text, (response.request.url, needle)


# --- a course with history ------------------------------------------------------------


@dataclass
class World:
    course: Course
    moderated: Course  # where she is a mentor, and moderators are named publicly
    instructor: User
    mentor: User
    person: User
    other: User
    own_thread: Thread
    other_thread: Thread
    edited: Post
    hidden: Post
    anonymous: Post


async def make_world() -> World:
    instructor = await make_user("ines", display_name="Ines Instructor", can_create_courses=True)
    course = await make_course(instructor, title="Optics 101")
    mentor = await make_user("mateo", display_name="Mateo Mentor")
    await add_member(course, mentor, Role.MENTOR)
    person = await make_person()
    other = await make_user("otto", display_name="Otto Other")
    for learner in (person, other):
        await actions.join_course(
            course=course, invite_code=course.invite_code, acting_user=learner
        )
    forum = await make_forum(course, title="Questions")
    own_thread = await make_thread(
        forum, person, title="Mirrors at dawn", body=f"A {SEARCH_WORD} mirror question."
    )
    await make_reply(own_thread, other, body="Try a concave one.")
    other_thread = await make_thread(forum, other, title="Lenses", body="Which lens first?")
    edited = await make_reply(other_thread, person, body=f"The {SEARCH_WORD} one, first draft.")
    edited = await forum_actions.edit_post(
        edited, body=f"The {SEARCH_WORD} one, second draft.", acting_user=person
    )
    hidden = await make_reply(other_thread, person, body="Otto never reads the manual.")
    anonymous = await make_reply(
        other_thread, person, body=f"Anonymously: {SEARCH_WORD} lenses.", anonymous=True
    )
    await moderation.hide_post(hidden, rule_code="R1", reason=REASON, acting_user=mentor)
    await moderation.sanction_user(
        course, person, SanctionKind.WARNING, rule_code="R1", reason=REASON, acting_user=mentor
    )
    # A second course where she moderates and moderators are named in the public log.
    moderated = await make_course(instructor, title="Optics Lab")
    await actions.set_public_moderator_names(moderated, True, acting_user=instructor)
    await add_member(moderated, person, Role.MENTOR)
    await actions.join_course(
        course=moderated, invite_code=moderated.invite_code, acting_user=other
    )
    lab = await make_forum(moderated, title="Lab")
    spam = await make_thread(lab, other, title="Buy lenses", body="Cheap lenses here.")
    spam_post = await Post.get(thread_id=spam.id, is_opening=True)
    await moderation.hide_post(
        spam_post, rule_code="R3", reason="Advertising is not allowed.", acting_user=person
    )
    await drain_jobs()
    return World(
        course=course,
        moderated=moderated,
        instructor=instructor,
        mentor=mentor,
        person=person,
        other=other,
        own_thread=own_thread,
        other_thread=other_thread,
        edited=edited,
        hidden=hidden,
        anonymous=anonymous,
    )


async def delete_through_page(
    client: httpx.AsyncClient, *, posts: str = "keep", password: str = PASSWORD
) -> httpx.Response:
    token = await csrf_token(client, "/me/delete")
    return await client.post(
        "/me/delete",
        data={
            "csrf_token": token,
            "posts": posts,
            "password": password,
            "confirm_username": USERNAME,
        },
    )


async def pages_others_see(app: Starlette, world: World) -> dict[str, list[httpx.Response]]:
    """What a classmate, the course's staff and the public fetch, keyed by who looks."""
    slug, lab = world.course.slug, world.moderated.slug
    seen: dict[str, list[httpx.Response]] = {}
    for who, username in (("learner", "otto"), ("staff", "ines")):
        async with browser(app) as client:
            assert (await log_in(client, username)).status_code == 303
            urls = [
                f"/courses/{slug}/threads/{world.own_thread.id}",
                f"/courses/{slug}/threads/{world.other_thread.id}",
                f"/search?q={SEARCH_WORD}",
                f"/courses/{slug}/search?q={SEARCH_WORD}",
                f"/api/v1/search?q={SEARCH_WORD}",
                f"/api/v1/courses/{slug}/threads/{world.own_thread.id}",
                f"/api/v1/courses/{slug}/threads/{world.other_thread.id}",
                f"/api/v1/courses/{slug}/posts/{world.edited.id}",
                f"/courses/{slug}/moderation",
                f"/courses/{lab}/moderation",
                "/notifications",
                f"/courses/{slug}/forums/{world.own_thread.forum_id}",  # type: ignore[attr-defined]
                f"/courses/{slug}/posts/{world.edited.id}/history",
            ]
            if who == "staff":
                urls += [f"/courses/{slug}/staff/members", f"/api/v1/courses/{slug}/staff/members"]
            seen[who] = [await client.get(url) for url in urls]
    async with browser(app) as client:
        seen["public"] = [
            await client.get(f"/courses/{lab}/moderation"),
            await client.get(f"/api/v1/courses/{lab}/moderation"),
            await client.get("/moderation"),
        ]
    return seen


# --- the whole journey ------------------------------------------------------------------


async def test_her_name_is_gone_everywhere_and_deleted_user_takes_its_place(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    world = await make_world()
    slug = world.course.slug
    # Something of hers in every kind of personal store.
    assert (await log_in(client, USERNAME, "not her password")).status_code == 422
    assert (await log_in(client, USERNAME)).status_code == 303
    await actions.issue_api_token(world.person, name="laptop", acting_user=world.person)
    exports = settings.data_dir / "exports"
    exports.mkdir(exist_ok=True)
    (exports / "quilla-test.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    await DataExport.create(
        user=world.person, status=ExportStatus.READY, file_name="quilla-test.zip"
    )
    assert await Notification.filter(user_id=world.other.id, message__contains=DISPLAY_NAME)

    # Before: the checks below can fail, because her name is there to find.
    assert await remembered_text()
    before = await pages_others_see(app, world)
    assert DISPLAY_NAME in before["learner"][0].text
    assert DISPLAY_NAME in before["staff"][2].text  # search results
    assert DISPLAY_NAME in before["public"][0].text  # named moderator of the lab course
    async with browser(app) as otto:
        await log_in(otto, "otto")
        assert DISPLAY_NAME in (await otto.get(f"/users/{USERNAME}")).text

    # She renames herself: notifications sent earlier still carry the old name.
    await User.filter(id=world.person.id).update(display_name="Quilla Z.")
    page = await client.get("/me/delete")
    assert page.status_code == 200
    assert "never names" in page.text and "Deleted user" in page.text
    response = await delete_through_page(client)
    assert response.status_code == 303 and response.headers["location"] == "/?account=deleted"
    landing = await client.get("/?account=deleted")
    assert "Your account has been deleted" in landing.text
    assert "Log in" in landing.text  # signed out
    await drain_jobs()

    # (1) No text column of any table mentions her.
    assert await remembered_text() == []
    # (2) Nor does anything others can fetch; "Deleted user" stands where she did.
    after = await pages_others_see(app, world)
    for responses in after.values():
        for response in responses:
            assert_unnamed(response)
    learner, staff, public = after["learner"], after["staff"], after["public"]
    named = (*learner[:8], *learner[9:], *staff[:10], *staff[11:13], public[0], public[1])
    for response in named:
        assert "Deleted user" in response.text, response.request.url
    assert "Deleted user replied in" in learner[10].text  # Otto's notifications
    assert f"deleted-{world.person.id}" in staff[1].text  # staff still see who wrote anonymously

    # The posts stay, with their text, for the discussion.
    assert (await Post.get(id=world.edited.id)).body_markdown.endswith("second draft.")
    assert await Revision.filter(post_id=world.edited.id).exists()
    account = await User.get(id=world.person.id)
    assert account.username == f"deleted-{account.id}" and account.deleted_at is not None
    assert not account.is_active and account.email is None and account.links == []
    for model in (AuthSession, ApiToken, Notification, DataExport, Membership):
        assert not await model.filter(user_id=account.id).exists(), model
    assert not await Subscription.filter(user_id=account.id).exists()
    assert not await ThreadVisit.filter(user_id=account.id).exists()
    assert not (exports / "quilla-test.zip").exists()
    assert not await RateLimitCounter.filter(key__contains=USERNAME).exists()

    # Her profile is gone under either name.
    async with browser(app) as otto:
        await log_in(otto, "otto")
        for url in (f"/users/{USERNAME}", f"/users/{account.username}"):
            profile = await otto.get(url)
            assert profile.status_code == 404
            assert not any(needle.lower() in profile.text.lower() for needle in NEEDLES)

    # She cannot sign in, by either name; her old username is free for someone new.
    async with browser(app) as other_browser:
        assert (await log_in(other_browser, USERNAME)).status_code == 422
        assert (await log_in(other_browser, account.username)).status_code == 422
        assert (await client.get("/courses")).status_code == 303  # her old cookie is dead
        token = await csrf_token(other_browser, "/signup")
        signup = await other_browser.post(
            "/signup",
            data={
                "csrf_token": token,
                "username": USERNAME,
                "display_name": "Someone New",
                "password": "a different long password",
            },
        )
        assert signup.status_code == 303
        newcomer = await User.get(username=USERNAME)
        assert newcomer.id != account.id
        assert not await Membership.filter(user_id=newcomer.id).exists()
        mine = await other_browser.get(f"/courses/{slug}/threads/{world.own_thread.id}")
        assert mine.status_code == 403  # not a member: nothing of hers came with the name


async def test_the_moderation_log_still_verifies_after_deletion(
    app: Starlette, settings: Settings
) -> None:
    world = await make_world()
    entries = await LogEntry.all().count()
    await deletion.delete_account(world.person, remove_posts=True, acting_user=world.person)
    # Nothing was rewritten; her leaving the lab course's staff is one new entry.
    assert await LogEntry.all().count() == entries + 1
    left = await LogEntry.all().order_by("-seq").first()
    assert left is not None and left.act == "change_role"
    assert (left.course_id, left.target_id) == (world.moderated.id, world.person.id)
    assert (left.old_value, left.new_value) == ("mentor", "none")
    assert DISPLAY_NAME not in left.canonical
    report = await log.verify_log()
    assert report.ok, report.problems
    code, out, err = await agora(settings, "audit", "verify")
    assert code == 0, out + err


# --- keeping or removing posts -----------------------------------------------------------


async def test_removing_posts_withdraws_them_like_the_authors_own_delete(
    app: Starlette,
) -> None:
    world = await make_world()
    notice = await Notice.get(user_id=world.person.id, act="hide_post")
    assert notice.content_excerpt
    replies = (await Thread.get(id=world.other_thread.id)).reply_count

    result = await deletion.delete_account(
        world.person, remove_posts=True, acting_user=world.person
    )
    await drain_jobs()

    assert (result.posts_removed, result.posts_kept, result.kept_in) == (4, 0, [])
    for post in await Post.filter(author_id=world.person.id):
        assert post.deleted_at is not None and post.body_markdown == post.body_html == ""
    assert not await Revision.filter(post_id=world.edited.id).exists()
    # Three of her replies left Otto's thread; the thread and Otto's posts stay.
    assert (await Thread.get(id=world.other_thread.id)).reply_count == replies - 3
    assert await Post.filter(thread_id=world.own_thread.id, author_id=world.other.id).exists()
    assert (await Notice.get(id=notice.id)).content_excerpt == ""
    async with browser(app) as client:
        await log_in(client, "otto")
        page = await client.get(f"/courses/{world.course.slug}/threads/{world.other_thread.id}")
        assert "second draft" not in page.text and "Otto never reads" not in page.text
        found = await client.get(f"/api/v1/search?q={SEARCH_WORD}")
        assert found.json()["total"] == 0


async def test_keeping_posts_keeps_their_text_under_deleted_user(app: Starlette) -> None:
    world = await make_world()
    result = await deletion.delete_account(
        world.person, remove_posts=False, acting_user=world.person
    )
    await drain_jobs()
    assert (result.posts_removed, result.posts_kept) == (0, 4)
    assert not await Post.filter(author_id=world.person.id, deleted_at__isnull=False).exists()
    async with browser(app) as client:
        await log_in(client, "otto")
        found = (await client.get(f"/api/v1/search?q={SEARCH_WORD}")).json()
        assert found["total"] == 3
        assert {hit["author"]["name"] for hit in found["hits"]} == {
            "Deleted user",
            "Anonymous learner",
        }


async def test_a_course_that_forbids_removal_keeps_her_posts_and_says_so(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await make_world()
    await Course.filter(id=world.course.id).update(allow_removal_on_deletion=False)
    await log_in(client, USERNAME)
    page = await client.get("/me/delete")
    assert "Courses that keep posts" in page.text and "Optics 101" in page.text
    assert "Optics Lab" not in page.text.split("Courses that keep posts")[1].split("</ul>")[0]

    result = await deletion.delete_account(
        world.person, remove_posts=True, acting_user=world.person
    )
    assert result.kept_in == ["Optics 101"]
    assert (result.posts_removed, result.posts_kept) == (0, 4)
    kept = await Post.get(id=world.edited.id)
    assert kept.deleted_at is None and kept.body_markdown.endswith("second draft.")


# --- who may delete, and refusals ----------------------------------------------------------


async def test_a_sole_instructor_is_asked_to_hand_the_course_over_first(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await make_world()
    await log_in(client, "ines")
    page = await client.get("/me/delete")
    assert "You are the only instructor of" in page.text and "Optics 101" in page.text
    assert 'name="password"' not in page.text  # no form to fill in while it cannot work
    token = CSRF_RE.search(page.text)
    assert token is not None
    refused = await client.post(
        "/me/delete",
        data={
            "csrf_token": token.group(1),
            "posts": "keep",
            "password": PASSWORD,
            "confirm_username": "ines",
        },
    )
    assert refused.status_code == 409
    assert "make another member an instructor" in refused.text
    assert (await User.get(id=world.instructor.id)).deleted_at is None
    assert await Membership.filter(user_id=world.instructor.id).count() == 2
    with pytest.raises(Conflict, match="only instructor of “Optics 101” and “Optics Lab”"):
        await deletion.delete_account(world.instructor, remove_posts=False, acting_user=None)

    # Once someone else teaches both courses, she may go; her leaving is on the log.
    for course in (world.course, world.moderated):
        await actions.set_member_role(
            course, username="mateo", role=Role.INSTRUCTOR, acting_user=world.instructor
        )
    token = await csrf_token(client, "/me/delete")
    done = await client.post(
        "/me/delete",
        data={
            "csrf_token": token,
            "posts": "keep",
            "password": PASSWORD,
            "confirm_username": "ines",
        },
    )
    assert done.status_code == 303
    departures = await LogEntry.filter(act="change_role", target_id=world.instructor.id)
    assert {(e.old_value, e.new_value) for e in departures} >= {("instructor", "none")}
    assert (await log.verify_log()).ok


async def test_wrong_password_or_username_changes_nothing(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await make_world()
    await log_in(client, USERNAME)
    wrong_password = await delete_through_page(client, password="not my password at all")
    assert wrong_password.status_code == 422
    assert "This is not your password." in wrong_password.text
    assert "Nothing was deleted" in wrong_password.text
    token = await csrf_token(client, "/me/delete")
    wrong_name = await client.post(
        "/me/delete",
        data={
            "csrf_token": token,
            "posts": "remove",
            "password": PASSWORD,
            "confirm_username": "otto",
        },
    )
    assert wrong_name.status_code == 422
    assert f"Type your username, {USERNAME}, to confirm." in wrong_name.text
    assert 'value="remove" checked' in wrong_name.text  # the choice is kept
    no_choice = await client.post(
        "/me/delete",
        data={"csrf_token": token, "password": PASSWORD, "confirm_username": USERNAME},
    )
    assert no_choice.status_code == 422
    assert "Choose whether your posts stay" in no_choice.text
    forged = await client.post(
        "/me/delete",
        data={"posts": "keep", "password": PASSWORD, "confirm_username": USERNAME},
    )
    assert forged.status_code == 403
    person = await User.get(id=world.person.id)
    assert person.username == USERNAME and person.deleted_at is None
    assert (await client.get("/courses")).status_code == 200  # still signed in
    assert await Membership.filter(user_id=person.id).count() == 2


async def test_guessing_the_password_is_stopped(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    await make_person()
    await log_in(client, USERNAME)
    for _ in range(settings.login_rate_limit):
        assert (await delete_through_page(client, password="a wrong guess")).status_code == 422
    stopped = await delete_through_page(client)
    assert stopped.status_code == 429 and "Too many wrong passwords" in stopped.text
    assert int(stopped.headers["Retry-After"]) > 0
    assert (await User.get(username=USERNAME)).deleted_at is None


async def test_the_page_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/me/delete")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/me/delete"


async def test_a_suspended_member_can_still_delete_their_account(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    world = await make_world()
    await moderation.sanction_user(
        world.course,
        world.person,
        SanctionKind.SUSPENSION,
        rule_code="R1",
        reason=REASON,
        days=30,
        acting_user=world.mentor,
    )
    await log_in(client, USERNAME)
    assert (await client.get(f"/courses/{world.course.slug}")).status_code == 403
    response = await delete_through_page(client, posts="remove")
    assert response.status_code == 303
    assert (await User.get(id=world.person.id)).deleted_at is not None


async def test_nobody_else_may_delete_an_account(db: Settings) -> None:
    person, other = await make_person(), await make_user()
    with pytest.raises(PermissionDenied, match="only your own account"):
        await deletion.delete_account(person, remove_posts=False, acting_user=other)
    await deletion.delete_account(person, remove_posts=False, acting_user=person)
    with pytest.raises(Conflict, match="already been deleted"):
        await deletion.delete_account(person, remove_posts=False, acting_user=None)


# --- peer review -------------------------------------------------------------------------


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + b"\x00" * 20


async def test_peer_review_keeps_scores_and_empties_her_own_work(db: Settings) -> None:
    cast = await make_cast(learners=4)
    person = await make_person()
    await actions.join_course(
        course=cast.course, invite_code=cast.course.invite_code, acting_user=person
    )
    assignment = await make_assignment(cast, utcnow(), reviews_wanted=2, reviews_required=2)
    mine = await peer.submit(
        assignment,
        body=essay(7),
        uploads=[attachments.Upload("quilla-notes.png", PNG)],
        acting_user=person,
    )
    for i, learner in enumerate(cast.learners):
        await peer.submit(assignment, body=essay(100 + i), acting_user=learner)
    # She grades harshly: were her scores dropped, her classmates' grades would move.
    given = [await review_once(assignment, person, [0, 0]) for _ in range(2)]
    for learner, positions in zip(cast.learners, ([-1, -1], [1, 1], [2, 1], [-1, 0]), strict=True):
        for _ in range(2):
            await review_once(assignment, learner, positions)
    await drain_jobs()
    stored = await Attachment.get(submission_id=mine.id)
    path = attachments.storage_path(db.data_dir, stored.storage_name)
    assert path.exists()
    grades = await recompute_all(assignment)
    assert len(grades) == 5 and all(percent is not None for percent in grades.values())

    result = await deletion.delete_account(person, remove_posts=True, acting_user=person)
    await drain_jobs()

    assert result.reviews_blanked == 2
    for review in given:
        fresh = await Review.get(id=review.id)
        assert fresh.overall_comment == "" and fresh.percent == review.percent
        assert fresh.levels() == review.levels()
        assert all(answer["comment"] == "" for answer in fresh.answers.values())
        assert COMMENT in review.overall_comment
    work = await Submission.get(id=mine.id)
    assert work.body_markdown == work.body_html == "" and work.signature is None
    assert not await Attachment.filter(submission_id=mine.id).exists() and not path.exists()
    # Recomputing every grade changes none: the scores she gave still count.
    assert await recompute_all(assignment) == grades
    # Her emptied work is handed to nobody for review any more: a newcomer who reviews until
    # nothing is left gets every other submission but hers.
    rubric = await load_rubric(assignment.id)
    learner = await make_user()
    await actions.join_course(
        course=cast.course, invite_code=cast.course.invite_code, acting_user=learner
    )
    await peer.submit(assignment, body=essay(999), acting_user=learner)
    handed = []
    while (review := await peer.review_next(assignment, acting_user=learner)) is not None:
        handed.append(review.submission_id)  # type: ignore[attr-defined]
        await peer.submit_review(
            review, answers=answers_at(rubric, [1, 1]), overall=COMMENT, acting_user=learner
        )
    others = await Submission.filter(assignment_id=assignment.id, is_current=True).exclude(
        author_id__in=[person.id, learner.id]
    )
    assert sorted(handed) == sorted(s.id for s in others) and mine.id not in handed


async def recompute_all(assignment: Assignment) -> dict[int, float | None]:
    """Every current submission's grade recomputed now, by submission id."""
    for submission in await Submission.filter(assignment_id=assignment.id, is_current=True):
        await peer.recompute_grade(submission, acting_user=None)
    rows = await Grade.filter(assignment_id=assignment.id).values_list(
        "submission_id", "final_percent"
    )
    return dict(rows)  # type: ignore[arg-type]


# --- the command line -----------------------------------------------------------------------


async def run_agora(settings: Settings, *args: str, stdin: str = "") -> tuple[int, str]:
    """The real `agora` command in its own process, with something typed on its input."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from core.cli import main; main()",
        *args,
        cwd=ROOT,
        env=command_env(settings),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_command_line_asks_first_then_deletes(app: Starlette, settings: Settings) -> None:
    world = await make_world()
    await Course.filter(id=world.course.id).update(allow_removal_on_deletion=False)
    code, out = await run_agora(
        settings, "users", "delete", USERNAME, "--remove-posts", stdin="n\n"
    )
    assert code == 1 and "Aborted" in out
    assert "do not allow removal, so posts there stay: Optics 101" in out
    assert (await User.get(id=world.person.id)).deleted_at is None

    code, out = await run_agora(settings, "users", "delete", USERNAME, "--remove-posts", "--yes")
    assert code == 0, out
    assert f"now deleted-{world.person.id}" in out
    assert (await User.get(id=world.person.id)).deleted_at is not None
    assert (await Post.get(id=world.edited.id)).deleted_at is None  # the course keeps posts

    code, out = await run_agora(settings, "users", "delete", "ines", "--yes")
    assert code == 1 and "only instructor of Optics 101, Optics Lab" in out
    code, out = await run_agora(settings, "users", "delete", "nobody-here", "--yes")
    assert code == 1 and "No user 'nobody-here'" in out
    code, out, err = await agora(settings, "audit", "verify")
    assert code == 0, out + err
