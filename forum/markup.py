"""Markdown to safe HTML for forum posts, plus body validation and plain-text excerpts.

Posts are written in Markdown (CommonMark with tables and strikethrough). Raw HTML in the
source is never interpreted: markdown-it escapes it, and the rendered HTML then goes
through a strict bleach allowlist, so the sanitizer is the last word even if the Markdown
layer misbehaves.

Images are never embedded: reading a post must not make the reader's browser contact
another site. The sanitizer turns each image into a link that names the image and its
host, which the reader may choose to open.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator, Mapping
from html.parser import HTMLParser
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from bleach.html5lib_shim import Filter
from bleach.sanitizer import Cleaner
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "ALLOWED_TAGS",
    "EXCERPT_CHARS",
    "EXTERNAL_IMAGE_CLASS",
    "IMAGE_SCHEMES",
    "LINK_REL",
    "LINK_SCHEMES",
    "MAX_BODY_CHARS",
    "MarkupError",
    "external_image_label",
    "plain_text",
    "render_markdown",
    "sanitize_html",
    "validate_body",
    "wrap_user_html",
]

MAX_BODY_CHARS: Final = 20_000
EXCERPT_CHARS: Final = 200

# Post headings start at h3 so they rank below the page's own h1/h2 and cannot pose as
# page structure.
HEADING_OFFSET: Final = 2

LINK_SCHEMES: Final = frozenset({"http", "https", "mailto"})
IMAGE_SCHEMES: Final = frozenset({"http", "https"})
LINK_REL: Final = "nofollow ugc noopener noreferrer"
EXTERNAL_IMAGE_CLASS: Final = "external-image"

ALLOWED_TAGS: Final = frozenset(
    {
        "p", "br", "hr", "blockquote",
        "h3", "h4", "h5", "h6",
        "ul", "ol", "li",
        "strong", "em", "del", "s", "sup", "sub", "code", "pre",
        "a", "img",
        "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip

ALLOWED_ATTRIBUTES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "a": frozenset({"href", "title", "rel", "class", "target"}),
        "img": frozenset({"src", "alt", "title"}),
        "th": frozenset({"align"}),
        "td": frozenset({"align"}),
        "ol": frozenset({"start"}),
        "code": frozenset({"class"}),
    }
)

_CODE_CLASS = re.compile(r"language-[a-z0-9+#-]{1,40}")
_LIST_START = re.compile(r"[0-9]{1,9}")
_ALIGNMENTS = frozenset({"left", "center", "right"})

# Browsers drop tabs and newlines anywhere in a URL and trim controls and spaces around it,
# so they must not be able to hide a scheme from the check.
_URL_IGNORED = re.compile(r"[\x00-\x20\x7f-\xa0\s]+")
_URL_SCHEME = re.compile(r"([^/?#:]*):")

# C0 controls except tab, LF and CR; DEL; C1 controls.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


class MarkupError(ValueError):
    """A post body that cannot be accepted; the message is meant for the author."""


def _url_scheme(url: str) -> str | None:
    """Return the lower-case scheme a browser would see in an attribute value, or None."""
    # Percent-decoding is stricter than browsers (they never decode a scheme), so a
    # smuggled "java%09script:" is refused rather than argued about.
    normalized = _URL_IGNORED.sub("", unquote(html.unescape(url))).lower()
    match = _URL_SCHEME.match(normalized)
    return match.group(1) if match else None


_URL_FORBIDDEN_CHARS: Final = re.compile(r'["<>`]')


def _url_allowed(url: str, schemes: frozenset[str], *, allow_relative: bool) -> bool:
    """Return whether url has one of schemes, or is relative and relative URLs are allowed."""
    scheme = _url_scheme(url)
    if scheme is None:
        return allow_relative
    return scheme in schemes


def _allow_attribute(tag: str, name: str, value: str) -> bool:
    """Return whether bleach may keep attribute name=value on tag."""
    if name not in ALLOWED_ATTRIBUTES.get(tag, ()):
        return False
    # Values arrive with character references still encoded: bleach's tokenizer leaves
    # them alone, and the URL check decodes them itself.
    if name in {"href", "src"} and _URL_FORBIDDEN_CHARS.search(value):
        # Never part of a real URL (they are percent-encoded there); bleach also serializes
        # such values in a way that a second pass changes.
        return False
    if name == "href":
        return _url_allowed(value, LINK_SCHEMES, allow_relative=True)
    if name == "src":
        # Absolute http(s) only: the image becomes a link that must lead somewhere real.
        return _url_allowed(value, IMAGE_SCHEMES, allow_relative=False)
    if name == "class":
        if tag == "a":
            return value == EXTERNAL_IMAGE_CLASS
        return _CODE_CLASS.fullmatch(value) is not None
    if name == "target":
        return value == "_blank"
    if name == "align":
        return value in _ALIGNMENTS
    if name == "start":
        return _LIST_START.fullmatch(value) is not None
    return True


class _LinkRelFilter(Filter):  # type: ignore[misc]
    """html5lib filter that stamps the fixed rel value on every link."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for token in super().__iter__():
            if token["type"] in ("StartTag", "EmptyTag") and token["name"] == "a":
                token["data"][(None, "rel")] = LINK_REL
            yield token


def _image_host(src: str) -> str | None:
    """The host an image URL (as found in an attribute) points at, in ASCII, or None."""
    try:
        host = urlsplit(_URL_IGNORED.sub("", html.unescape(src))).hostname
    except ValueError:
        return None
    if not host:
        return None
    try:
        # Punycode, so a look-alike Unicode name cannot pose as a familiar site.
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _attribute_text(value: str | None) -> str:
    """Readable one-line text from an attribute value that still has its references."""
    return " ".join(_strip_controls(html.unescape(value or "")).split())


def external_image_label(alt: str, host: str | None, *, inside_link: bool = False) -> str:
    """The words shown instead of an image that is not loaded."""
    what = f"External image \u201c{alt}\u201d" if alt else "External image"
    if inside_link:
        return what + (f" from {host}" if host else "") + " (not loaded)"
    return what + (f" from {host} (opens that site)" if host else " (opens another site)")


class _ExternalImageFilter(Filter):  # type: ignore[misc]
    """html5lib filter that replaces every image by a link to it (or by text in a link)."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        link_depth = 0
        for token in super().__iter__():
            kind, name = token["type"], token.get("name")
            if name == "a" and kind == "StartTag":
                link_depth += 1
            elif name == "a" and kind == "EndTag":
                link_depth = max(0, link_depth - 1)
            elif name == "img" and kind in ("StartTag", "EmptyTag"):
                yield from _image_tokens(token["data"], inside_link=link_depth > 0)
                continue
            elif name == "img":
                continue
            yield token


def _image_tokens(attrs: dict[Any, str], *, inside_link: bool) -> Iterator[dict[str, Any]]:
    alt = _attribute_text(attrs.get((None, "alt")))
    src = attrs.get((None, "src"))
    if not src:
        # The sanitizer dropped a source it does not allow: what is left is the alt text.
        if alt:
            yield {"type": "Characters", "data": alt}
        return
    label = external_image_label(alt, _image_host(src), inside_link=inside_link)
    if inside_link:
        yield {"type": "Characters", "data": label}
        return
    link: dict[Any, str] = {(None, "href"): src}
    if title := attrs.get((None, "title")):
        link[(None, "title")] = title
    link[(None, "class")] = EXTERNAL_IMAGE_CLASS
    link[(None, "rel")] = LINK_REL
    link[(None, "target")] = "_blank"
    yield {"type": "StartTag", "namespace": None, "name": "a", "data": link}
    yield {"type": "Characters", "data": label}
    yield {"type": "EndTag", "namespace": None, "name": "a"}


def _new_cleaner() -> Cleaner:
    return Cleaner(
        tags=ALLOWED_TAGS,
        attributes=_allow_attribute,
        protocols=LINK_SCHEMES,
        strip=True,
        strip_comments=True,
        filters=[_ExternalImageFilter, _LinkRelFilter],
    )


# A bleach Cleaner keeps parser state between calls and must not be shared across threads.
_local = threading.local()


def _cleaner() -> Cleaner:
    cleaner: Cleaner | None = getattr(_local, "cleaner", None)
    if cleaner is None:
        cleaner = _local.cleaner = _new_cleaner()
    return cleaner


class _PostMarkdown(MarkdownIt):
    """MarkdownIt that applies the post URL policy while parsing."""

    def validateLink(self, url: str) -> bool:
        # A refused destination leaves the Markdown source as literal text, which is more
        # useful to the reader than a link that bleach later strips of its href.
        return _url_allowed(url, LINK_SCHEMES, allow_relative=True)


def _adjust_tokens(state: StateCore) -> None:
    """Demote headings, turn table alignment into align and tidy fence languages."""
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            level = min(6, int(token.tag[1]) + HEADING_OFFSET)
            token.tag = f"h{level}"
        elif token.type in ("th_open", "td_open"):
            style = token.attrGet("style")
            token.attrs = {}
            if isinstance(style, str) and style.startswith("text-align:"):
                token.attrSet("align", style.removeprefix("text-align:"))
        elif token.type == "fence":
            words = token.info.split(maxsplit=1)
            language = words[0].lower() if words else ""
            token.info = language if _CODE_CLASS.fullmatch(f"language-{language}") else ""
        elif token.type == "inline" and token.children:
            token.children = _unwrap_bad_images(token.children)


def _unwrap_bad_images(tokens: list[Token]) -> list[Token]:
    """Replace images whose source the sanitizer would drop by their alt text."""
    result: list[Token] = []
    for token in tokens:
        if token.type != "image":
            result.append(token)
            continue
        src = token.attrGet("src")
        if isinstance(src, str) and _url_allowed(src, IMAGE_SCHEMES, allow_relative=False):
            result.append(token)
        else:
            result.extend(_unwrap_bad_images(token.children or []))
    return result


def _new_markdown() -> MarkdownIt:
    md = _PostMarkdown("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.core.ruler.push("agora_adjust_tokens", _adjust_tokens)
    return md


# Rendering creates fresh state per call, so one configured parser serves all threads.
_MARKDOWN: Final = _new_markdown()


def _strip_controls(text: str) -> str:
    return _CONTROL_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def validate_body(text: str) -> str:
    """Return a normalized post body, or raise MarkupError with a message for the author.

    Control characters other than tab and newline are silently removed (they have no
    use in a post and some confuse parsers), line endings become "\\n", leading blank
    lines and trailing whitespace are trimmed (leading indentation is kept because it
    is meaningful in Markdown), and the result must be non-blank and at most
    MAX_BODY_CHARS characters long.
    """
    body = _LEADING_BLANK_LINES.sub("", _strip_controls(text)).rstrip()
    if not body.strip():
        raise MarkupError("A post can't be empty.")
    if len(body) > MAX_BODY_CHARS:
        raise MarkupError(
            f"A post can be at most {MAX_BODY_CHARS:,} characters; this one has {len(body):,}."
        )
    return body


def sanitize_html(html_text: str) -> str:
    """Clean HTML against the post allowlist (e.g. to re-check stored HTML)."""
    return str(_cleaner().clean(_strip_controls(html_text)))


def render_markdown(text: str) -> str:
    """Render post Markdown to sanitized HTML that is safe to embed in a page."""
    return sanitize_html(_MARKDOWN.render(_strip_controls(text)))


def wrap_user_html(html_text: str) -> Markup:
    """Wrap sanitized post HTML (from render_markdown) in a container htmx ignores."""
    # No re-sanitizing here: the input is stored render_markdown output, and bleach only
    # emits balanced markup, so nothing in it can close the wrapper. HTML stored before
    # images became links may still hold an <img>: that alone is cleaned again.
    if "<img" in html_text:
        html_text = sanitize_html(html_text)
    return Markup(f'<div class="user-content" hx-disable>{html_text}</div>')


_BLOCK_TAGS: Final = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_HIDDEN_TAGS: Final = frozenset({"script", "style", "template"})


class _TextExtractor(HTMLParser):
    """Collects the human-readable text of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(f" {alt} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.parts.append(data)


def plain_text(source: str, *, is_html: bool = False, max_chars: int = EXCERPT_CHARS) -> str:
    """Return a one-line plain-text excerpt (not markup: escape it) of Markdown or HTML."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    markup = source if is_html else _MARKDOWN.render(_strip_controls(source))
    extractor = _TextExtractor()
    extractor.feed(markup)
    extractor.close()
    text = " ".join(_strip_controls("".join(extractor.parts)).split())
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip() + "\u2026"
