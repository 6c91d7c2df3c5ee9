"""Pages of a learner's own account: deleting it (/me/delete)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from core import auth, deletion, ratelimit
from core.actions import normalize_username
from core.errors import ActionError, InvalidInput
from core.passwords import verify_password
from core.templating import render
from core.views import (
    LOGIN_WINDOW,
    current_user,
    form_fields,
    login_redirect,
    retry_after_headers,
)

KEEP, REMOVE = "keep", "remove"
DELETED_LANDING = "/?account=deleted"


async def _confirmed(request: Request, values: dict[str, str]) -> bool:
    """Check the choice, the typed username and the password; True means remove posts.

    Wrong passwords count against the same limit as failed sign-ins, so a session left open
    on a shared computer cannot be used to guess the password here.
    """
    user = current_user(request)
    assert user is not None
    key = f"delete-account:{user.id}"
    limit = request.app.state.settings.login_rate_limit
    what = "wrong passwords"
    await ratelimit.check(key, limit=limit, window_seconds=LOGIN_WINDOW, what=what)
    errors: dict[str, str] = {}
    choice = values.get("posts", "")
    if choice not in {KEEP, REMOVE}:
        errors["posts"] = "Choose whether your posts stay, unnamed, or are removed."
    if normalize_username(values.get("confirm_username", "")) != user.username:
        errors["confirm_username"] = f"Type your username, {user.username}, to confirm."
    if not verify_password(user.password_hash, values.get("password", "")):
        await ratelimit.record(key, window_seconds=LOGIN_WINDOW)
        errors["password"] = "This is not your password."
    if errors:
        raise InvalidInput("Nothing was deleted. Please correct the marked fields.", fields=errors)
    return choice == REMOVE


async def delete_account(request: Request) -> Response:
    """Explain what deletion removes and keeps; delete after password and username check."""
    user = current_user(request)
    if user is None:
        return login_redirect(request)
    values: dict[str, str] = {"posts": KEEP}
    errors: dict[str, str] = {}
    headers: dict[str, str] = {}
    message = ""
    status = 200
    if request.method == "POST":
        values = await form_fields(request)
        try:
            remove_posts = await _confirmed(request, values)
            await deletion.delete_account(user, remove_posts=remove_posts, acting_user=user)
        except ActionError as error:
            errors, message, status = error.fields, error.message, error.status_code
            headers = retry_after_headers(error)
        else:
            response = RedirectResponse(DELETED_LANDING, status_code=303)
            response.delete_cookie(auth.SESSION_COOKIE, path="/")
            return response
    values.pop("password", None)
    context: dict[str, Any] = {
        "plan": await deletion.deletion_plan(user),
        "values": values,
        "errors": errors,
        "message": message,
    }
    return render(request, "core/account_delete.html", context, status_code=status, headers=headers)


routes: list[BaseRoute] = [
    Route("/me/delete", delete_account, methods=["GET", "POST"], name="account_delete"),
]
