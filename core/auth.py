"""Server-side sessions and API tokens: the browser and the client hold only random keys."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from tortoise.expressions import RawSQL
from tortoise.queryset import QuerySet

from core.models import ApiToken, AuthSession, User
from core.prepared import Prepared
from core.settings import Settings
from core.timeutil import utcnow

SESSION_COOKIE = "agora_session"
# Writing last_seen_at on every request would make every page view a write.
TOUCH_INTERVAL = timedelta(minutes=1)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def start_session(user: User, settings: Settings, *, user_agent: str = "") -> str:
    """Create a session and return the key for the cookie."""
    key = secrets.token_urlsafe(32)
    now = utcnow()
    await AuthSession.create(
        key_hash=digest(key),
        user=user,
        last_seen_at=now,
        expires_at=now + timedelta(days=settings.session_max_days),
        user_agent=user_agent[:300],
    )
    return key


# The signed-in user's unread notifications, counted in the query that finds the session.
_UNREAD = RawSQL(
    '(SELECT COUNT(*) FROM "agora_notification" WHERE "agora_notification"."user_id" = '
    '"agora_session"."user_id" AND "agora_notification"."read_at" IS NULL)'
)


def _session(key_hash: str) -> QuerySet[AuthSession]:
    return AuthSession.filter(key_hash=key_hash).select_related("user").limit(1)


_SESSION = Prepared(_session, str)
_SESSION_WITH_UNREAD = Prepared(
    lambda key_hash: _session(key_hash).annotate(unread_notifications=_UNREAD), str
)


async def resume_session(
    key: str, settings: Settings, *, count_unread: bool = False
) -> AuthSession | None:
    """The live session for a cookie key, with its user loaded, or None.

    With `count_unread`, the same query also counts the user's unread notifications
    (see `unread_count`).
    """
    if not key or len(key) > 100:
        return None
    lookup = _SESSION_WITH_UNREAD if count_unread else _SESSION
    session = await lookup.first(digest(key))
    if session is None:
        return None
    now = utcnow()
    if not session.is_live(now, settings.session_idle_minutes * 60) or not session.user.is_active:
        return None
    if now - session.last_seen_at >= TOUCH_INTERVAL:
        session.last_seen_at = now
        await AuthSession.filter(id=session.id).update(last_seen_at=now)
    return session


def unread_count(session: AuthSession) -> int:
    """The unread notifications counted by `resume_session(..., count_unread=True)`."""
    return int(getattr(session, "unread_notifications", 0) or 0)


async def end_session(key: str) -> None:
    await AuthSession.filter(key_hash=digest(key), revoked_at=None).update(revoked_at=utcnow())


async def end_all_sessions(user_id: int) -> int:
    return await AuthSession.filter(user_id=user_id, revoked_at=None).update(revoked_at=utcnow())


async def issue_token(user: User, name: str = "") -> str:
    """Create an API token; the plain value is shown once and only its digest is kept."""
    token = "agora_" + secrets.token_urlsafe(32)
    await ApiToken.create(user=user, name=name[:80], token_hash=digest(token))
    return token


async def user_for_token(token: str) -> User | None:
    if not token.startswith("agora_") or len(token) > 100:
        return None
    row = await ApiToken.get_or_none(token_hash=digest(token), revoked_at=None).select_related(
        "user"
    )
    if row is None or not row.user.is_active:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_INTERVAL:
        await ApiToken.filter(id=row.id).update(last_used_at=now)
    return row.user
