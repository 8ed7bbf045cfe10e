"""What a browser loads without a key: the widget script, the demo page, and / sending there.
The widget's behaviour in a real browser: tests/browser."""

from __future__ import annotations

from pathlib import Path

from chatspark.api.widget_assets import WIDGET_JS

MAX_PLAIN_BYTES = 60 * 1024  # issue 13: ≤ 60 KB plain, no build step


def test_widget_js_is_served_as_javascript_cached_for_five_minutes(server) -> None:  # type: ignore[no-untyped-def]
    with server.client() as anonymous:
        answer = anonymous.get("/widget.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
    assert answer.headers["cache-control"] == "public, max-age=300"
    assert answer.content == WIDGET_JS.read_bytes()
    assert "window.ChatSpark = ChatSpark" in answer.text


def test_widget_js_revalidates_with_its_etag(server) -> None:  # type: ignore[no-untyped-def]
    with server.client() as anonymous:
        etag = anonymous.get("/widget.js").headers["etag"]
        again = anonymous.get("/widget.js", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""


def test_widget_js_stays_small_and_self_contained() -> None:
    source = WIDGET_JS.read_text()
    assert len(source.encode()) <= MAX_PLAIN_BYTES
    assert "import " not in source and "require(" not in source
    # Model text never goes through an HTML parser.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, sink


def test_demo_page_shows_the_two_line_snippet_and_loads_the_widget_on_agent_1(server) -> None:  # type: ignore[no-untyped-def]
    with server.client() as anonymous:
        page = anonymous.get("/demo", headers={"host": "chat.example:8000"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    snippet = (
        '&lt;script src=&quot;http://chat.example:8000/widget.js&quot;&gt;&lt;/script&gt;\n'
        '&lt;script&gt;ChatSpark({ chatbotId: &quot;1&quot; }).render(&quot;body&quot;);&lt;/script&gt;'
    )
    assert snippet in page.text
    assert '<script src="/widget.js"></script>' in page.text


def test_demo_page_escapes_the_host_header(server) -> None:  # type: ignore[no-untyped-def]
    with server.client() as anonymous:
        page = anonymous.get("/demo", headers={"host": 'x"><img src=x onerror=alert(1)>'})
    assert "<img src=x" not in page.text


def test_root_redirects_to_the_demo(server) -> None:  # type: ignore[no-untyped-def]
    with server.client() as anonymous:
        answer = anonymous.get("/", follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"] == "/demo"



def test_readme_shows_the_widget_screenshot() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "docs/widget.png" in readme
