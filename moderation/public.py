"""The public moderation log: pages, feed, CSV export, and the proof API."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
staff_routes: list[BaseRoute] = []
api_routes: list[BaseRoute] = []
