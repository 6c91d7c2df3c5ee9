"""Errors that actions raise and views turn into a clear 4xx answer."""

from __future__ import annotations

from collections.abc import Mapping


class ActionError(Exception):
    """A request Agora refuses, with a message meant for the person who made it."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, str] = dict(fields or {})

    def as_json(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "fields": self.fields}}


class InvalidInput(ActionError):
    status_code = 422
    code = "invalid"


class NotAuthenticated(ActionError):
    status_code = 401
    code = "not_authenticated"


class PermissionDenied(ActionError):
    status_code = 403
    code = "forbidden"


class NotFound(ActionError):
    status_code = 404
    code = "not_found"


class Conflict(ActionError):
    status_code = 409
    code = "conflict"


class RateLimited(ActionError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
