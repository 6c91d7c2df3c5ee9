"""A course's rules: configuration its instructors keep, not moderation acts.

Acts cite a rule by its code; the log keeps the code and each notice keeps the text as it
was when the act was taken, so editing or retiring a rule later never changes what anyone
was told. Retired rules stay listed (old entries cite them) but cannot be cited again.
"""

from __future__ import annotations

import re

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core.errors import InvalidInput, PermissionDenied
from core.models import Course, User
from moderation.models import Rule

CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,15}$")
TEXT_MIN, TEXT_MAX = 5, 500


async def _check_manager(course: Course, acting_user: User) -> None:
    if not course.can_be_managed_by(acting_user, await course.role_of(acting_user)):
        raise PermissionDenied("Only the course's instructors manage its rules.")


def _clean_text(raw: str) -> str:
    text = " ".join((raw or "").split())
    if not TEXT_MIN <= len(text) <= TEXT_MAX:
        message = f"Write the rule in {TEXT_MIN} to {TEXT_MAX} characters."
        raise InvalidInput(message, fields={"text": message})
    return text


async def add_rule(course: Course, *, code: str, text: str, acting_user: User) -> Rule:
    """Add a rule at the end of the course's list."""
    await _check_manager(course, acting_user)
    errors: dict[str, str] = {}
    code = (code or "").strip()
    if not CODE_PATTERN.match(code):
        errors["code"] = "A code is 1-16 letters, digits, dots, dashes or underscores, like R6."
    elif await Rule.filter(course_id=course.id, code__iexact=code).exists():
        errors["code"] = f"The course already has a rule {code}."
    try:
        text = _clean_text(text)
    except InvalidInput as exc:
        errors.update(exc.fields)
    if errors:
        raise InvalidInput("Please correct the marked fields.", fields=errors)
    last = await Rule.filter(course_id=course.id).order_by("-position").first()
    try:
        async with in_transaction():
            return await Rule.create(
                course=course, code=code, text=text, position=(last.position + 1) if last else 0
            )
    except IntegrityError:
        message = f"The course already has a rule {code}."
        raise InvalidInput(message, fields={"code": message}) from None


async def edit_rule(rule: Rule, *, text: str, acting_user: User) -> Rule:
    """Reword a rule; notices already sent keep the wording they were sent with."""
    course = await Course.get(id=rule.course_id)  # type: ignore[attr-defined]
    await _check_manager(course, acting_user)
    rule.text = _clean_text(text)
    await Rule.filter(id=rule.id).update(text=rule.text)
    return rule


async def set_rule_retired(rule: Rule, *, retired: bool, acting_user: User) -> Rule:
    """Retire a rule (it can no longer be cited) or bring it back."""
    course = await Course.get(id=rule.course_id)  # type: ignore[attr-defined]
    await _check_manager(course, acting_user)
    rule.retired = retired
    await Rule.filter(id=rule.id).update(retired=retired)
    return rule
