"""Notifications: created in one place, emailed as each user chose, and daily digests.

Every notification belongs to a category. Moderation notices are always delivered in the app
and by email when the account has an address; the other categories are emailed right away,
gathered into a daily digest, or not emailed at all, as the user chooses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiosmtplib
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from core import jobs, mail
from core.errors import InvalidInput, PermissionDenied
from core.models import Notification, User
from core.timeutil import utcnow

log = logging.getLogger("agora.notifications")

MODERATION = "moderation"
FORUM = "forum"
PEER_REVIEW = "peer_review"
ACCOUNT = "account"

IMMEDIATE = "immediate"
DAILY = "daily"
OFF = "off"
MODES: tuple[str, ...] = (IMMEDIATE, DAILY, OFF)

# The categories a user may choose for, in the order the settings page shows them.
CHOOSABLE: tuple[str, ...] = (FORUM, PEER_REVIEW, ACCOUNT)
DEFAULT_MODES: dict[str, str] = {FORUM: DAILY, PEER_REVIEW: IMMEDIATE, ACCOUNT: IMMEDIATE}

# A digest goes out at most about once a day; the slack keeps a 5-minute schedule from drifting.
DIGEST_INTERVAL = timedelta(hours=23, minutes=50)
# Older unread notifications are left out of a digest (e.g. from before daily was chosen).
DIGEST_MAX_AGE = timedelta(days=7)
DIGEST_MAX_ITEMS = 200

EMAIL_MAX = 254


def category_of(kind: str) -> str:
    """The preference category a notification kind belongs to."""
    head = kind.split(".", 1)[0]
    if head == "moderation":
        return MODERATION
    if head in {"forum", "reply", "flag"}:
        return FORUM
    if head == "peer_review":
        return PEER_REVIEW
    return ACCOUNT


def email_modes(user: User) -> dict[str, str]:
    """The user's choice for every choosable category, defaults filled in."""
    stored = user.email_prefs if isinstance(user.email_prefs, dict) else {}
    modes: dict[str, str] = {}
    for category, default in DEFAULT_MODES.items():
        chosen = stored.get(category)
        modes[category] = chosen if isinstance(chosen, str) and chosen in MODES else default
    return modes


def mode_for(user: User, kind: str) -> str:
    category = category_of(kind)
    if category == MODERATION:
        return IMMEDIATE
    return email_modes(user)[category]


def can_receive_email(user: User) -> bool:
    """An address to write to, on an account that still exists."""
    return bool(user.email) and user.deleted_at is None


def wants_email_now(user: User, kind: str) -> bool:
    """Whether a notification of this kind should be emailed to the user as it happens."""
    if not can_receive_email(user):
        return False
    if category_of(kind) == MODERATION:
        return True
    # A suspended account still hears about moderation, and nothing else.
    return user.is_active and mode_for(user, kind) == IMMEDIATE


async def deliver(
    user_id: int,
    *,
    kind: str,
    message: str,
    link: str = "",
    dedupe_key: str,
    notice_id: int | None = None,
) -> Notification | None:
    """Create an in-app notification once; queue its email when the user wants it now.

    Call from an outbox handler: the same `dedupe_key` never makes a second notification
    or a second email, however often the handler runs.
    """
    user = await User.get_or_none(id=user_id)
    if user is None or user.deleted_at is not None:
        return None
    queued = False
    async with in_transaction():
        notification, created = await Notification.get_or_create(
            dedupe_key=dedupe_key,
            defaults={"user": user, "kind": kind, "message": message, "link": link},
        )
        if created and mail.is_configured() and wants_email_now(user, kind):
            payload: dict[str, Any] = {"notification_id": notification.id}
            if notice_id is not None:
                payload["notice_id"] = notice_id
            await jobs.enqueue("core.email", payload)
            queued = True
    if queued:
        await jobs.wake()
    return notification


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One notification for `deliver_many`; the arguments of `deliver`."""

    user_id: int
    kind: str
    message: str
    dedupe_key: str
    link: str = ""


async def deliver_many(items: list[Outgoing]) -> int:
    """`deliver` for many notifications at once (a reply's subscribers); returns how many
    were created now. Keys already delivered are skipped, so running it again adds nothing."""
    by_key = {item.dedupe_key: item for item in items}
    if not by_key:
        return 0
    user_ids = sorted({i.user_id for i in by_key.values()})
    emailing = mail.is_configured()
    users: dict[int, User] = {}
    if emailing:
        users = {u.id: u for u in await User.filter(id__in=user_ids, deleted_at=None)}
        present = set(users)
    else:
        found = await User.filter(id__in=user_ids, deleted_at=None).values_list("id", flat=True)
        present = {int(i) for i in found}  # type: ignore[call-overload]
    wanted = [i for i in by_key.values() if i.user_id in present]
    if not wanted:
        return 0
    created = 0
    async with in_transaction() as connection:
        for start in range(0, len(wanted), _INSERT_ROWS):
            made = await _insert_new(connection, wanted[start : start + _INSERT_ROWS])
            created += len(made)
            emails = [
                ("core.email", {"notification_id": int(row["id"])})
                for row in made
                if emailing and wants_email_now(users[int(row["user_id"])], str(row["kind"]))
            ]
            await jobs.enqueue_many(emails)
    if emailing and created:
        await jobs.wake()
    return created


_INSERT_ROWS = 400
_COLUMNS = ("user_id", "kind", "message", "link", "created_at", "dedupe_key")


async def _insert_new(connection: Any, items: list[Outgoing]) -> list[dict[str, Any]]:
    """Insert the notifications whose key is new; the rows made (id, user_id, kind).

    One statement, and exact under concurrent delivery of the same keys: ON CONFLICT skips
    a key someone else made, so its email is queued once, by whoever made it.
    """
    postgres = connection.capabilities.dialect == "postgres"
    now = utcnow()
    params: list[Any] = []
    rows: list[str] = []
    for item in items:
        marks = []
        for value in (item.user_id, item.kind, item.message, item.link, now, item.dedupe_key):
            params.append(value)
            marks.append(f"${len(params)}" if postgres else "?")
        rows.append(f"({', '.join(marks)})")
    sql = (
        f"INSERT INTO agora_notification ({', '.join(_COLUMNS)}) VALUES {', '.join(rows)} "
        "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, user_id, kind"
    )
    # execute_query drops the RETURNING rows of an INSERT on PostgreSQL (asyncpg client).
    return list(await connection.execute_query_dict(sql, params))


# --- preferences --------------------------------------------------------------------------


async def update_email_settings(
    user: User, *, email: str, modes: Mapping[str, str], acting_user: User
) -> User:
    """Set the user's optional email address and how each category reaches them."""
    from core.actions import EMAIL_RE

    if acting_user.id != user.id:
        raise PermissionDenied("You can only change your own notification settings.")
    problems: dict[str, str] = {}
    address = (email or "").strip()
    if len(address) > EMAIL_MAX:
        problems["email"] = f"An email address can be at most {EMAIL_MAX} characters."
    elif address and not EMAIL_RE.fullmatch(address):
        problems["email"] = "This does not look like an email address (name@example.org)."
    chosen: dict[str, str] = {}
    for category in CHOOSABLE:
        value = (modes.get(category) or "").strip()
        if value not in MODES:
            problems[f"mode_{category}"] = "Choose immediately, daily digest or off."
        else:
            chosen[category] = value
    if problems:
        raise InvalidInput("Please correct the marked fields; nothing was saved.", fields=problems)
    prefs = dict(user.email_prefs) if isinstance(user.email_prefs, dict) else {}
    prefs.update(chosen)
    await User.filter(id=user.id).update(email=address or None, email_prefs=prefs)
    user.email = address or None
    user.email_prefs = prefs
    return user


# --- daily digests ------------------------------------------------------------------------


@dataclass(slots=True)
class DigestRun:
    """What one digest run did: who got how many notifications, and who could not be sent."""

    sent: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    server_down: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": [{"user": name, "notifications": count} for name, count in self.sent],
            "failed": [{"user": name, "error": error} for name, error in self.failed],
            "server_down": self.server_down,
        }


async def _digest_items(user: User, now: datetime) -> list[Notification]:
    """The user's unread, not yet emailed notifications in categories set to daily."""
    daily = {category for category, mode in email_modes(user).items() if mode == DAILY}
    if not daily:
        return []
    rows = await Notification.filter(
        user_id=user.id, emailed_at=None, read_at=None, created_at__gte=now - DIGEST_MAX_AGE
    ).order_by("-created_at", "-id")
    return [n for n in rows if category_of(n.kind) in daily][:DIGEST_MAX_ITEMS]


async def _claim(user: User, now: datetime) -> bool:
    """Take this user's digest slot, so two runs at once never both send."""
    due = Q(last_digest_at__isnull=True) | Q(last_digest_at__lt=now - DIGEST_INTERVAL)
    return bool(await User.filter(due, id=user.id).update(last_digest_at=now))


async def send_due_digests(now: datetime | None = None) -> DigestRun:
    """Email each user whose daily digest is due the notifications it gathered, once."""
    now = now or utcnow()
    run = DigestRun()
    if not mail.is_configured():
        return run
    user_ids = (
        await Notification.filter(
            emailed_at=None,
            read_at=None,
            created_at__gte=now - DIGEST_MAX_AGE,
            user__email__isnull=False,
            user__deleted_at__isnull=True,
            user__is_active=True,
        )
        .filter(
            Q(user__last_digest_at__isnull=True) | Q(user__last_digest_at__lt=now - DIGEST_INTERVAL)
        )
        .order_by("user_id")
        .distinct()
        .values_list("user_id", flat=True)
    )
    for user_id in sorted({int(uid) for uid in user_ids}):  # type: ignore[call-overload]
        user = await User.get(id=user_id)
        if not can_receive_email(user):
            continue
        items = await _digest_items(user, now)
        if not items or not await _claim(user, now):
            continue
        try:
            await mail.send(mail.digest_email(user, items))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # The server refused this address: keep the slot, try again with tomorrow's digest.
            run.failed.append((user.username, f"the mail server refused the address: {exc}"))
            log.warning("digest for user %s refused: %s", user.id, exc)
            continue
        except Exception as exc:
            # Give the slot back: the digest goes out on the first run that reaches the server.
            await User.filter(id=user.id).update(last_digest_at=user.last_digest_at)
            run.server_down = f"{type(exc).__name__}: {exc}"
            log.warning("digest run stopped, mail could not be sent: %s", exc)
            break
        await Notification.filter(id__in=[n.id for n in items], emailed_at=None).update(
            emailed_at=now
        )
        run.sent.append((user.username, len(items)))
    return run
