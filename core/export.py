"""A learner's data export: every package contributes sections to one ZIP.

Each module named in SECTION_MODULES has `async def sections(ctx: ExportContext) -> dict`
returning top-level keys of export.json. Other people appear only as ctx.pseudonym(id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.models import User

SCHEMA_VERSION = 1

SECTION_MODULES: tuple[str, ...] = (
    "core.export_sections",
    "forum.export",
    "moderation.export",
    "peer_review.export",
)

HANDLERS: dict[str, Any] = {}


@dataclass
class ExportContext:
    """What a section needs: the person exported and stable pseudonyms for everyone else."""

    user: User
    _pseudonyms: dict[int, str] = field(default_factory=dict)

    def pseudonym(self, user_id: int | None) -> str:
        """Return "you", "system" (None) or "Person N", stable within one export."""
        if user_id is None:
            return "system"
        if user_id == self.user.id:
            return "you"
        if user_id not in self._pseudonyms:
            self._pseudonyms[user_id] = f"Person {len(self._pseudonyms) + 1}"
        return self._pseudonyms[user_id]
