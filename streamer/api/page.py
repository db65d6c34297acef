"""``GET /tree/{tree}``: the live North Star tree page (docs/tree-page.md).

One self-contained HTML document (``static/tree.html``, package data): inline
CSS and JavaScript, an inline SVG per sparkline, nothing loaded from anywhere
else. The page itself is public and holds no values, only the tree's name
(which ``/metrics`` exposes anyway): it reads the structure, the snapshot,
the histories and the snapshot stream from ``/api/*`` in the browser, with
the bearer token when the server has one (the page asks for it once and keeps
it in ``sessionStorage``).

The Content-Security-Policy allows exactly the template's own inline script
and style (by SHA-256) and same-origin requests, so nothing injected into
the page could run or call out."""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import re
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

TEMPLATE = "static/tree.html"
_TREE = "{{tree}}"  # the tree name, HTML-escaped, in <title> and <body data-tree>
_BLOCK = re.compile(r"<(script|style)\b[^>]*>(.*?)</\1>", re.DOTALL)


@dataclass(frozen=True)
class Template:
    text: str
    csp: str


def _digest(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode() + "'"


@functools.cache
def template() -> Template:
    """The page template and its Content-Security-Policy (read once)."""
    text = resources.files("streamer.api").joinpath(TEMPLATE).read_text(encoding="utf-8")
    if _TREE not in text:
        raise RuntimeError(f"{TEMPLATE} lacks the {_TREE} placeholder")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, source in _BLOCK.findall(text):
        if _TREE in source:  # the hashes must not depend on the request
            raise RuntimeError(f"{TEMPLATE}: no placeholder inside <{kind}>")
        hashes[kind].append(_digest(source))
    sources = {kind: " ".join(found) or "'none'" for kind, found in hashes.items()}
    csp = "; ".join([
        "default-src 'none'",
        f"script-src {sources['script']}",
        f"style-src {sources['style']}",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    return Template(text, csp)


def render(tree: str) -> web.Response:
    """The page for ``tree`` (a known tree's name)."""
    page = template()
    return web.Response(
        text=page.text.replace(_TREE, html.escape(tree, quote=True)),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": page.csp,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def tree_page(request: web.Request) -> web.Response:
    """The page of a known tree; an unknown tree is the usual JSON 404."""
    from streamer.api.routes import CONTEXT  # deferred: routes imports this module

    tree = request.app[CONTEXT].tree(request.match_info["tree"])
    return render(tree.tree)
