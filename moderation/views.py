"""Moderation pages for staff and for the people affected (acts, flags, appeals, standing)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
moderate_routes: list[BaseRoute] = []
staff_routes: list[BaseRoute] = []
