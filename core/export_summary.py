"""summary.html of a data export: export.json laid out as one page readable in any browser.

The page is built from the same data as export.json, so it shows whatever the sections hold:
mappings become definition lists, lists of flat records become tables, anything else a list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.models import User
from core.templating import environment

TEMPLATE = "core/export_summary.html"
# The export's own header fields, shown at the top rather than as sections.
HEADER_KEYS = frozenset({"schema_version", "generated_at", "user_id"})
# A text this long reads better below its label than in a table cell.
LONG_TEXT = 160
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|\+00:00)$")
# Words the plain rule ("api_tokens" → "Api tokens") gets wrong.
LABELS = {"api": "API", "url": "address", "id": "ID", "ids": "IDs", "sha256": "SHA-256"}


@dataclass(slots=True)
class Node:
    """One value of export.json, shaped for the template."""

    kind: str  # "empty", "text", "time", "yes", "no", "number", "map", "table", "list"
    text: str = ""
    value: str = ""
    pairs: list[tuple[str, Node]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Node]] = field(default_factory=list)
    items: list[Node] = field(default_factory=list)


def label(key: str) -> str:
    """'log_entries' → 'Log entries', 'api_tokens' → 'API tokens'."""
    words = [LABELS.get(word, word) for word in key.split("_") if word]
    text = " ".join(words)
    return text[:1].upper() + text[1:] if text else key


def _is_flat(value: Any) -> bool:
    return not isinstance(value, Mapping | list) and not (
        isinstance(value, str) and (len(value) > LONG_TEXT or "\n" in value)
    )


def shape(value: Any) -> Node:
    """Turn a JSON value into the node the template renders."""
    if value is None:
        return Node("empty")
    if value is True:
        return Node("yes")
    if value is False:
        return Node("no")
    if isinstance(value, int | float):
        return Node("number", text=f"{value:g}" if isinstance(value, float) else str(value))
    if isinstance(value, str):
        if not value:
            return Node("empty")
        moment = TIMESTAMP.match(value)
        if moment is not None:
            return Node("time", text=f"{moment[1]} {moment[2]} UTC", value=value)
        return Node("text", text=value)
    if isinstance(value, Mapping):
        if not value:
            return Node("empty")
        return Node("map", pairs=[(label(str(k)), shape(v)) for k, v in value.items()])
    if isinstance(value, Sequence):
        if not value:
            return Node("empty")
        records = all(isinstance(item, Mapping) and item for item in value)
        if records and all(_is_flat(v) for item in value for v in item.values()):
            columns: list[str] = []
            for item in value:
                columns.extend(str(k) for k in item if str(k) not in columns)
            rows = [[shape(item.get(column)) for column in columns] for item in value]
            return Node("table", columns=[label(c) for c in columns], rows=rows)
        return Node("list", items=[shape(item) for item in value])
    return Node("text", text=str(value))


def render_summary(data: Mapping[str, Any], user: User) -> str:
    """The standalone page: autoescaped, no scripts, nothing loaded from elsewhere."""
    sections = [
        (str(key), label(str(key)), shape(value))
        for key, value in data.items()
        if key not in HEADER_KEYS
    ]
    return environment.get_template(TEMPLATE).render(
        user=user,
        schema_version=data["schema_version"],
        generated_at=data["generated_at"],
        user_id=data["user_id"],
        sections=sections,
    )
