"""The core sections of a data export: profile, courses, sign-ins, tokens, notifications,
earlier exports, what is withheld, and who receives the learner's data."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from core.export import ExportContext
from core.models import (
    ApiToken,
    AuthSession,
    Course,
    DataExport,
    Membership,
    Notification,
    Role,
    User,
)
from core.settings import Settings
from core.timeutil import utcnow

# Reply notifications read "<display name> replied in “<title>”." (forum/tasks.py).
REPLY_MESSAGE = re.compile(r"^(?P<who>.+?) replied in “")
POST_LINK = re.compile(r"#post-(?P<id>\d+)$")


async def sections(ctx: ExportContext) -> dict[str, Any]:
    user = ctx.user
    memberships = (
        await Membership.filter(user_id=user.id).select_related("course").order_by("joined_at")
    )
    return {
        "profile": _profile(ctx, user),
        "courses": [_course(ctx, m) for m in memberships],
        "sign_ins": await _sign_ins(ctx),
        "api_tokens": await _api_tokens(ctx),
        "notifications": await _notifications(ctx),
        "data_exports": await _exports(ctx),
        "withheld": WITHHELD,
        "data_recipients": await _recipients(ctx, memberships),
    }


def _profile(ctx: ExportContext, user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "about": user.about,
        "links": list(user.links or []),
        "profile_public": user.profile_public,
        "created_at": ctx.ts(user.created_at),
        "email_prefs": dict(user.email_prefs or {}),
        "last_digest_at": ctx.ts(user.last_digest_at),
        "is_active": user.is_active,
        "is_admin": user.is_admin,
        "can_create_courses": user.can_create_courses,
    }


def _course(ctx: ExportContext, membership: Membership) -> dict[str, Any]:
    course = membership.course
    return {
        "course_id": course.id,
        "slug": course.slug,
        "title": course.title,
        "role": Role(membership.role).value,
        "joined_at": ctx.ts(membership.joined_at),
        "role_changed_at": ctx.ts(membership.role_changed_at),
    }


async def _sign_ins(ctx: ExportContext) -> list[dict[str, Any]]:
    now = utcnow()
    idle_seconds = ctx.settings.session_idle_minutes * 60
    rows = await AuthSession.filter(user_id=ctx.user.id).order_by("created_at", "id")
    return [
        {
            "created_at": ctx.ts(s.created_at),
            "last_seen_at": ctx.ts(s.last_seen_at),
            "expires_at": ctx.ts(s.expires_at),
            "revoked_at": ctx.ts(s.revoked_at),
            "user_agent": s.user_agent,
            "live": s.is_live(now, idle_seconds),
        }
        for s in rows
    ]


async def _api_tokens(ctx: ExportContext) -> list[dict[str, Any]]:
    rows = await ApiToken.filter(user_id=ctx.user.id).order_by("created_at", "id")
    return [
        {
            "name": t.name,
            "created_at": ctx.ts(t.created_at),
            "last_used_at": ctx.ts(t.last_used_at),
            "revoked_at": ctx.ts(t.revoked_at),
        }
        for t in rows
    ]


async def _notifications(ctx: ExportContext) -> list[dict[str, Any]]:
    rows = await Notification.filter(user_id=ctx.user.id).order_by("created_at", "id")
    return [
        {
            "kind": n.kind,
            "message": await _without_names(ctx, n),
            "link": n.link,
            "created_at": ctx.ts(n.created_at),
            "read_at": ctx.ts(n.read_at),
            "emailed_at": ctx.ts(n.emailed_at),
        }
        for n in rows
    ]


async def _without_names(ctx: ExportContext, notification: Notification) -> str:
    """The message with another person's name replaced by their pseudonym."""
    from forum.models import ANONYMOUS_LABEL, DELETED_USER_LABEL, Post

    message = notification.message
    match = REPLY_MESSAGE.match(message)
    if match is None or match["who"] in {ANONYMOUS_LABEL, DELETED_USER_LABEL}:
        return message
    who = "Someone"
    link = POST_LINK.search(notification.link)
    if link is not None:
        post = await Post.get_or_none(id=int(link["id"]))
        if post is not None and post.is_anonymous:
            who = ANONYMOUS_LABEL
        elif post is not None and post.author_id is not None:  # type: ignore[attr-defined]
            who = ctx.pseudonym(post.author_id)  # type: ignore[attr-defined]
    return who + message[len(match["who"]) :]


async def _exports(ctx: ExportContext) -> list[dict[str, Any]]:
    rows = await DataExport.filter(user_id=ctx.user.id).order_by("created_at", "id")
    return [
        {
            "export_id": e.id,
            "status": e.status.value,
            "created_at": ctx.ts(e.created_at),
            "finished_at": ctx.ts(e.finished_at),
            "expires_at": ctx.ts(e.expires_at),
            "size_bytes": e.size_bytes or None,
            "error": e.error,
            "is_this_export": e.id == ctx.export_id,
        }
        for e in rows
    ]


WITHHELD: list[dict[str, str]] = [
    {
        "what": "Your password",
        "why": "Agora keeps only an argon2id hash of it, which is useful to nobody but an "
        "attacker trying to guess the password.",
    },
    {
        "what": "The keys of your sign-ins and API tokens",
        "why": "Agora keeps only SHA-256 digests of them; the sign-ins and tokens themselves "
        "are listed with their times.",
    },
    {
        "what": "Other people's identities",
        "why": "Anyone else appears as a pseudonym; authors of anonymous posts and people who "
        "flagged your content are never identified.",
    },
]


def _host(url: str | None) -> str | None:
    """host:port of a service address, never its user name, password or path."""
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname}:{port}" if port else parts.hostname


def services(settings: Settings, user: User) -> list[dict[str, Any]]:
    """The services this site is configured with and what each holds about the user."""
    found: list[dict[str, Any]] = []
    if settings.is_sqlite:
        found.append(
            {
                "service": "database",
                "kind": "SQLite file on the Agora server",
                "host": None,
                "holds": "Everything in this export.",
            }
        )
    else:
        found.append(
            {
                "service": "database",
                "kind": "PostgreSQL",
                "host": _host(settings.database_url),
                "holds": "Everything in this export.",
            }
        )
    found.append(
        {
            "service": "search",
            "kind": "Meilisearch" if settings.meili_url else "embedded, on the Agora server",
            "host": _host(settings.meili_url),
            "holds": "The text of your posts that every member of their course may read, with "
            "their thread titles, and your username on the ones not posted anonymously.",
        }
    )
    if settings.redis_url:
        found.append(
            {
                "service": "job queue",
                "kind": "Redis",
                "host": _host(settings.redis_url),
                "holds": "Only the numbers of background jobs; no personal data.",
            }
        )
    if settings.smtp_url and user.email:
        found.append(
            {
                "service": "email",
                "kind": "SMTP server",
                "host": _host(settings.smtp_url),
                "holds": "Your email address and the notifications emailed to you.",
            }
        )
    return found


async def _recipients(ctx: ExportContext, memberships: list[Membership]) -> dict[str, Any]:
    user = ctx.user
    profile_readers = (
        "Anyone, signed in or not (you made your profile public)."
        if user.profile_public
        else "People who share a course with you."
    )
    return {
        "your_profile": {
            "who": profile_readers,
            "what": "Your display name, username, about text and links; never your email.",
        },
        "per_course": [await _course_recipients(ctx, m) for m in memberships],
        "site_administrators": "Site administrators can open every course and see what its "
        "instructors see, including the authors of anonymous posts.",
        "services": services(ctx.settings, user),
    }


async def _course_recipients(ctx: ExportContext, membership: Membership) -> dict[str, Any]:
    from forum.models import Post
    from peer_review.models import LearnerRecord

    course: Course = membership.course
    role = Role(membership.role)
    counts = {r.value: await Membership.filter(course_id=course.id, role=r).count() for r in Role}
    anonymous_posts = await Post.filter(
        author_id=ctx.user.id, is_anonymous=True, thread__course_id=course.id
    ).count()
    recipients: list[dict[str, Any]] = [
        {
            "who": "Every member of the course",
            "people": sum(counts.values()),
            "sees": "Your posts and threads with your display name and username, except those "
            "you posted anonymously, which show “Anonymous learner”; how many votes your "
            "posts have, never who voted.",
        },
        {
            "who": "The course's mentors and instructors",
            "people": counts[Role.MENTOR.value] + counts[Role.INSTRUCTOR.value],
            "sees": f"The author of your anonymous posts ({anonymous_posts} in this course); "
            "your hidden and removed posts; the posts you flagged and why; your appeals "
            "and your moderation history.",
        },
        {
            "who": "The course's instructors",
            "people": counts[Role.INSTRUCTOR.value],
            "sees": "The member list with your join date; your peer-review submissions, the "
            "reviews you gave and received with the reviewers' names, your calibration "
            "results, grades and how they were computed.",
        },
        {
            "who": "Classmates chosen to review your work",
            "people": None,
            "sees": "The submission they review, without your name.",
        },
        {
            "who": "Classmates whose work you review",
            "people": None,
            "sees": "Your scores and comments on their work, without your name.",
        },
        {
            "who": "Anyone, without signing in (the public moderation log)",
            "people": None,
            "sees": "Each moderation act concerning you or your posts: the act, rule, reason "
            "and time, with posts and members named by number, never by name. Moderators "
            "appear as pseudonyms such as “Mentor 1”"
            + (
                ", except that this course shows moderators' names."
                if course.public_moderator_names
                else "."
            ),
        },
    ]
    if await LearnerRecord.filter(
        course_id=course.id, learner_id=ctx.user.id, is_public=True
    ).exists():
        recipients.append(
            {
                "who": "Anyone, without signing in (you made your course record public)",
                "people": None,
                "sees": "Your completed assignments in this course and their grades.",
            }
        )
    if role.is_staff:
        recipients.append(
            {
                "who": "Members of the course",
                "people": sum(counts.values()),
                "sees": "Your display name on the moderation acts you take.",
            }
        )
    return {
        "course_id": course.id,
        "slug": course.slug,
        "title": course.title,
        "your_role": role.value,
        "recipients": recipients,
    }
