"""The learner's data export pages: ask for a copy, watch it being built, download it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from core import export
from core.errors import ActionError, Conflict, NotFound
from core.models import DataExport, ExportStatus, User
from core.templating import render
from core.timeutil import utcnow

PAGE = "/me/export"


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One export as the page lists it."""

    export: DataExport
    state: str  # queued, running, ready, expired, failed
    size: str

    @property
    def in_flight(self) -> bool:
        return self.state in {"queued", "running"}

    @property
    def download_url(self) -> str | None:
        return f"{PAGE}/{self.export.id}/download" if self.state == "ready" else None


def human_size(size: int) -> str:
    if size <= 0:
        return ""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def is_expired(item: DataExport, now: datetime) -> bool:
    return item.status == ExportStatus.READY and (
        not item.file_name or item.expires_at is None or item.expires_at <= now
    )


def row_of(item: DataExport, now: datetime) -> ExportRow:
    state = "expired" if is_expired(item, now) else ExportStatus(item.status).value
    return ExportRow(export=item, state=state, size=human_size(item.size_bytes))


def _sign_in(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={PAGE}", status_code=303)


async def _page(
    request: Request,
    user: User,
    *,
    message: str = "",
    is_error: bool = False,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    now = utcnow()
    rows = [row_of(item, now) for item in await DataExport.filter(user_id=user.id).limit(50)]
    polling = any(row.in_flight for row in rows)
    # Said while the export it is about is being prepared; the polled block keeps the query.
    progress_note, poll_url = "", PAGE
    if polling and "asked" in request.query_params:
        progress_note = "Your export is being prepared. This list shows its progress; you will "
        progress_note += "also get a notification when it is ready."
        poll_url = f"{PAGE}?asked=1"
    elif polling and "already" in request.query_params:
        progress_note = "An export is already being prepared; it is shown below."
        poll_url = f"{PAGE}?already=1"
    return render(
        request,
        "core/export.html",
        {
            "rows": rows,
            "polling": polling,
            "poll_url": poll_url,
            "progress_note": progress_note,
            "message": message,
            "is_error": is_error,
            "export_hours": request.app.state.settings.export_hours,
            "per_day": export.EXPORTS_PER_DAY,
            "schema_version": export.SCHEMA_VERSION,
        },
        block="status",
        status_code=status_code,
        headers=headers,
    )


async def export_page(request: Request) -> Response:
    """GET: the user's exports (htmx polls just the status block); POST: ask for a new one."""
    user: User | None = request.scope.get("user")
    if user is None:
        return _sign_in(request)
    if request.method == "POST":
        before = await export.current_export(user)
        try:
            made = await export.request_export(user, acting_user=user)
        except ActionError as error:
            retry_after = getattr(error, "retry_after", None)
            return await _page(
                request,
                user,
                message=error.message,
                is_error=True,
                status_code=error.status_code,
                headers={} if retry_after is None else {"Retry-After": str(retry_after)},
            )
        already = before is not None and before.id == made.id
        return RedirectResponse(f"{PAGE}?{'already' if already else 'asked'}=1", status_code=303)
    await export.purge_expired()
    return await _page(request, user)


async def download(request: Request) -> Response:
    """The ZIP of a ready export, to its owner only, until the link expires."""
    user: User | None = request.scope.get("user")
    if user is None:
        return _sign_in(request)
    item = await DataExport.get_or_none(id=request.path_params["export_id"], user_id=user.id)
    if item is None:
        raise NotFound("There is no such export among yours.")
    settings = request.app.state.settings
    now = utcnow()
    if item.status != ExportStatus.READY:
        raise Conflict(
            "This export is not ready to download"
            + (
                " (it failed; ask for a new one)."
                if item.status == ExportStatus.FAILED
                else " yet."
            )
        )
    path = None if is_expired(item, now) else export.file_of(item, settings)
    if path is None:
        when = f" on {item.expires_at:%Y-%m-%d %H:%M} UTC" if item.expires_at else ""
        return await _page(
            request,
            user,
            message=f"That download link expired{when} and the file was deleted. You can ask "
            "for a new export below.",
            is_error=True,
            status_code=410,
        )
    return FileResponse(
        path,
        media_type="application/zip",
        filename=export.download_name(user, item),
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


routes: list[BaseRoute] = [
    Route(PAGE, export_page, methods=["GET", "POST"], name="data_export"),
    Route(f"{PAGE}/{{export_id:int}}/download", download, name="data_export_download"),
]
