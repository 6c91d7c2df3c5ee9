"""Jinja2 rendering; an htmx request gets only the named block of the page template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2_fragments import render_block
from starlette.requests import Request
from starlette.responses import HTMLResponse

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
    cache_size=400,
)

# Form macros as a global: a block rendered on its own (htmx) does not see the page's imports.
environment.globals["forms"] = environment.get_template("_forms.html").module


def is_htmx(request: Request) -> bool:
    headers = request.headers
    return (
        headers.get("hx-request") == "true" and headers.get("hx-history-restore-request") != "true"
    )


def page_context(request: Request) -> dict[str, Any]:
    """What every page template may use."""
    return {
        "request": request,
        "current_user": request.scope.get("user"),
        "csrf_token": request.scope.get("csrf_token", ""),
        "unread_notifications": request.scope.get("unread_notifications", 0),
    }


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a page, or just `block` of it when htmx asked for a fragment."""
    full_context = page_context(request) | (context or {})
    if block is not None and is_htmx(request):
        html = render_block(environment, template, block, full_context)
    else:
        html = environment.get_template(template).render(full_context)
    response = HTMLResponse(html, status_code=status_code, headers=headers)
    response.headers["Vary"] = "HX-Request, Cookie"
    return response
