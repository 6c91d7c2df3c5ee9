"""Tests for forum.markup: the post renderer, its sanitizer, and the helpers around it.

The sanitizer suite judges output with an oracle that is written independently of the
module's allowlist: it parses rendered HTML with the standard library's HTMLParser and with
html5lib (the browser-conformant parser bleach vendors) and lists everything a browser could
turn into script, navigation to a dangerous URL, page-level behaviour, or a request to another
site made without the reader asking (an embedded image).
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from forum.markup import (
    EXCERPT_CHARS,
    MAX_BODY_CHARS,
    MarkupError,
    plain_text,
    render_markdown,
    sanitize_html,
    validate_body,
    wrap_user_html,
)
from tests.forum import hostile_inputs

try:
    from bleach._vendor import html5lib
except ImportError:  # pragma: no cover - depends on the installed bleach
    html5lib = None

# --- the oracle ------------------------------------------------------------------------------

XHTML_NS = "http://www.w3.org/1999/xhtml"

SAFE_TAGS = frozenset(
    {
        "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
        "ul", "ol", "li", "strong", "em", "del", "s", "code", "pre", "a",
        "table", "thead", "tbody", "tr", "th", "td", "sup", "sub",
    }
)  # fmt: skip

SAFE_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "title", "rel", "class", "target"}),
    "th": frozenset({"align"}),
    "td": frozenset({"align"}),
    "ol": frozenset({"start"}),
    "code": frozenset({"class"}),
}

REQUIRED_REL = frozenset({"nofollow", "ugc", "noopener", "noreferrer"})
URL_NOISE = re.compile(r"[\x00-\x20\x7f-\x9f]|\s")


def url_scheme(value: str) -> str | None:
    """Scheme of an already entity-decoded attribute value; None when the URL is relative."""
    cleaned = URL_NOISE.sub("", unquote(value)).lower()
    for index, char in enumerate(cleaned):
        if char == ":":
            return cleaned[:index]
        if char in "/?#":
            return None
    return None


def element_problems(tag: str, attrs: list[tuple[str, str | None]]) -> list[str]:
    """Everything wrong with one start tag; attribute values must be entity-decoded."""
    if tag == "img":
        return ["<img> would load an image without the reader asking"]
    if tag not in SAFE_TAGS:
        return [f"tag <{tag}> is not allowed"]
    problems = []
    for name, raw_value in attrs:
        value = raw_value or ""
        lowered = name.lower()
        if lowered.startswith(("on", "hx-", "data-")) or lowered == "style":
            problems.append(f"dangerous attribute {name!r} on <{tag}>")
        elif lowered not in SAFE_ATTRIBUTES.get(tag, ()):
            problems.append(f"attribute {name!r} is not allowed on <{tag}>")
        elif lowered == "href":
            scheme = url_scheme(value)
            if scheme is not None and scheme not in {"http", "https", "mailto"}:
                problems.append(f"href with scheme {scheme!r}: {value!r}")
        elif lowered == "class":
            expected = r"external-image" if tag == "a" else r"language-[a-z0-9+#-]+"
            if not re.fullmatch(expected, value):
                problems.append(f"class {value!r} on <{tag}>")
        elif lowered == "target":
            if value != "_blank":
                problems.append(f"target {value!r} on <{tag}>")
        elif lowered == "align":
            if value not in {"left", "center", "right"}:
                problems.append(f"align {value!r}")
        elif lowered == "start" and not re.fullmatch(r"[0-9]+", value):
            problems.append(f"ol start {value!r}")
    if tag == "a":
        rels = [value or "" for name, value in attrs if name.lower() == "rel"]
        tokens = set(" ".join(rels).lower().split())
        if not REQUIRED_REL <= tokens:
            problems.append(f"<a> lacks rel {sorted(REQUIRED_REL - tokens)}")
    return problems


class _StdlibOracle(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.problems.extend(element_problems(tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.problems.extend(element_problems(tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag not in SAFE_TAGS:
            self.problems.append(f"end tag </{tag}> is not allowed")

    def handle_comment(self, data: str) -> None:
        self.problems.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.problems.append(f"declaration {decl!r}")

    def unknown_decl(self, data: str) -> None:
        self.problems.append(f"declaration {data!r}")

    def handle_pi(self, data: str) -> None:
        self.problems.append(f"processing instruction {data!r}")


def stdlib_problems(html_text: str) -> list[str]:
    """Oracle verdict using html.parser."""
    oracle = _StdlibOracle()
    oracle.feed(html_text)
    oracle.close()
    return oracle.problems


def _html5_parse(html_text: str) -> tuple[Any, list[Any]]:
    assert html5lib is not None
    parser = html5lib.HTMLParser(tree=html5lib.getTreeBuilder("etree"))
    fragment = parser.parseFragment(html_text, container="div")
    return fragment, parser.errors


def _wrapper_structure_problems(fragment: Any) -> list[str]:
    problems = []
    if (fragment.text or "").strip():
        problems.append(f"text before the wrapper: {fragment.text!r}")
    if len(fragment) != 1:
        return [*problems, f"{len(fragment)} top-level elements instead of one"]
    wrapper = fragment[0]
    if wrapper.tag != f"{{{XHTML_NS}}}div":
        problems.append(f"outermost element is {wrapper.tag}")
    if dict(wrapper.attrib) != {"class": "user-content", "hx-disable": ""}:
        problems.append(f"wrapper attributes changed: {dict(wrapper.attrib)}")
    if (wrapper.tail or "").strip():
        problems.append(f"content after the wrapper: {wrapper.tail!r}")
    return problems


def html5_problems(html_text: str, *, wrapped: bool = False) -> list[str]:
    """Oracle verdict using a browser-conformant parse in a <div> context.

    With wrapped=True the input must be a single user-content wrapper, which is checked
    and then exempted from the allowlist.
    """
    if html5lib is None:
        return []
    fragment, errors = _html5_parse(html_text)
    # Any parse error means the browser had to repair the markup, which is where mutation
    # XSS lives. invalid-codepoint is the exception: odd characters such as noncharacters
    # are reported but kept as text, with no repair.
    problems = [
        f"parse error {code}" for _pos, code, _data in errors if code != "invalid-codepoint"
    ]
    tokens = list(html5lib.getTreeWalker("etree")(fragment))
    if wrapped:
        structure = _wrapper_structure_problems(fragment)
        problems.extend(structure)
        if not structure:
            tokens = tokens[1:-1]
    for token in tokens:
        kind = token["type"]
        if kind in ("StartTag", "EmptyTag"):
            if token["namespace"] != XHTML_NS:
                problems.append(f"<{token['name']}> in foreign namespace {token['namespace']}")
            attrs = [
                (name if namespace is None else f"{namespace}:{name}", value)
                for (namespace, name), value in token["data"].items()
            ]
            problems.extend(element_problems(token["name"], attrs))
        elif kind in ("Comment", "Doctype"):
            problems.append(f"{kind} node")
    return problems


def unsafe_reasons(html_text: str) -> list[str]:
    """Combined verdict of both parsers; empty means safe."""
    return stdlib_problems(html_text) + html5_problems(html_text)


def wrapped_problems(wrapped: str) -> list[str]:
    """Verdict on wrapped output: one outermost wrapper, and safe content inside it."""
    return html5_problems(wrapped, wrapped=True)


# --- the oracle can fail -------------------------------------------------------------------

REL = 'rel="nofollow ugc noopener noreferrer"'

UNSAFE_SAMPLES = [
    "<script>alert(1)</script>",
    '<p onclick="go()">x</p>',
    '<img src="https://ok.example/a.png" alt="" onerror="go()">',
    '<p style="color:red">x</p>',
    "<div>not allowed</div>",
    '<p hx-get="/admin">x</p>',
    '<p data-hx-post="/admin">x</p>',
    '<p data-note="1">x</p>',
    '<p id="main">x</p>',
    '<p class="banner">x</p>',
    f'<a href="javascript:alert(1)" {REL}>x</a>',
    f'<a href="JaVa&#x09;ScRiPt:alert(1)" {REL}>x</a>',
    f'<a href="&#106;avascript:alert(1)" {REL}>x</a>',
    f'<a href="&#x20;&#x01;javascript:alert(1)" {REL}>x</a>',
    f'<a href="vbscript:msgbox(1)" {REL}>x</a>',
    f'<a href="data:text/html,x" {REL}>x</a>',
    f'<a href="java%0ascript:alert(1)" {REL}>x</a>',
    '<a href="https://ok.example/">no rel</a>',
    '<a href="https://ok.example/" rel="nofollow">partial rel</a>',
    '<a href="https://ok.example/" rel="nofollow ugc noopener">no noreferrer</a>',
    f'<a href="https://ok.example/" {REL} target="other-window">x</a>',
    f'<a href="https://ok.example/" {REL} class="banner">x</a>',
    '<img src="https://ok.example/a.png" alt="">',
    '<img src="/relative.png" alt="">',
    '<img src="data:image/png;base64,AAAA" alt="">',
    '<img src="//evil.example/a.png" alt="">',
    '<img src="https://ok.example/a.png" alt="" width="1">',
    '<code class="language-py evil">x</code>',
    '<ol start="1x"><li>x</li></ol>',
    '<td align="justify">x</td>',
    "<!-- hidden -->",
    "<svg><desc>x</desc></svg>",
    '<iframe srcdoc="x"></iframe>',
]


@pytest.mark.parametrize("unsafe", UNSAFE_SAMPLES)
def test_stdlib_oracle_flags_unsafe_html(unsafe: str) -> None:
    assert stdlib_problems(unsafe)


@pytest.mark.parametrize("unsafe", UNSAFE_SAMPLES)
def test_html5_oracle_flags_unsafe_html(unsafe: str) -> None:
    if html5lib is None:
        pytest.skip("html5lib is not importable")
    assert html5_problems(unsafe)


def test_html5_oracle_flags_foreign_content_and_repairs() -> None:
    if html5lib is None:
        pytest.skip("html5lib is not importable")
    assert html5_problems(f'<svg><a href="https://ok.example" {REL}>x</a></svg>')
    assert any("parse error" in p for p in html5_problems("<p><em>unclosed</p>"))


def test_wrapper_check_flags_escapes() -> None:
    if html5lib is None:
        pytest.skip("html5lib is not importable")
    good = '<div class="user-content" hx-disable><p>x</p></div>'
    assert wrapped_problems(good) == []
    assert wrapped_problems(good + "<p>after</p>")
    assert wrapped_problems("<p>before</p>" + good)
    assert wrapped_problems('<div class="user-content" hx-disable></div><p>x</p></div>')
    assert wrapped_problems('<div class="user-content"><p>x</p></div>')
    assert wrapped_problems('<div class="user-content" hx-disable><div>x</div></div>')
    assert wrapped_problems('<div class="user-content" hx-disable><p onclick=x>x</p></div>')


def test_oracle_accepts_safe_html() -> None:
    safe = (
        f'<h3>T</h3><p><a href="https://ok.example/a?b=1&amp;c=2" {REL}>x</a> '
        f'<a href="/courses/1" {REL}>rel</a> <a href="mailto:a@ok.example" {REL}>m</a> '
        f'<a href="https://ok.example/a.png" class="external-image" {REL} target="_blank">i</a>'
        "</p>"
        '<pre><code class="language-python">x</code></pre>'
        '<table><thead><tr><th align="left">a</th></tr></thead>'
        '<tbody><tr><td align="right">1</td></tr></tbody></table>'
        '<ol start="3"><li>x</li></ol>'
    )
    assert unsafe_reasons(safe) == []


# --- hostile corpus ----------------------------------------------------------------------


def _check_rendered(source: str, render: Callable[[str], str]) -> list[str]:
    out = render(source)
    problems = stdlib_problems(out) + wrapped_problems(str(wrap_user_html(out)))
    if sanitize_html(out) != out:
        problems.append("output changes when sanitized again")
    return problems


def _run_cases(cases: list[tuple[str, str]], render: Callable[[str], str]) -> None:
    failures = []
    for case_id, source in cases:
        problems = _check_rendered(source, render)
        if problems:
            failures.append(f"{case_id}: {source[:80]!r} -> {problems[:3]}")
    assert not failures, f"{len(failures)} unsafe outputs:\n" + "\n".join(failures[:20])


def _grouped(cases: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for case_id, source in cases:
        groups[case_id.rsplit("-", 1)[0]].append((case_id, source))
    return dict(groups)


MARKDOWN_GROUPS = _grouped(hostile_inputs.markdown_cases())
HTML_GROUPS = _grouped(hostile_inputs.raw_html_cases())


def test_corpus_size() -> None:
    total = sum(map(len, MARKDOWN_GROUPS.values())) + sum(map(len, HTML_GROUPS.values()))
    assert total >= 5000


@pytest.mark.parametrize("group", sorted(MARKDOWN_GROUPS))
def test_hostile_markdown_renders_safely(group: str) -> None:
    _run_cases(MARKDOWN_GROUPS[group], render_markdown)


@pytest.mark.parametrize("group", sorted(HTML_GROUPS))
def test_hostile_html_is_sanitized(group: str) -> None:
    _run_cases(HTML_GROUPS[group], sanitize_html)


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)


@pytest.mark.parametrize(
    "source",
    [
        *hostile_inputs.SCRIPT_PAYLOADS,
        *hostile_inputs.HANDLER_SPECIALS,
        *hostile_inputs.FOREIGN_AND_MXSS_PAYLOADS,
    ],
)
def test_raw_html_in_markdown_is_shown_as_text(source: str) -> None:
    out = render_markdown(source)
    if "<" in source.replace("&lt;", "").replace("&#60;", ""):
        assert "&lt;" in out
    collector = _TagCollector()
    collector.feed(out)
    assert collector.tags <= SAFE_TAGS - {"a"}


def test_wrapper_cannot_be_closed_by_content() -> None:
    out = render_markdown("</div></div><script>alert(1)</script>\n\n<div hx-get=/x>")
    assert "&lt;/div&gt;&lt;/div&gt;&lt;script&gt;" in out
    wrapped = wrap_user_html(out)
    assert isinstance(wrapped, Markup)
    assert str(wrapped).startswith('<div class="user-content" hx-disable>')
    assert str(wrapped).endswith("</div>")
    assert str(wrapped).count("<div") == 1
    assert wrapped_problems(str(wrapped)) == []


def test_wrapper_survives_jinja_autoescape() -> None:
    wrapped = wrap_user_html(render_markdown("**hi** <i>x</i>"))
    assert str(Markup("{}").format(wrapped)) == str(wrapped)


# --- random input ------------------------------------------------------------------------

SYNTAX_FRAGMENTS = [
    "<", ">", "</", "/>", "<script>", "</script>", "<img src=x ", "onerror=alert(1)",
    "<a href=", "javascript:", "jav&#x09;ascript:", "&#106;", "&colon;", "data:", "mailto:",
    "https://ok.example", "<svg>", "<math>", "<style>", "<!--", "-->", "<![CDATA[", "]]>",
    "hx-get=", "style=", "\"", "'", "`", "```", "~~~", "[", "]", "(", ")", "![", "](",
    "\n", "\n\n", "> ", "- ", "1. ", "|", "|---|", "*", "**", "_", "~~", "#", "&", "&amp;",
    "\\", "    ", "\t", "<http://", "<div>", "</div>", "\x00", "\u202e", "\ufffd",
]  # fmt: skip

markdownish = st.lists(
    st.one_of(st.sampled_from(SYNTAX_FRAGMENTS), st.text(max_size=6)), max_size=40
).map("".join)


@settings(max_examples=200, deadline=None)
@given(markdownish)
def test_random_markdown_renders_safely(source: str) -> None:
    assert _check_rendered(source, render_markdown) == []


@settings(max_examples=150, deadline=None)
@given(markdownish)
def test_random_html_is_sanitized(source: str) -> None:
    assert _check_rendered(source, sanitize_html) == []


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_arbitrary_text_renders_safely(source: str) -> None:
    assert _check_rendered(source, render_markdown) == []


# --- size, depth and time bounds ---------------------------------------------------------


def _depth(html_text: str) -> int:
    fragment, _errors = _html5_parse(html_text)
    deepest = 0
    stack = [(fragment, 0)]
    while stack:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in element)
    return deepest


@pytest.mark.parametrize(
    "source",
    [
        ">" * 2000 + " deep\n\nafter",
        "> " * 2000 + "deep",
        "- " * 2000 + "deep",
        "\n".join("  " * i + "- item" for i in range(2000)),
        "[" * 2000 + "x" + "](https://ok.example)" * 2000,
        "*" * 2000 + "x" + "*" * 2000,
    ],
    ids=["quote", "spaced-quote", "list", "indented-list", "links", "emphasis"],
)
def test_deep_nesting_is_bounded(source: str) -> None:
    started = time.perf_counter()
    out = render_markdown(source)
    assert time.perf_counter() - started < 5
    assert len(out) < 20 * len(source) + 1000
    assert unsafe_reasons(out) == []
    if html5lib is not None and not source.startswith("*"):
        assert _depth(out) < 60


@pytest.mark.parametrize(
    "source",
    [
        "a" * MAX_BODY_CHARS,
        "<" * MAX_BODY_CHARS,
        "![" * (MAX_BODY_CHARS // 2),
        "[a](" * (MAX_BODY_CHARS // 4),
        "`" * MAX_BODY_CHARS,
        "&#" * (MAX_BODY_CHARS // 2),
        "*a **b " * (MAX_BODY_CHARS // 7),
        "|a|\n|-|\n" + "|x|\n" * 1000,
        "<https://ok.example>" * (MAX_BODY_CHARS // 20),
        "- ```\n" * 1000,
    ],
    ids="plain lt images links backticks entities emphasis table autolinks fences".split(),
)
def test_long_input_finishes_quickly(source: str) -> None:
    started = time.perf_counter()
    out = render_markdown(source)
    assert time.perf_counter() - started < 3
    assert stdlib_problems(out) == []


def test_sanitizer_copes_with_deep_raw_html() -> None:
    started = time.perf_counter()
    out = sanitize_html("<blockquote><div>" * 1000 + "<img src=x onerror=alert(1)>")
    assert time.perf_counter() - started < 5
    assert unsafe_reasons(out) == []


def test_renderer_is_thread_safe() -> None:
    sources = [source for _id, source in hostile_inputs.markdown_cases()[::40]]
    expected = [render_markdown(source) for source in sources]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            assert list(pool.map(render_markdown, sources)) == expected


def test_each_thread_gets_its_own_cleaner() -> None:
    seen: list[str] = []

    def work() -> None:
        seen.append(sanitize_html("<p onclick=x>a</p>"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == ["<p>a</p>"] * 4


# --- ordinary Markdown -------------------------------------------------------------------


def test_emphasis_and_strikethrough() -> None:
    out = render_markdown("*em* **strong** ~~gone~~")
    assert out == "<p><em>em</em> <strong>strong</strong> <s>gone</s></p>\n"


def test_user_typed_tags_are_literal_text() -> None:
    assert render_markdown("<b>bold?</b>") == "<p>&lt;b&gt;bold?&lt;/b&gt;</p>\n"


def test_lists() -> None:
    assert render_markdown("- a\n- b") == "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n"
    assert render_markdown("3. c\n4. d") == '<ol start="3">\n<li>c</li>\n<li>d</li>\n</ol>\n'


def test_fenced_code_keeps_content_escaped_and_gets_language_class() -> None:
    out = render_markdown("```python\nif a < b and c > d:\n    print('<b>&amp;')\n```")
    assert out == (
        '<pre><code class="language-python">if a &lt; b and c &gt; d:\n'
        "    print('&lt;b&gt;&amp;amp;')\n</code></pre>\n"
    )


@pytest.mark.parametrize(
    ("info", "expected_class"),
    [
        ("Python", ' class="language-python"'),
        ("c++ {.numbered}", ' class="language-c++"'),
        ("c#", ' class="language-c#"'),
        ('py" onclick="x', ""),
        ("has_underscore", ""),
        ("", ""),
    ],
)
def test_fence_language_class(info: str, expected_class: str) -> None:
    assert render_markdown(f"```{info}\nx\n```") == f"<pre><code{expected_class}>x\n</code></pre>\n"


def test_indented_code_and_code_span_are_escaped() -> None:
    assert render_markdown("    <script>") == "<pre><code>&lt;script&gt;\n</code></pre>\n"
    assert render_markdown("`<img src=x>`") == "<p><code>&lt;img src=x&gt;</code></p>\n"


def test_links_keep_http_href_and_gain_rel() -> None:
    out = render_markdown('[docs](https://docs.example/a?b=1&c=2 "Docs")')
    assert out == (
        '<p><a href="https://docs.example/a?b=1&amp;c=2" title="Docs" '
        'rel="nofollow ugc noopener noreferrer">docs</a></p>\n'
    )


def test_autolinks_and_relative_links() -> None:
    out = render_markdown("<http://ok.example> <me@ok.example> [course](/courses/7#week-2)")
    assert out == (
        f'<p><a href="http://ok.example" {REL}>http://ok.example</a> '
        f'<a href="mailto:me@ok.example" {REL}>me@ok.example</a> '
        f'<a href="/courses/7#week-2" {REL}>course</a></p>\n'
    )


def test_bare_urls_are_not_linkified() -> None:
    assert render_markdown("see https://ok.example") == "<p>see https://ok.example</p>\n"


def test_refused_link_stays_visible_as_text() -> None:
    assert render_markdown("[x](javascript:alert(1))") == "<p>[x](javascript:alert(1))</p>\n"
    assert render_markdown("[x](ftp://ok.example)") == "<p>[x](ftp://ok.example)</p>\n"


def test_images_become_links_the_reader_may_open() -> None:
    assert render_markdown('![a cat](https://ok.example/cat.png "Cat")') == (
        '<p><a href="https://ok.example/cat.png" title="Cat" class="external-image" '
        f'{REL} target="_blank">External image \u201ca cat\u201d from ok.example '
        "(opens that site)</a></p>\n"
    )
    assert render_markdown("![](http://ok.example/x.png?a=1&b=2)") == (
        '<p><a href="http://ok.example/x.png?a=1&amp;b=2" class="external-image" '
        f'{REL} target="_blank">External image from ok.example (opens that site)</a></p>\n'
    )
    # Sources the sanitizer would drop degrade to their alt text.
    assert render_markdown("![a *cat*](/cat.png)") == "<p>a <em>cat</em></p>\n"
    assert render_markdown("![x](mailto:a@ok.example)") == "<p>x</p>\n"


def test_image_alt_text_is_escaped_in_the_label() -> None:
    out = render_markdown('![<b>&amp; "x"</b>](https://ok.example/a.png)')
    assert 'External image \u201c&lt;b&gt;&amp; "x"&lt;/b&gt;\u201d from ok.example' in out
    assert unsafe_reasons(out) == []


def test_image_host_is_shown_in_ascii() -> None:
    out = sanitize_html('<img src="https://b\u00fccher.example/a.png" alt="book">')
    assert "from xn--bcher-kva.example (opens that site)" in out


def test_image_inside_a_link_becomes_plain_text() -> None:
    out = render_markdown("[![cat](https://img.example/cat.png)](https://ok.example/page)")
    assert out == (
        f'<p><a href="https://ok.example/page" {REL}>'
        "External image \u201ccat\u201d from img.example (not loaded)</a></p>\n"
    )
    assert unsafe_reasons(out) == []


def test_stored_html_with_an_image_is_shown_as_a_link() -> None:
    # Posts saved before images became links still hold <img> in their stored HTML.
    stored = '<p><img src="https://ok.example/cat.png" alt="a cat"> and text</p>\n'
    wrapped = str(wrap_user_html(stored))
    assert "<img" not in wrapped
    assert '<a href="https://ok.example/cat.png" class="external-image"' in wrapped
    assert wrapped_problems(wrapped) == []
    plain = "<p>no images</p>\n"
    assert str(wrap_user_html(plain)) == f'<div class="user-content" hx-disable>{plain}</div>'


def test_tables_use_align_not_style() -> None:
    out = render_markdown("| a | b | c |\n|:--|:-:|---|\n| 1 | 2 | 3 |")
    assert out == (
        "<table>\n<thead>\n<tr>\n"
        '<th align="left">a</th>\n<th align="center">b</th>\n<th>c</th>\n'
        "</tr>\n</thead>\n<tbody>\n<tr>\n"
        '<td align="left">1</td>\n<td align="center">2</td>\n<td>3</td>\n'
        "</tr>\n</tbody>\n</table>\n"
    )


def test_headings_are_demoted() -> None:
    out = render_markdown("# one\n## two\n### three\n###### six\nsetext\n---")
    assert out == "<h3>one</h3>\n<h4>two</h4>\n<h5>three</h5>\n<h6>six</h6>\n<h4>setext</h4>\n"


def test_blockquote_rule_and_hard_break() -> None:
    out = render_markdown("> quoted  \nline\n\n---")
    assert out == "<blockquote>\n<p>quoted<br>\nline</p>\n</blockquote>\n<hr>\n"


def test_empty_and_control_characters() -> None:
    assert render_markdown("") == ""
    assert render_markdown("a\x00b\x1bc\x7fd") == "<p>abcd</p>\n"


def test_ordinary_markdown_passes_the_oracle() -> None:
    source = (
        "# Week 3\n\nSee [notes](https://ok.example/n) and ![fig](https://ok.example/f.png).\n\n"
        "1. one\n2. two\n\n> quote\n\n```js\nx => x\n```\n\n| a |\n|---|\n| b |\n"
    )
    assert unsafe_reasons(render_markdown(source)) == []


# --- validate_body -----------------------------------------------------------------------


@pytest.mark.parametrize("body", ["", "   ", "\n\n\t \r\n", "\x00\x01 \x1f"])
def test_blank_bodies_are_rejected(body: str) -> None:
    with pytest.raises(MarkupError, match="can't be empty"):
        validate_body(body)


def test_long_body_message() -> None:
    with pytest.raises(MarkupError) as caught:
        validate_body("x" * 23_412)
    assert str(caught.value) == "A post can be at most 20,000 characters; this one has 23,412."


def test_body_at_the_limit_is_accepted() -> None:
    assert validate_body("y" * MAX_BODY_CHARS) == "y" * MAX_BODY_CHARS
    assert validate_body("\n\n" + "y" * MAX_BODY_CHARS + "  \n") == "y" * MAX_BODY_CHARS


def test_limit_counts_after_normalizing() -> None:
    body = "ab\r\n" * (MAX_BODY_CHARS // 3)
    assert len(body) > MAX_BODY_CHARS
    assert len(validate_body(body)) <= MAX_BODY_CHARS


def test_body_normalization() -> None:
    assert validate_body("\n  \n    code\r\nnext\rline\x00\x07\x1b[0m\x85 \n\n") == (
        "    code\nnext\nline[0m"
    )
    assert validate_body("tab\there") == "tab\there"


def test_markup_error_is_a_value_error() -> None:
    assert issubclass(MarkupError, ValueError)


# --- plain_text --------------------------------------------------------------------------


def test_plain_text_from_markdown() -> None:
    source = "# Title\n\nSome *text* with [a link](https://ok.example).\n\n- one\n- two"
    assert plain_text(source) == "Title Some text with a link. one two"


def test_plain_text_from_html() -> None:
    html_text = "<p>a &amp; b</p><p>c&nbsp;d</p><script>x()</script><img alt=fig src=x>"
    assert plain_text(html_text, is_html=True) == "a & b c d fig"


def test_plain_text_keeps_typed_angle_brackets_as_text() -> None:
    assert plain_text("use <b> for bold") == "use <b> for bold"


def test_plain_text_is_capped_with_ellipsis() -> None:
    text = plain_text("word " * 200)
    assert len(text) <= EXCERPT_CHARS
    assert text.endswith("word\u2026")
    assert plain_text("abcdefghij" * 3, max_chars=10) == "abcdefghi\u2026"
    assert plain_text("short", max_chars=5) == "short"


def test_plain_text_rejects_silly_limits() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        plain_text("x", max_chars=0)


@settings(max_examples=100, deadline=None)
@given(markdownish, st.integers(min_value=1, max_value=300))
def test_plain_text_properties(source: str, limit: int) -> None:
    text = plain_text(source, max_chars=limit)
    assert len(text) <= limit
    assert text == text.strip()
    assert "  " not in text
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)


def test_link_with_a_quote_in_its_address_is_stable_and_safe() -> None:
    # Found by the random test above: bleach re-escaped such a value on a second pass.
    source = '<a href=0"<script>x</a>'
    assert _check_rendered(source, sanitize_html) == []
    assert "href" not in sanitize_html(source)
