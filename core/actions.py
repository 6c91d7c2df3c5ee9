"""Every state change of accounts, courses and roles (DESIGN.md invariant 1)."""

from __future__ import annotations

import re
import secrets
import unicodedata

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core import auth, jobs
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.models import Course, Enrolment, Membership, Role, User
from core.passwords import hash_password, needs_rehash, password_problem, verify_password
from core.timeutil import utcnow

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,31}$")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# No 0/O or 1/I/L: invite codes are read aloud and typed from slides.
INVITE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
RESERVED_USERNAMES = frozenset({"admin", "system", "anonymous", "deleted", "agora", "staff"})
# Deleted accounts are renamed deleted-<id> (core/deletion.py).
DELETED_USERNAME_PREFIX = "deleted-"
# Pages of their own under /courses/ (core/routes.py): a course there could not be reached.
RESERVED_SLUGS = frozenset({"new", "join"})


def _clean_text(
    value: str, *, field: str, label: str, max_length: int, required: bool = True
) -> str:
    value = unicodedata.normalize("NFC", value or "").strip()
    value = "".join(ch for ch in value if unicodedata.category(ch) != "Cc")
    if required and not value:
        raise InvalidInput(f"{label} is required.", fields={field: f"{label} is required."})
    if len(value) > max_length:
        message = f"{label} can be at most {max_length} characters."
        raise InvalidInput(message, fields={field: message})
    return value


def normalize_username(username: str) -> str:
    return unicodedata.normalize("NFKC", username or "").strip().lower()


def _check_new_user(
    username: str, display_name: str, password: str, email: str | None
) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not USERNAME_RE.fullmatch(username):
        problems["username"] = (
            "Use 2-32 characters: lowercase letters, digits, dot, dash or underscore, "
            "starting with a letter or digit."
        )
    elif username in RESERVED_USERNAMES or username.startswith(DELETED_USERNAME_PREFIX):
        problems["username"] = "This username is reserved; please choose another."
    if not display_name:
        problems["display_name"] = "Display name is required."
    elif len(display_name) > 80:
        problems["display_name"] = "Display name can be at most 80 characters."
    if (problem := password_problem(password, username=username)) is not None:
        problems["password"] = problem
    if email is not None and not EMAIL_RE.fullmatch(email):
        problems["email"] = "This does not look like an email address."
    return problems


async def create_user(
    *,
    username: str,
    display_name: str,
    password: str,
    email: str | None = None,
    is_admin: bool = False,
    can_create_courses: bool = False,
    acting_user: User | None,
) -> User:
    """Create an account; acting_user None is self sign-up or the command line."""
    if (is_admin or can_create_courses) and acting_user is not None and not acting_user.is_admin:
        raise PermissionDenied("Only administrators can create privileged accounts.")
    username = normalize_username(username)
    display_name = unicodedata.normalize("NFC", display_name or "").strip()
    email = (email or "").strip() or None
    problems = _check_new_user(username, display_name, password or "", email)
    if problems:
        raise InvalidInput("Please correct the marked fields.", fields=problems)
    if await User.filter(username=username).exists():
        message = "This username is taken; please choose another."
        raise Conflict(message, fields={"username": message})
    try:
        return await User.create(
            username=username,
            display_name=display_name,
            email=email,
            password_hash=hash_password(password),
            is_admin=is_admin,
            can_create_courses=can_create_courses or is_admin,
        )
    except IntegrityError:
        message = "This username is taken; please choose another."
        raise Conflict(message, fields={"username": message}) from None


async def check_credentials(*, username: str, password: str) -> User:
    """The user these credentials belong to; one vague message for every kind of failure."""
    user = await User.get_or_none(username=normalize_username(username))
    ok = verify_password(user.password_hash if user else None, password or "")
    if user is None or not ok:
        raise InvalidInput(
            "Wrong username or password.", fields={"password": "Wrong username or password."}
        )
    if not user.is_active:
        raise PermissionDenied("This account is suspended. Contact the site administrators.")
    if needs_rehash(user.password_hash):
        await User.filter(id=user.id).update(password_hash=hash_password(password))
    return user


async def set_user_active(user: User, active: bool, *, acting_user: User | None) -> User:
    """Suspend or reinstate an account site-wide; suspension ends every session and token use."""
    if acting_user is not None and not acting_user.is_admin:
        raise PermissionDenied("Only administrators can suspend accounts.")
    async with in_transaction():
        await User.filter(id=user.id).update(is_active=active)
        if not active:
            await auth.end_all_sessions(user.id)
    user.is_active = active
    return user


def slugify(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return slug[:48].strip("-") or "course"


def new_invite_code() -> str:
    return "".join(secrets.choice(INVITE_ALPHABET) for _ in range(10))


async def create_course(
    *,
    title: str,
    description: str = "",
    slug: str | None = None,
    enrolment: Enrolment | str = Enrolment.INVITE,
    acting_user: User,
) -> Course:
    """Create a course with the acting user as its first instructor."""
    if not acting_user.may_create_courses():
        raise PermissionDenied("Your account cannot create courses. Ask an administrator.")
    title = _clean_text(title, field="title", label="Title", max_length=200)
    description = _clean_text(
        description, field="description", label="Description", max_length=5000, required=False
    )
    try:
        enrolment = Enrolment(enrolment)
    except ValueError:
        message = "Choose open enrolment or invite code."
        raise InvalidInput(message, fields={"enrolment": message}) from None
    if slug:
        slug = slug.strip().lower()
        if not SLUG_RE.fullmatch(slug):
            message = "Use 2-64 lowercase letters, digits and dashes."
            raise InvalidInput(message, fields={"slug": message})
        if slug in RESERVED_SLUGS:
            message = "This address is reserved; please choose another."
            raise InvalidInput(message, fields={"slug": message})
        if await Course.filter(slug=slug).exists():
            message = "A course already uses this address."
            raise Conflict(message, fields={"slug": message})
    else:
        base = slugify(title)
        slug = base
        while slug in RESERVED_SLUGS or await Course.filter(slug=slug).exists():
            slug = f"{base}-{secrets.token_hex(2)}"
    async with in_transaction():
        course = await Course.create(
            title=title,
            description=description,
            slug=slug,
            enrolment=enrolment,
            invite_code=new_invite_code(),
            created_by=acting_user,
        )
        await Membership.create(user=acting_user, course=course, role=Role.INSTRUCTOR)
    return course


async def join_course(
    *, course: Course | None = None, invite_code: str = "", acting_user: User
) -> Membership:
    """Join as a learner, by invite code or through open enrolment."""
    code = re.sub(r"[\s-]", "", invite_code or "").upper()
    if course is None:
        if not code:
            message = "Enter the invite code your instructor gave you."
            raise InvalidInput(message, fields={"invite_code": message})
        course = await Course.get_or_none(invite_code=code)
        if course is None:
            message = "No course has this invite code. Check it and try again."
            raise NotFound(message, fields={"invite_code": message})
    elif course.enrolment != Enrolment.OPEN and code != course.invite_code:
        message = "This course needs an invite code."
        raise PermissionDenied(message, fields={"invite_code": message})
    if not acting_user.is_active:
        raise PermissionDenied("This account is suspended.")
    existing = await Membership.get_or_none(course_id=course.id, user_id=acting_user.id)
    if existing is not None:
        return existing
    try:
        return await Membership.create(user=acting_user, course=course, role=Role.LEARNER)
    except IntegrityError:
        return await Membership.get(course_id=course.id, user_id=acting_user.id)


async def set_member_role(
    course: Course, *, username: str, role: Role | str, acting_user: User
) -> Membership:
    """Add a member with a role or change an existing member's role; the member is told."""
    acting_role = await course.role_of(acting_user)
    if not course.can_be_managed_by(acting_user, acting_role):
        raise PermissionDenied("Only the course's instructors can change roles.")
    try:
        role = Role(role)
    except ValueError:
        message = "Choose learner, mentor or instructor."
        raise InvalidInput(message, fields={"role": message}) from None
    member = await User.get_or_none(username=normalize_username(username))
    if member is None:
        message = "No user has this username."
        raise NotFound(message, fields={"username": message})
    async with in_transaction():
        membership = await Membership.get_or_none(course_id=course.id, user_id=member.id)
        if membership is not None and membership.role == role:
            return membership
        if (
            membership is not None
            and membership.role == Role.INSTRUCTOR
            and role != Role.INSTRUCTOR
        ):
            others = await Membership.filter(
                course_id=course.id, role=Role.INSTRUCTOR, id__not=membership.id
            ).count()
            if others == 0:
                message = "A course needs at least one instructor."
                raise Conflict(message, fields={"role": message})
        old_role = Role(membership.role) if membership is not None else None
        if membership is None:
            membership = await Membership.create(user=member, course=course, role=role)
            message = f"You were added to {course.title} as {role.value}."
        else:
            await Membership.filter(id=membership.id).update(role=role, role_changed_at=utcnow())
            membership.role = role
            message = f"Your role in {course.title} is now {role.value}."
        # Role changes are moderation acts: on the public log, in the same transaction.
        from moderation.actions import log_role_change

        await log_role_change(
            course, member, old_role=old_role, new_role=role, acting_user=acting_user
        )
        await jobs.enqueue(
            "core.notify",
            {
                "user_id": member.id,
                "kind": "role",
                "message": message,
                "link": f"/courses/{course.slug}",
            },
        )
    await jobs.wake()
    return membership


async def issue_api_token(user: User, *, name: str = "", acting_user: User | None) -> str:
    """Create an API token for a user; only they (or the command line) may."""
    if acting_user is not None and acting_user.id != user.id and not acting_user.is_admin:
        raise PermissionDenied("You can only create tokens for your own account.")
    return await auth.issue_token(user, name)


async def mark_notifications_read(user: User, *, acting_user: User) -> int:
    from core.models import Notification

    if acting_user.id != user.id:
        raise PermissionDenied("You can only mark your own notifications.")
    return await Notification.filter(user_id=user.id, read_at=None).update(read_at=utcnow())


async def set_public_moderator_names(course: Course, shown: bool, *, acting_user: User) -> Course:
    """Instructors choose whether logged-out readers of the log see moderators' names."""
    if not course.can_be_managed_by(acting_user, await course.role_of(acting_user)):
        raise PermissionDenied("Only the course's instructors can change this.")
    await Course.filter(id=course.id).update(public_moderator_names=shown)
    course.public_moderator_names = shown
    return course
