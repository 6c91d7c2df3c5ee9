"""The few statements every reply (and the checks of every edit) sends, written as SQL.

The ORM builds a query anew on each call, which costs more than the database's own work for
these one-row statements; under many concurrent writers that is most of a reply's time. Each
runs on the current connection, so inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.connection import get_connection


def _sql(statement: str) -> str:
    """The statement with $n placeholders for PostgreSQL, or ?n (the same numbers) for SQLite."""
    if get_connection("default").capabilities.dialect == "postgres":
        return statement
    return statement.replace("$", "?")


# A reply's writes: $1 thread, $2 parent (or NULL), $3 author, $4 anonymous, $5 Markdown,
# $6 HTML, $7 now. The post's columns are all given: the model's defaults live in Python.
_INSERT_POST = (
    "INSERT INTO agora_post (thread_id, parent_id, author_id, is_opening, is_anonymous, "
    "body_markdown, body_html, created_at, revision_count, is_endorsed, vote_count, state) "
    "VALUES ($1, $2, $3, FALSE, $4, $5, $6, $7, 0, FALSE, 0, 'visible') RETURNING id"
)
# One more reply in the thread, and its last activity is now.
_COUNT_REPLY = (
    "UPDATE agora_thread SET reply_count = reply_count + 1, last_activity_at = $7 WHERE id = $1"
)
# The writer follows the thread from now on (no error if they already do).
_SUBSCRIBE = (
    "INSERT INTO agora_subscription (thread_id, user_id, created_at) VALUES ($1, $3, $7) "
    "ON CONFLICT (thread_id, user_id) DO NOTHING"
)
# The writer's read marker moves to now, if they have one.
_MARK_SEEN = "UPDATE agora_thread_visit SET last_seen_at = $7 WHERE thread_id = $1 AND user_id = $3"
_ANSWERS = (
    "SELECT COUNT(*) FROM agora_post WHERE thread_id = $1 AND parent_id IS NULL "
    "AND is_opening = FALSE"
)
# On PostgreSQL all of it is one statement. Its parts share one snapshot, so the count
# does not see the new post yet: the new answer is the + 1.
_REPLY_PG = (
    f"WITH post AS ({_INSERT_POST}), thread AS ({_COUNT_REPLY}), "
    f"subscribed AS ({_SUBSCRIBE}), seen AS ({_MARK_SEEN}) "
    f"SELECT post.id, CASE WHEN $8 THEN ({_ANSWERS}) + 1 END AS answers FROM post"
)


async def add_reply(
    thread_id: int,
    parent_id: int | None,
    author_id: int,
    *,
    anonymous: bool,
    markdown: str,
    html: str,
    at: datetime,
    count_answers: bool,
) -> tuple[int, int | None]:
    """Write a reply: the post, the thread's count and activity, the author's subscription
    and read marker. Returns the post's id and, with `count_answers`, how many answers (top-
    level posts but the opening one) the thread has with it. Run it inside a transaction."""
    connection = get_connection("default")
    params: list[Any] = [thread_id, parent_id, author_id, anonymous, markdown, html, at]
    if connection.capabilities.dialect == "postgres":
        rows = await connection.execute_query_dict(_REPLY_PG, [*params, count_answers])
        answers = rows[0]["answers"]
        return int(rows[0]["id"]), None if answers is None else int(answers)
    # SQLite runs the parts one by one (each with the parameters it uses, by number).
    rows = await connection.execute_query_dict(_sql(_INSERT_POST), params)
    for statement in (_COUNT_REPLY, _SUBSCRIBE, _MARK_SEEN):
        await connection.execute_query(_sql(statement), params)
    answers = None
    if count_answers:
        counted = await connection.execute_query_dict(_sql(_ANSWERS), params[:1])
        answers = int(next(iter(counted[0].values())))
    return int(rows[0]["id"]), answers


@dataclass(frozen=True, slots=True)
class Standing:
    """What a write in a thread needs to know about the thread and the writer, in one read."""

    course_id: int
    title: str
    allow_anonymous: bool
    role: str | None
    # The strongest silence or suspension in force (a suspension before a silence), if any.
    sanction_kind: str | None
    sanction_ends_at: datetime | None


async def standing(thread_id: int, user_id: int, now: datetime) -> Standing | None:
    """The thread's course, title and forum setting, the writer's role and active sanction."""
    rows = await get_connection("default").execute_query_dict(
        _sql(
            "SELECT t.course_id, t.title, f.allow_anonymous, "
            "(SELECT m.role FROM agora_membership m "
            "WHERE m.course_id = t.course_id AND m.user_id = $2) AS role, "
            "s.kind AS sanction_kind, s.ends_at AS sanction_ends_at "
            "FROM agora_thread t JOIN agora_forum f ON f.id = t.forum_id "
            "LEFT JOIN agora_sanction s ON s.id = ("
            "SELECT x.id FROM agora_sanction x WHERE x.course_id = t.course_id "
            "AND x.user_id = $2 AND x.lifted_at IS NULL "
            "AND x.kind IN ('silence', 'suspension') AND (x.ends_at IS NULL OR x.ends_at > $3) "
            "ORDER BY CASE WHEN x.kind = 'suspension' THEN 0 ELSE 1 END, x.id DESC LIMIT 1) "
            "WHERE t.id = $1"
        ),
        [thread_id, user_id, now],
    )
    if not rows:
        return None
    from moderation.models import Sanction

    row = rows[0]
    # Read as the ORM reads the column (SQLite hands back the text Tortoise wrote).
    ends_at = Sanction._meta.fields_map["ends_at"].to_python_value(row["sanction_ends_at"])
    return Standing(
        course_id=int(row["course_id"]),
        title=str(row["title"]),
        allow_anonymous=bool(row["allow_anonymous"]),
        role=None if row["role"] is None else str(row["role"]),
        sanction_kind=row["sanction_kind"],
        sanction_ends_at=ends_at,
    )
