"""Post cards rendered once and reused while nothing they show has changed.

A thread page renders the same cards over and over: most posts look the same to most of the
people reading them. The cache key is every field of the `PostView` the card is drawn from
(its author as the viewer sees them, its text, its state, the viewer's vote, what the viewer
may do with it), the course's base URL, the page number and the level, so a card comes back
from the cache only when rendering it again would give the same HTML. The one part that
differs per session, the CSRF field of its forms, is filled in on the way out.

The cache lives in each process, bounded in entries; nothing needs invalidating, because a
change to a post changes its key.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import fields
from typing import Any

from markupsafe import Markup

from core.templating import environment
from forum.presenters import PostView

MAX_CARDS = 4000

# Stands in for the CSRF field while a card is rendered; no text a user wrote can contain it
# (post HTML is sanitized without comments, every other value is escaped).
_CSRF_MARK = f"<!--csrf-{secrets.token_hex(8)}-->"
_KEY_FIELDS = tuple(f.name for f in fields(PostView) if f.name != "replies")

_cards: OrderedDict[tuple[Any, ...], str] = OrderedDict()
_macro: Any = None


def _key(post: PostView, base: str, page: int, level: str) -> tuple[Any, ...]:
    return (base, page, level, *(getattr(post, name) for name in _KEY_FIELDS))


def post_card(
    post: PostView, base: str, csrf_field: str, page: int, level: str = "answer"
) -> Markup:
    """The card of `post` (forum/_post.html's post_card), from the cache when it can be."""
    global _macro
    key = _key(post, base, page, level)
    html = _cards.get(key)
    if html is None:
        if _macro is None:
            _macro = environment.get_template("forum/_post.html").module.post_card  # type: ignore[attr-defined]
        html = str(_macro(post, base, Markup(_CSRF_MARK), page, level))
        _cards[key] = html
        if len(_cards) > MAX_CARDS:
            _cards.popitem(last=False)
    else:
        _cards.move_to_end(key)
    return Markup(html.replace(_CSRF_MARK, str(csrf_field)))


def clear() -> None:
    _cards.clear()


environment.globals["post_card"] = post_card
