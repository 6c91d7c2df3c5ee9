"""A member's profile and signed-in browsers: who may see the profile, and every change to them.

Every profile field is optional and seen only by people who share a course with its owner,
unless the owner makes the profile public. Email and account details never appear on it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from urllib.parse import urlsplit

from tortoise.transactions import in_transaction

from core.errors import InvalidInput, NotFound, PermissionDenied
from core.models import AuthSession, Membership, User
from core.settings import Settings
from core.timeutil import utcnow

MAX_DISPLAY_NAME_CHARS = 80
MAX_ABOUT_CHARS = 2000
MAX_LINKS = 5
MAX_LINK_CHARS = 300
LINK_SCHEMES = frozenset({"http", "https"})
# Ended sessions are kept this long (so a member can see a recent sign-out), then deleted.
ENDED_SESSION_DAYS = 30

# Control characters (except tab and newline), and the invisible ones that reorder text.
_UNWANTED_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")


# --- who may see a profile ---------------------------------------------------------------------


async def shared_course_ids(user: User, viewer: User) -> set[int]:
    """The ids of courses both people belong to (all of the user's courses for themselves)."""
    mine = set(
        cast(
            list[int], await Membership.filter(user_id=user.id).values_list("course_id", flat=True)
        )
    )
    if viewer.id == user.id:
        return mine
    theirs = await Membership.filter(user_id=viewer.id, course_id__in=list(mine)).values_list(
        "course_id", flat=True
    )
    return set(cast(list[int], theirs))


async def profile_visible_to(user: User, viewer: User | None) -> bool:
    """Whether viewer may see user's profile: public, their own, or sharing a course."""
    if user.deleted_at is not None:
        return False
    if viewer is not None and viewer.id == user.id:
        return True
    if user.profile_public:
        return True
    return viewer is not None and bool(await shared_course_ids(user, viewer))


# --- reading and checking profile fields --------------------------------------------------------


def about_paragraphs(about: str) -> list[list[str]]:
    """The about text as paragraphs (split on blank lines), each a list of lines."""
    text = about.strip()
    if not text:
        return []
    return [paragraph.split("\n") for paragraph in _BLANK_LINES.split(text)]


def link_label(url: str) -> str:
    """A link as shown: host in ASCII (so look-alike letters show) and path, no scheme."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    port = f":{parts.port}" if parts.port else ""
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return host + port + ("" if rest == "/" else rest)


def _clean_line(value: str) -> str:
    return _UNWANTED_CHARS.sub("", unicodedata.normalize("NFC", value)).strip()


def _link_problem(url: str) -> str | None:
    if len(url) > MAX_LINK_CHARS:
        return f"is longer than {MAX_LINK_CHARS} characters"
    if any(ch.isspace() for ch in url):
        return "contains a space"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "is not a web address"
    if parts.scheme.lower() not in LINK_SCHEMES or not parts.hostname:
        return "must start with https:// or http:// and name a site"
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password"
    return None


def parse_links(text: str) -> list[str]:
    """The links typed one per line (blank lines and repeats ignored); InvalidInput if bad."""
    links: list[str] = []
    problems: list[str] = []
    for number, raw in enumerate((text or "").replace("\r\n", "\n").split("\n"), start=1):
        url = _clean_line(raw)
        if not url or url in links:
            continue
        if (problem := _link_problem(url)) is not None:
            problems.append(f"Line {number} {problem}.")
        else:
            links.append(url)
    if not problems and len(links) > MAX_LINKS:
        problems.append(f"Give at most {MAX_LINKS} links; there are {len(links)}.")
    if problems:
        raise InvalidInput(" ".join(problems), fields={"links": " ".join(problems)})
    return links


def _check_display_name(value: str, username: str) -> str:
    name = " ".join(_clean_line(value).split())
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidInput(
            f"A display name can be at most {MAX_DISPLAY_NAME_CHARS} characters.",
            fields={"display_name": f"Use at most {MAX_DISPLAY_NAME_CHARS} characters."},
        )
    return name or username


def _check_about(value: str) -> str:
    text = (value or "").replace("\r\n", "\n").replace("\r", "\n")
    text = _UNWANTED_CHARS.sub("", unicodedata.normalize("NFC", text)).strip()
    if len(text) > MAX_ABOUT_CHARS:
        message = f"Use at most {MAX_ABOUT_CHARS:,} characters; this has {len(text):,}."
        raise InvalidInput(message, fields={"about": message})
    return text


# --- changes --------------------------------------------------------------------------------------


def _check_own_account(user: User, acting_user: User | None) -> None:
    if acting_user is not None and acting_user.id != user.id:
        raise PermissionDenied("Only the owner of an account can change it.")
    if user.deleted_at is not None:
        raise PermissionDenied("This account has been deleted.")


async def update_profile(
    user: User,
    *,
    display_name: str,
    about: str,
    links: str,
    public: bool,
    acting_user: User | None,
) -> User:
    """Save the profile; every field is checked first and a bad one changes nothing."""
    _check_own_account(user, acting_user)
    fields: dict[str, str] = {}
    checked: dict[str, object] = {"profile_public": public}
    try:
        checked["display_name"] = _check_display_name(display_name, user.username)
    except InvalidInput as error:
        fields.update(error.fields)
    try:
        checked["about"] = _check_about(about)
    except InvalidInput as error:
        fields.update(error.fields)
    try:
        checked["links"] = parse_links(links)
    except InvalidInput as error:
        fields.update(error.fields)
    if fields:
        raise InvalidInput("Please correct the marked fields; nothing was saved.", fields=fields)
    await User.filter(id=user.id).update(**checked)
    for name, value in checked.items():
        setattr(user, name, value)
    return user


# --- signed-in browsers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrowserSession:
    """One signed-in browser as its owner sees it."""

    id: int
    browser: str
    signed_in_at: datetime
    last_seen_at: datetime
    is_current: bool


async def live_sessions(
    user: User, settings: Settings, *, current_id: int | None
) -> list[BrowserSession]:
    """The user's sessions that still let a browser in, most recently used first."""
    now = utcnow()
    idle_since = now - timedelta(minutes=settings.session_idle_minutes)
    rows = await AuthSession.filter(
        user_id=user.id, revoked_at=None, expires_at__gt=now, last_seen_at__gt=idle_since
    ).order_by("-last_seen_at", "-id")
    return [
        BrowserSession(
            id=row.id,
            browser=describe_user_agent(row.user_agent),
            signed_in_at=row.created_at,
            last_seen_at=row.last_seen_at,
            is_current=row.id == current_id,
        )
        for row in rows
    ]


async def sign_out_session(user: User, session_id: int, *, acting_user: User) -> None:
    """End one of the user's sessions (the browser it belongs to is signed out)."""
    _check_own_account(user, acting_user)
    ended = await AuthSession.filter(id=session_id, user_id=user.id, revoked_at=None).update(
        revoked_at=utcnow()
    )
    if not ended and not await AuthSession.filter(id=session_id, user_id=user.id).exists():
        raise NotFound("You have no such signed-in browser.")


async def sign_out_other_sessions(user: User, *, keep_id: int | None, acting_user: User) -> int:
    """End every session of the user but keep_id; returns how many ended."""
    _check_own_account(user, acting_user)
    query = AuthSession.filter(user_id=user.id, revoked_at=None)
    if keep_id is not None:
        query = query.exclude(id=keep_id)
    return await query.update(revoked_at=utcnow())


async def sign_out_all_sessions(user: User, *, acting_user: User) -> int:
    """End every session of the user, this browser's too; returns how many ended."""
    return await sign_out_other_sessions(user, keep_id=None, acting_user=acting_user)


async def forget_ended_sessions(now: datetime, *, acting_user: User | None = None) -> int:
    """Delete session records that ended over ENDED_SESSION_DAYS ago (system upkeep)."""
    if acting_user is not None:
        raise PermissionDenied("Only the system forgets old sessions.")
    from core.runtime import settings

    cutoff = now - timedelta(days=ENDED_SESSION_DAYS)
    idle_cutoff = cutoff - timedelta(minutes=settings().session_idle_minutes)
    async with in_transaction():
        revoked = await AuthSession.filter(revoked_at__lt=cutoff).delete()
        expired = await AuthSession.filter(revoked_at=None, expires_at__lt=cutoff).delete()
        idle = await AuthSession.filter(revoked_at=None, last_seen_at__lt=idle_cutoff).delete()
    return revoked + expired + idle


# --- user agents ----------------------------------------------------------------------------------

_BROWSERS: tuple[tuple[str, str], ...] = (
    (r"Edg(?:e|A|iOS)?/(\d+)", "Edge"),
    (r"OPR/(\d+)", "Opera"),
    (r"SamsungBrowser/(\d+)", "Samsung Internet"),
    (r"Firefox/(\d+)", "Firefox"),
    (r"FxiOS/(\d+)", "Firefox"),
    (r"CriOS/(\d+)", "Chrome"),
    (r"HeadlessChrome/(\d+)", "Headless Chrome"),
    (r"Chrom(?:e|ium)/(\d+)", "Chrome"),
    (r"Version/(\d+)(?:\.\d+)*.*Safari/", "Safari"),
)
_SYSTEMS: tuple[tuple[str, str], ...] = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)
_PRODUCT = re.compile(r"([A-Za-z][A-Za-z0-9._-]{0,40})(?:/(\d+))?")


def describe_user_agent(user_agent: str) -> str:
    """A short readable name for a browser from its User-Agent, e.g. "Firefox 128 on Linux"."""
    agent = user_agent.strip()
    if not agent:
        return "Unknown browser"
    browser = None
    for pattern, name in _BROWSERS:
        if match := re.search(pattern, agent):
            browser = f"{name} {match.group(1)}"
            break
    system = next((name for marker, name in _SYSTEMS if marker in agent), None)
    if browser is None:
        product = _PRODUCT.match(agent)
        if product is None or product.group(1) == "Mozilla":
            browser = "Unknown browser"
        else:
            browser = product.group(1) + (f" {product.group(2)}" if product.group(2) else "")
    return f"{browser} on {system}" if system else browser
