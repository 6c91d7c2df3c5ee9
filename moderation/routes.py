"""Routes of the moderation package; core/app.py mounts the privileged lists under guards."""

from __future__ import annotations

from starlette.routing import BaseRoute

from moderation import public, views

routes: list[BaseRoute] = [*views.routes, *public.routes]
moderate_routes: list[BaseRoute] = [*views.moderate_routes]
staff_routes: list[BaseRoute] = [*views.staff_routes, *public.staff_routes]
api_routes: list[BaseRoute] = [*public.api_routes]
