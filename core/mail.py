"""Email notifications over SMTP (filled in by the notifications work)."""

from __future__ import annotations

from typing import Any

HANDLERS: dict[str, Any] = {}
