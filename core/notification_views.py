"""The signed-in user's notification settings: an optional email address and, per category,
whether it is emailed right away, in a daily digest, or not at all."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from core import notifications
from core.errors import ActionError
from core.models import User
from core.templating import render
from core.views import current_user, form_fields, login_redirect

PATH = "/me/notifications/settings"


@dataclass(frozen=True, slots=True)
class Category:
    key: str
    label: str
    hint: str


CATEGORIES: tuple[Category, ...] = (
    Category(
        notifications.FORUM,
        "Forum activity",
        "Replies in threads you follow, and what became of posts you flagged.",
    ),
    Category(
        notifications.PEER_REVIEW,
        "Peer review",
        "Reviews of your submissions, your grades, and decisions on reviews you flagged.",
    ),
    Category(
        notifications.ACCOUNT,
        "Courses and account",
        "Being added to a course, changes to your role, and news about your account.",
    ),
)
MODE_LABELS: dict[str, str] = {
    notifications.IMMEDIATE: "Right away, one email each",
    notifications.DAILY: "In one daily digest",
    notifications.OFF: "Off: in the app only",
}


def _current_values(user: User) -> dict[str, str]:
    modes = notifications.email_modes(user)
    return {"email": user.email or "", **{f"mode_{c.key}": modes[c.key] for c in CATEGORIES}}


async def notification_settings(request: Request) -> Response:
    """GET shows the settings; POST saves them all or, on a bad field, none."""
    signed_in = current_user(request)
    if signed_in is None:
        return login_redirect(request)
    user = await User.get(id=signed_in.id)
    values = _current_values(user)
    errors: dict[str, str] = {}
    message = ""
    status = 200
    if request.method == "POST":
        form = await form_fields(request)
        values = {key: form.get(key, "") for key in values}
        try:
            await notifications.update_email_settings(
                user,
                email=values["email"],
                modes={c.key: values[f"mode_{c.key}"] for c in CATEGORIES},
                acting_user=user,
            )
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
        else:
            return RedirectResponse(f"{PATH}?saved=1", status_code=303)
    elif request.query_params.get("saved"):
        message = "Your notification settings are saved."
    return render(
        request,
        "core/notification_settings.html",
        {
            "values": values,
            "errors": errors,
            "message": message,
            "categories": CATEGORIES,
            "mode_labels": MODE_LABELS,
            "mail_enabled": bool(request.app.state.settings.smtp_url),
        },
        status_code=status,
    )


routes: list[BaseRoute] = [
    Route(PATH, notification_settings, methods=["GET", "POST"], name="notification_settings"),
]
