"""What a browser loads without auth: the widget script (`GET /widget.js`), the demo page with the
widget on agent 1 (`GET /demo`), and `GET /` sending a newcomer there."""

from __future__ import annotations

import functools
import hashlib
import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

WIDGET_JS = Path(__file__).resolve().parent.parent / "static" / "widget.js"
DEMO_AGENT = "1"
# Short enough that a fixed widget reaches visitors within minutes, long enough to spare the service.
SCRIPT_CACHE = "public, max-age=300"
# Served beside the API but not part of it: pages and a script, not JSON operations (no OpenAPI entry).
PATHS = ("/widget.js", "/demo", "/")


@functools.cache
def _script() -> tuple[bytes, str]:
    body = WIDGET_JS.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


async def widget_js(request: Request) -> Response:
    body, etag = _script()
    headers = {"cache-control": SCRIPT_CACHE, "etag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


async def root(request: Request) -> Response:
    # A relative Location: never built from the client's Host header.
    return RedirectResponse("/demo", status_code=307)


async def demo(request: Request) -> Response:
    origin = f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"
    return HTMLResponse(DEMO_PAGE.format(snippet=html.escape(embed_snippet(origin, DEMO_AGENT))))


def embed_snippet(origin: str, agent: str) -> str:
    """The two lines a website adds to show the widget of `agent` served from `origin`."""
    return (
        f'<script src="{origin}/widget.js"></script>\n'
        f'<script>ChatSpark({{ chatbotId: "{agent}" }}).render("body");</script>'
    )


DEMO_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chatspark widget demo</title>
<link rel="icon" href="data:,">
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #1f2328; }}
  pre {{ background: #f3f4f6; padding: 1rem; border-radius: 8px; overflow-x: auto; }}
  code {{ font-family: ui-monospace, monospace; font-size: 0.9em; }}
</style>
</head>
<body>
<main>
<h1>Chatspark widget demo</h1>
<p>The chat bubble in the bottom right corner is agent 1 ("Support Bot"), answering offline from its FAQ
and help center: ask when Example Inc. is open or how to reach them. It talks to this service through
the public widget endpoints (<code>/api/v1/widget/&hellip;</code>): no API key is in this page.</p>
<p>To put it on your own website, make the agent public for your site's origin
(<code>allowedOrigins</code>, e.g. <code>PATCH /api/v1/agents/1</code> with
<code>{{"allowedOrigins": ["https://shop.example"]}}</code>) and add these two lines to the page:</p>
<pre><code>{snippet}</code></pre>
<p>The conversation survives a reload; the API docs describe <code>data</code>, <code>updateProps</code>
and the events a page can listen to with <code>ChatSpark.on(&hellip;)</code>.</p>
</main>
<script src="/widget.js"></script>
<script>ChatSpark({{ chatbotId: "1" }}).render("body");</script>
</body>
</html>
"""
