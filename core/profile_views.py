"""Pages of a learner's own account (filled in by the data-rights work)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
