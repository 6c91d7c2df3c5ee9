"""The public moderation log: pages, feed, CSV export, statistics, and the proof API routes.

`/courses/{slug}/moderation` and `/moderation` (site-wide acts) are readable logged out.
The CSV export and the statistics are for the course's instructors (staff_routes, mounted
under the guarded /courses/{slug}/staff). The JSON API lives in moderation/endpoints.py.
"""

from __future__ import annotations

import csv
import io
import re
import statistics
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core.api import ApiRoute
from core.errors import NotFound
from core.models import Course, Role, User
from core.templating import render
from moderation import endpoints, log
from moderation.endpoints import (
    ROLE_ORDER,
    Actor,
    LogPage,
    PublicEntryOut,
    Viewer,
    actor_label,
    actors_of,
    all_matching,
    log_base,
    log_page,
    parse_filters,
    present,
    viewer_of,
)
from moderation.models import Act, Appeal, AppealStatus, Flag, LogEntry, Rule, TargetType

ATOM_NS = "http://www.w3.org/2005/Atom"
# Characters XML 1.0 cannot carry at all; a reason containing one must still make a valid feed.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


async def _course(request: Request) -> Course:
    course = await Course.get_or_none(slug=request.path_params["slug"])
    if course is None:
        raise NotFound("There is no such course.")
    return course


async def _may_export(request: Request, course: Course | None) -> bool:
    user: User | None = request.scope.get("user")
    if user is None or not user.is_active or course is None:
        return False
    return user.is_admin or await course.role_of(user) == Role.INSTRUCTOR


# --- the log pages ---------------------------------------------------------------------


async def _log_response(request: Request, course: Course | None) -> Response:
    course_id = course.id if course else None
    actors = await actors_of(course_id)
    viewer = await viewer_of(request, course)
    filters = parse_filters(request.query_params, actors)
    status = 200
    if filters.errors:
        page, status = LogPage([], None, None), 422
    else:
        page = await log_page(course_id, filters, actors)
    entries = await present(page.entries, course=course, viewer=viewer, actors=actors)
    rule_codes: list[str] = []
    if course is not None:
        rule_codes = [r.code for r in await Rule.filter(course_id=course.id)]
    head = await log.latest_head()
    return render(
        request,
        "moderation/log.html",
        {
            "course": course,
            "base": log_base(course),
            "entries": entries,
            "page": page,
            "filters": filters,
            "viewer": viewer,
            "actors": [(a.key, _option_label(a, viewer)) for a in actors],
            "acts": [a.value for a in Act],
            "roles": ROLE_ORDER,
            "target_types": await _target_types(course_id),
            "rule_codes": rule_codes,
            "head": log.head_json(head) if head else None,
            "may_export": await _may_export(request, course),
        },
        block="results",
        status_code=status,
    )


async def _target_types(course_id: int | None) -> list[str]:
    query = (
        LogEntry.filter(course_id=course_id)
        if course_id
        else LogEntry.filter(course_id__isnull=True)
    )
    stored = await query.order_by("target_type").distinct().values_list("target_type", flat=True)
    known = [t.value for t in TargetType]
    return known + sorted({str(t) for t in stored} - set(known))


def _option_label(actor: Actor, viewer: Viewer) -> str:
    label = actor_label(actor, viewer)
    return label if label == actor.pseudonym else f"{label} ({actor.role})"


async def course_log(request: Request) -> Response:
    return await _log_response(request, await _course(request))


async def site_log(request: Request) -> Response:
    return await _log_response(request, None)


# --- Atom feed -------------------------------------------------------------------------


def _xml_text(value: str) -> str:
    return _NOT_XML.sub("\N{REPLACEMENT CHARACTER}", value)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = _xml_text(text)
    return element


def entry_summary(entry: PublicEntryOut) -> str:
    lines = [
        f"Entry #{entry.seq} at {entry.created_at}",
        f"By: {entry.actor} ({entry.actor_role})",
        f"Act: {entry.act}",
        f"Target: {entry.target}",
    ]
    if entry.rule_code:
        lines.append(f"Rule: {entry.rule_code} {entry.rule_text}".rstrip())
    lines.append(f"Reason: {entry.reason}")
    if entry.duration_seconds is not None:
        lines.append(f"Duration: {entry.duration} ({entry.duration_seconds} s)")
    if entry.old_value or entry.new_value:
        lines.append(f"Change: {entry.old_value} → {entry.new_value}")
    if entry.reverses_seq is not None:
        lines.append(f"Reverses: #{entry.reverses_seq}")
    lines.append(f"Source: {entry.source}")
    lines.append(f"Leaf hash: {entry.leaf_hash}")
    return "\n".join(lines)


def atom_feed(
    *,
    title: str,
    site: str,
    page_path: str,
    feed_path: str,
    updated: str,
    entries: list[PublicEntryOut],
) -> bytes:
    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    _sub(feed, "id", site + page_path)
    _sub(feed, "title", title)
    _sub(feed, "updated", updated)
    _sub(feed, "link", rel="self", href=site + feed_path, type="application/atom+xml")
    _sub(feed, "link", rel="alternate", href=site + page_path, type="text/html")
    author = _sub(feed, "author")
    _sub(author, "name", "Agora moderation log")
    for entry in entries:
        item = _sub(feed, "entry")
        _sub(item, "id", site + entry.url.split("#")[0])
        _sub(item, "title", f"#{entry.seq} {entry.act} {entry.target} by {entry.actor}")
        _sub(item, "updated", entry.created_at)
        _sub(item, "published", entry.created_at)
        _sub(item, "link", rel="alternate", href=site + entry.url, type="text/html")
        if entry.rule_code:
            _sub(item, "category", term=entry.rule_code, label=entry.rule_text or entry.rule_code)
        _sub(item, "content", entry_summary(entry), type="text")
    body: bytes = ET.tostring(feed, encoding="utf-8")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


async def _feed_response(request: Request, course: Course | None) -> Response:
    course_id = course.id if course else None
    actors = await actors_of(course_id)
    filters = parse_filters(request.query_params, actors)
    if filters.errors:
        details = "; ".join(f"{k}: {v}" for k, v in filters.errors.items())
        return Response(
            f"Invalid filters: {details}\n", status_code=422, media_type="text/plain; charset=utf-8"
        )
    page = await log_page(course_id, filters, actors)
    # Feeds are fetched without cookies and shared: always the labels of a logged-out reader.
    entries = await present(page.entries, course=course, viewer="public", actors=actors)
    if entries:
        updated = entries[0].created_at
    elif course is not None:
        updated = log.timestamp(course.created_at)
    else:
        updated = "1970-01-01T00:00:00.000000Z"
    base = log_base(course)
    title = f"Moderation log · {course.title}" if course else "Site-wide moderation log"
    body = atom_feed(
        title=title,
        site=str(request.base_url).rstrip("/"),
        page_path=base,
        feed_path=f"{base}.atom",
        updated=updated,
        entries=entries,
    )
    return Response(body, media_type="application/atom+xml; charset=utf-8")


async def course_feed(request: Request) -> Response:
    return await _feed_response(request, await _course(request))


async def site_feed(request: Request) -> Response:
    return await _feed_response(request, None)


# --- CSV export (instructors) ----------------------------------------------------------

CSV_COLUMNS = (
    "seq",
    "created_at",
    "course_id",
    "actor_role",
    "actor_id",
    "actor_pseudonym",
    "actor_name",
    "act",
    "target_type",
    "target_id",
    "target",
    "target_url",
    "rule_code",
    "rule_text",
    "reason",
    "duration_seconds",
    "old_value",
    "new_value",
    "reverses_seq",
    "source",
    "leaf_hash",
    "canonical",
)
# A cell a spreadsheet would run as a formula is prefixed with an apostrophe (OWASP advice).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_START):
        return "'" + text
    return text


async def export_csv(request: Request) -> Response:
    """Guarded: the course's instructors. Every entry of the course, every column."""
    course: Course = request.state.course
    actors = await actors_of(course.id)
    filters = parse_filters(request.query_params, actors)
    rows = [] if filters.errors else await all_matching(course.id, filters, actors)
    shown = await present(rows, course=course, viewer="staff", actors=actors)
    by_identity = {(a.role, a.actor_id): a for a in actors}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry, view in zip(rows, shown, strict=True):
        actor = by_identity.get((entry.actor_role, entry.actor_id))
        writer.writerow(
            _cell(value)
            for value in (
                entry.seq,
                view.created_at,
                entry.course_id,
                entry.actor_role,
                entry.actor_id,
                actor.pseudonym if actor else "",
                actor.name if actor else "",
                entry.act,
                entry.target_type,
                entry.target_id,
                view.target,
                view.target_url,
                entry.rule_code,
                view.rule_text,
                entry.reason,
                entry.duration_seconds,
                entry.old_value,
                entry.new_value,
                entry.reverses_seq,
                entry.source,
                entry.leaf_hash,
                entry.canonical,
            )
        )
    return Response(
        buffer.getvalue(),
        status_code=422 if filters.errors else 200,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{course.slug}-moderation.csv"'},
    )


# --- statistics (instructors) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    y: int
    width: int
    text_y: int


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    title: str
    width: int
    height: int
    label_width: int
    bar_height: int
    bars: tuple[Bar, ...]


def bar_chart(chart_id: str, title: str, items: list[tuple[str, int]]) -> Chart:
    """Horizontal bars laid out here, so the SVG needs no script and no style attribute."""
    label_width, bar_area, row, bar_height = 250, 320, 26, 18
    top = max((value for _, value in items), default=0)
    bars = []
    for i, (label, value) in enumerate(items):
        width = round(bar_area * value / top) if top else 0
        short = label if len(label) <= 34 else label[:33] + "…"
        y = 6 + i * row
        bars.append(Bar(short, value, y, max(width, 1 if value else 0), y + bar_height - 4))
    return Chart(
        chart_id,
        title,
        label_width + bar_area + 60,
        12 + row * len(items),
        label_width,
        bar_height,
        tuple(bars),
    )


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "no decided flags yet"
    return endpoints.duration_text(round(seconds)) or "0 seconds"


async def stats(request: Request) -> Response:
    """Guarded: the course's instructors."""
    course: Course = request.state.course
    actors = await actors_of(course.id)
    by_identity = {(a.role, a.actor_id): a for a in actors}
    rows = await LogEntry.filter(course_id=course.id).values(
        "actor_role", "actor_id", "act", "rule_code"
    )
    per_moderator: Counter[tuple[str, int | None]] = Counter(
        (row["actor_role"], row["actor_id"]) for row in rows
    )
    moderators = []
    for identity, count in per_moderator.most_common():
        actor = by_identity.get(identity)
        label = actor_label(actor, "staff")
        moderators.append(
            (label if actor is None or actor.key == "system" else f"{label} ({identity[0]})", count)
        )
    rule_texts = {r.code: r.text for r in await Rule.filter(course_id=course.id)}
    per_rule = Counter(row["rule_code"] for row in rows)
    rules = [
        (code or "(no rule)", rule_texts.get(code, ""), count)
        for code, count in per_rule.most_common()
    ]
    acts = Counter(row["act"] for row in rows).most_common()
    flags = await Flag.filter(course_id=course.id).values("created_at", "resolved_at")
    waits = [
        (f["resolved_at"] - f["created_at"]).total_seconds()
        for f in flags
        if f["resolved_at"] is not None
    ]
    appeal_statuses: Counter[str] = Counter(
        AppealStatus(appeal.status).value
        for appeal in await Appeal.filter(course_id=course.id).only("id", "status")
    )
    upheld = appeal_statuses[AppealStatus.UPHELD.value]
    overturned = appeal_statuses[AppealStatus.OVERTURNED.value]
    decided = upheld + overturned
    return render(
        request,
        "moderation/stats.html",
        {
            "course": course,
            "total": len(rows),
            "moderators": moderators,
            "rules": rules,
            "acts": acts,
            "flags_total": len(flags),
            "flags_open": len(flags) - len(waits),
            "flags_decided": len(waits),
            "median_wait": _human(statistics.median(waits) if waits else None),
            "appeals_total": sum(appeal_statuses.values()),
            "appeals_pending": appeal_statuses[AppealStatus.PENDING.value],
            "appeals_upheld": upheld,
            "appeals_overturned": overturned,
            "overturn_rate": f"{overturned / decided:.0%}" if decided else "—",
            "charts": [
                bar_chart("acts", "Entries per act", acts),
                bar_chart("moderators", "Entries per moderator", moderators),
            ],
        },
    )


# --- routes ----------------------------------------------------------------------------

routes: list[BaseRoute] = [
    Route("/courses/{slug}/moderation", course_log, name="moderation_log"),
    Route("/courses/{slug}/moderation.atom", course_feed, name="moderation_feed"),
    Route("/moderation", site_log, name="site_moderation_log"),
    Route("/moderation.atom", site_feed, name="site_moderation_feed"),
]

staff_routes: list[BaseRoute] = [
    Route("/moderation.csv", export_csv, name="moderation_csv"),
    Route("/moderation/stats", stats, name="moderation_stats"),
]

api_routes: list[BaseRoute] = [
    ApiRoute(
        "/api/v1/log/head",
        endpoints.head,
        method="GET",
        response=endpoints.HeadOut,
        public=True,
        tag="moderation",
        summary="The latest signed tree head of the moderation log (404 while empty).",
    ),
    ApiRoute(
        "/api/v1/log/public-key",
        endpoints.public_key,
        method="GET",
        response=endpoints.PublicKeyOut,
        public=True,
        tag="moderation",
        summary="The Ed25519 key that signs tree heads.",
    ),
    ApiRoute(
        "/api/v1/log/entries",
        endpoints.entries,
        method="GET",
        response=endpoints.EntriesOut,
        public=True,
        tag="moderation",
        summary="Entries in sequence order (?start=0&limit=100, at most 1000): the exact "
        "canonical text, its leaf hash and the stored fields.",
    ),
    ApiRoute(
        "/api/v1/log/proof/inclusion",
        endpoints.inclusion,
        method="GET",
        response=endpoints.InclusionOut,
        public=True,
        tag="moderation",
        summary="Inclusion proof of entry ?seq= in the tree of ?size= entries "
        "(default: the latest signed head).",
    ),
    ApiRoute(
        "/api/v1/log/proof/consistency",
        endpoints.consistency,
        method="GET",
        response=endpoints.ConsistencyOut,
        public=True,
        tag="moderation",
        summary="Consistency proof from the tree of ?first= entries to that of ?second= "
        "(default: the latest signed head).",
    ),
    ApiRoute(
        "/api/v1/courses/{slug}/moderation",
        endpoints.course_log,
        method="GET",
        response=endpoints.CourseLogOut,
        public=True,
        tag="moderation",
        summary="A course's public moderation log, newest first, labelled as for a "
        "logged-out reader (?act= ?actor= ?role= ?rule= ?target_type= ?from= ?to= "
        "?before= ?after= ?seq= ?limit=).",
    ),
]
