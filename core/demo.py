"""Demo data for a first start: a course with an instructor, a mentor and learners."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core import actions
from core.models import Course, User
from core.settings import Settings

DEMO_USERS = (
    ("ada", "Ada (instructor)", "instructor"),
    ("grace", "Grace (mentor)", "mentor"),
    ("alan", "Alan", "learner"),
    ("barbara", "Barbara", "learner"),
    ("edsger", "Edsger", "learner"),
)


async def database_is_empty() -> bool:
    return not await User.exists()


async def load_demo(settings: Settings) -> Path:
    """Create the demo users and course; write their passwords to a private file and return it."""
    lines = ["Demo accounts (username / password):"]
    created: dict[str, User] = {}
    for username, display_name, role in DEMO_USERS:
        password = secrets.token_urlsafe(9)
        created[username] = await actions.create_user(
            username=username,
            display_name=display_name,
            password=password,
            can_create_courses=role == "instructor",
            acting_user=None,
        )
        lines.append(f"  {username:10} {password}   ({role})")
    course = await actions.create_course(
        title="Introduction to Astronomy",
        description="Stars, planets and how we know what we know about them.",
        slug="astronomy-101",
        acting_user=created["ada"],
    )
    for username, _, role in DEMO_USERS[1:]:
        await actions.set_member_role(
            course, username=username, role=role, acting_user=created["ada"]
        )
    await _demo_forums(course, created)
    refreshed = await Course.get(id=course.id)
    lines.append(f"Course: /courses/{refreshed.slug}  invite code: {refreshed.invite_code}")
    path = settings.data_dir / "demo-credentials.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


async def _demo_forums(course: Course, users: dict[str, User]) -> None:
    from forum import actions as forum_actions

    ada, alan, barbara, grace = users["ada"], users["alan"], users["barbara"], users["grace"]
    general = await forum_actions.create_forum(
        course,
        title="General discussion",
        description="Anything about the course.",
        acting_user=ada,
    )
    await forum_actions.create_forum(
        course,
        title="Week 1: The night sky",
        description="Questions about the first week.",
        acting_user=ada,
    )
    question = await forum_actions.start_thread(
        general,
        kind="question",
        title="Why do stars twinkle but planets mostly don't?",
        body="I noticed Jupiter looked *steady* last night while the stars around it "
        "flickered. Is that the atmosphere?",
        acting_user=alan,
    )
    answer = await forum_actions.reply(
        question,
        body="Yes: stars are point sources, so turbulence in the air shifts their light "
        "a lot. A planet shows a tiny disc, and the shifts average out across it.",
        acting_user=grace,
    )
    await forum_actions.reply(
        question,
        body="Does that mean planets twinkle near the horizon?",
        parent=answer,
        anonymous=True,
        acting_user=barbara,
    )
    await forum_actions.accept_answer(question, answer, acting_user=alan)
