"""Fetching pages and websites for training sources: the SSRF guard, one page with limits, a crawl.

Every site here is a real aiohttp server on 127.0.0.1 that records each request it gets. The happy
paths run with `allow_private_urls=True` (the only reachable address is loopback). The refusals run
with the guard on and assert the test server saw nothing: a refused URL must never reach a socket.

There is no public host to redirect *from* here, so the redirect and rebinding tests tell the guard
to trust exactly one address, 127.0.0.1 (the test server), and refuse every other by the real
policy (`GuardedResolver(trusted=...)`). Names that exist only in a test are answered by
`StaticDNS`, a stand-in for DNS behind aiohttp's own resolver interface; the guard wraps it exactly
as it wraps aiohttp's resolver in production.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from chatspark.config import KnowledgeConfig
from chatspark.knowledge.crawl import PageFailure, crawl
from chatspark.knowledge.fetch import Fetched, Fetcher, FetchError
from chatspark.knowledge.ssrf import GuardedResolver, UrlRefused, check_url, refused_address

pytestmark = pytest.mark.anyio

USER_AGENT = "ChatsparkBot/1.0 (+https://github.com/chatspark)"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Site:
    """A website on 127.0.0.1 for one test. `pages[path]` answers that path (404 otherwise); `hits`
    lists every request's path and query in order, `headers` their headers."""

    def __init__(self) -> None:
        self.pages: dict[str, Handler] = {}
        self.hits: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.release = asyncio.Event()  # slow handlers wait for it; set when the test ends
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self.release.set()
        assert self._runner is not None
        await self._runner.cleanup()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path_qs)
        self.headers.append(dict(request.headers))
        handler = self.pages.get(request.path)
        if handler is None:
            return web.Response(status=404, text="not here")
        return await handler(request)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    server = Site()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def other_site() -> AsyncIterator[Site]:
    server = Site()
    await server.start()
    yield server
    await server.stop()


def html(body: str, **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text=body, content_type="text/html", headers=headers)

    return handler


def linking(*hrefs: str) -> Handler:
    """An HTML page of links, in this order."""
    return html("<html><body>" + "".join(f'<p><a href="{href}">{href}</a></p>' for href in hrefs) + "</body></html>")


def plain(body: str | bytes, content_type: str = "text/plain", status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(body=data, status=status, headers={"Content-Type": content_type})

    return handler


def status(code: int) -> Handler:
    return plain(f"status {code}", status=code)


def redirect(location: str, code: int = 302) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, headers={"Location": location})

    return handler


def settings(**overrides: object) -> KnowledgeConfig:
    values: dict[str, object] = {"allow_private_urls": True, "fetch_timeout_seconds": 5.0}
    values.update(overrides)
    return KnowledgeConfig(**values)  # type: ignore[arg-type]


class StaticDNS(AbstractResolver):
    """DNS for names that exist only in this test. Each lookup of a name takes its next answer (the
    last one repeats); `lookups` lists the names asked, in order. An unknown name is not found."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self._answers = {name: list(sequence) for name, sequence in answers.items()}
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        sequence = self._answers.get(host)
        if not sequence:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = sequence.pop(0) if len(sequence) > 1 else sequence[0]
        return [
            ResolveResult(
                hostname=host, host=address, port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0, flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


# --- the guard: what a URL says, and where an address is ------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.100.100.200", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fd12:3456::1", "private"),
        ("fd00:ec2::254", "cloud metadata"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible (deprecated)
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo, client 10.0.0.1
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
    ],
)
def test_refused_addresses_name_their_reason(address: str, reason: str) -> None:
    assert reason in (refused_address(address) or "")


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refused_address(address) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/file", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
        ("example.com/page", "only http and https"),
        ("http:///path", "no host"),
        ("http://user:secret@example.com/", "user name or password"),
        ("http://example.com:0/", "port"),
        ("http://example.com:70000/", "not a valid URL"),
        ("http://2130706433/", "unusual form"),
        ("http://0x7f.1/", "unusual form"),
        ("http://127.1/", "unusual form"),
        ("http://0177.0.0.1/", "unusual form"),
        ("http://127.0.0.1./", "unusual form"),
        ("http://%31%32%37.0.0.1/", "not a valid name"),
        ("http://example.com/" + "a" * 5000, "longer than"),
    ],
)
def test_check_url_refuses_what_cannot_be_fetched_as_written(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        check_url(url)
    assert reason in refused.value.reason


def test_check_url_gives_the_parts_it_checked() -> None:
    target = check_url("HTTPS://Example.COM/docs/page?x=1#intro")
    assert (target.scheme, target.host, target.port, target.path) == ("https", "example.com", 443, "/docs/page?x=1")
    assert target.url == "https://example.com/docs/page?x=1"
    assert check_url("http://[::ffff:127.0.0.1]:8080/").host == "::ffff:7f00:1"  # the form aiohttp connects to


async def test_the_guard_drops_refused_addresses_and_keeps_the_rest() -> None:
    dns = StaticDNS({"mixed.test": [["10.0.0.5", "93.184.216.34", "169.254.169.254"]]})
    guard = GuardedResolver(resolver=dns)
    answers = await guard.resolve("mixed.test", 80)
    assert [answer["host"] for answer in answers] == ["93.184.216.34"]


async def test_the_guard_refuses_a_name_with_only_refused_addresses() -> None:
    guard = GuardedResolver(resolver=StaticDNS({"metadata.test": [["169.254.169.254", "fd00:ec2::254"]]}))
    with pytest.raises(UrlRefused) as refused:
        await guard.resolve("metadata.test", 80)
    assert refused.value.reason == "metadata.test points to a cloud metadata address, which may not be fetched"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1", "[::1]", "2130706433", "0x7f.1", "127.1", "0177.0.0.1", "localhost", "localhost.",
        "app.localhost", "[::ffff:127.0.0.1]", "[::127.0.0.1]", "[64:ff9b::7f00:1]", "0.0.0.0",
    ],
)
async def test_loopback_in_any_spelling_is_refused_before_any_request(site: Site, host: str) -> None:
    site.pages["/"] = html("secret")
    async with Fetcher(settings(allow_private_urls=False)) as fetcher:
        with pytest.raises(FetchError):
            await fetcher.fetch(f"http://{host}:{site.port}/")
    assert site.hits == []


async def test_a_name_that_resolves_to_loopback_is_refused_before_connecting(site: Site) -> None:
    site.pages["/"] = html("secret")
    dns = StaticDNS({"intranet.test": [["127.0.0.1"]]})
    async with Fetcher(settings(allow_private_urls=False), resolver=GuardedResolver(resolver=dns)) as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(f"http://intranet.test:{site.port}/")
    assert failed.value.message == "intranet.test points to a loopback address, which may not be fetched"
    assert dns.lookups == ["intranet.test"]
    assert site.hits == []


async def test_the_address_checked_is_the_address_connected_to(site: Site) -> None:
    """DNS rebinding: the name answers the trusted 127.0.0.1 first and 127.0.0.2 (refused) after.
    A guard that looked the name up to check it and let the connector look it up again would pass
    the check and then connect to 127.0.0.2 (nothing listens there: "could not connect"). The
    guard is the connector's resolver, so the one answer checked is the one connected to."""
    site.pages["/page"] = html("public page")
    dns = StaticDNS({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    guard = GuardedResolver(trusted=["127.0.0.1"], resolver=dns)
    async with Fetcher(settings(allow_private_urls=False), resolver=guard) as fetcher:
        page = await fetcher.fetch(f"http://rebind.test:{site.port}/page")
    assert page.body == b"public page"
    assert dns.lookups == ["rebind.test"]
    assert site.hits == ["/page"]


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{port}/secret",  # resolves to the trusted 127.0.0.1: refused by name
        "http://[::1]:{port}/secret",
        "http://127.0.0.2:{port}/secret",
        "http://[::ffff:127.0.0.2]:{port}/secret",
        "http://internal.test:{port}/secret",  # resolves to 127.0.0.2
        "http://2130706433:{port}/secret",
    ],
)
async def test_a_redirect_to_a_refused_address_is_not_followed(site: Site, location: str) -> None:
    """The guard trusts only 127.0.0.1, so the first hop is fetched; the hop it redirects to is
    checked again, URL and address, and refused. Had it been followed, /secret would be in `hits`
    (localhost resolves to this very server) or the error would be a failed connection."""
    site.pages["/hop"] = redirect(location.format(port=site.port))
    site.pages["/secret"] = html("secret")
    dns = StaticDNS({"localhost": [["127.0.0.1"]], "internal.test": [["127.0.0.2"]]})
    guard = GuardedResolver(trusted=["127.0.0.1"], resolver=dns)
    async with Fetcher(settings(allow_private_urls=False), resolver=guard) as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(site.url("/hop"))
    assert "may not be fetched" in failed.value.message or "unusual form" in failed.value.message
    assert site.hits == ["/hop"]


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("ftp://127.0.0.1:{port}/secret", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://user:pw@127.0.0.1:{port}/secret", "user name or password"),
    ],
)
async def test_each_redirect_hop_is_checked_like_the_first(site: Site, location: str, reason: str) -> None:
    site.pages["/hop"] = redirect(location.format(port=site.port))
    site.pages["/secret"] = html("secret")
    async with Fetcher(settings()) as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(site.url("/hop"))
    assert reason in failed.value.message
    assert site.hits == ["/hop"]


# --- one page -------------------------------------------------------------------------------------


async def test_fetch_returns_the_page_with_its_type_and_charset(site: Site) -> None:
    site.pages["/doc"] = plain("Grüße".encode("latin-1"), "text/html; charset=ISO-8859-1")
    async with Fetcher(settings()) as fetcher:
        page = await fetcher.fetch(site.url("/doc#section"))
    assert page == Fetched(
        url=site.url("/doc"), status=200, content_type="text/html", body="Grüße".encode("latin-1"), charset="iso-8859-1"
    )
    assert site.headers[0]["User-Agent"] == USER_AGENT


async def test_redirects_are_followed_to_the_final_url(site: Site) -> None:
    site.pages["/old"] = redirect("/moved", 301)
    site.pages["/moved"] = redirect("new?x=1", 307)
    site.pages["/new"] = html("here")
    async with Fetcher(settings()) as fetcher:
        page = await fetcher.fetch(site.url("/old"))
    assert (page.url, page.body) == (site.url("/new?x=1"), b"here")
    assert site.hits == ["/old", "/moved", "/new?x=1"]


async def test_more_than_five_redirects_fail(site: Site) -> None:
    for n in range(10):
        site.pages[f"/r{n}"] = redirect(f"/r{n + 1}")
    async with Fetcher(settings()) as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(site.url("/r0"))
    assert failed.value.message == "the page redirected more than 5 times"
    assert site.hits == ["/r0", "/r1", "/r2", "/r3", "/r4", "/r5"]


@pytest.mark.parametrize("declare_length", [False, True])
async def test_a_page_over_the_size_cap_fails(site: Site, declare_length: bool) -> None:
    """Chunked (no Content-Length): stopped while reading. Declared: refused before reading."""

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        if declare_length:
            response.content_length = 400_000
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"x" * 10_000)
        return response

    site.pages["/big"] = big
    async with Fetcher(settings(max_page_bytes=100_000)) as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(site.url("/big"))
    assert failed.value.message == "the page is larger than 100 kB"


async def test_a_compressed_page_is_capped_by_its_decompressed_size(site: Site) -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)  # ~5 kB on the wire
    site.pages["/bomb"] = plain_with_headers(bomb, {"Content-Type": "text/html", "Content-Encoding": "gzip"})
    site.pages["/small"] = plain_with_headers(
        gzip.compress(b"<p>hello</p>"), {"Content-Type": "text/html", "Content-Encoding": "gzip"}
    )
    async with Fetcher(settings(max_page_bytes=1_000_000)) as fetcher:
        assert (await fetcher.fetch(site.url("/small"))).body == b"<p>hello</p>"
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(site.url("/bomb"))
    assert failed.value.message == "the page is larger than 1 MB"
    assert "gzip" in site.headers[0]["Accept-Encoding"]


def plain_with_headers(body: bytes, headers: dict[str, str]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers=headers)

    return handler


@pytest.mark.parametrize("stall", ["before the headers", "in the body"])
async def test_a_page_that_does_not_finish_in_time_fails(site: Site, stall: str) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        if stall == "before the headers":
            await site.release.wait()
        await response.prepare(request)
        while not site.release.is_set():  # a byte now and then: every read succeeds, the page never ends
            await response.write(b"x")
            await asyncio.sleep(0.05)
        return response

    site.pages["/slow"] = slow
    timeout = 0.5
    async with Fetcher(settings(fetch_timeout_seconds=timeout)) as fetcher:
        began = time.monotonic()
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(site.url("/slow"))
        took = time.monotonic() - began
    assert failed.value.message == "the page did not load within 0.5 seconds"
    assert timeout * 0.9 <= took < timeout * 3


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("image/png", "the page's type (image/png) is not one we read"),
        ("application/zip", "the page's type (application/zip) is not one we read"),
        ("x/" + "y" * 500, "the page's type is not one we read"),  # an odd header is not echoed
    ],
)
async def test_a_page_of_another_type_is_refused(site: Site, content_type: str, message: str) -> None:
    site.pages["/file"] = plain(b"\x89PNG" + b"A" * 1000, content_type)
    async with Fetcher(settings()) as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(site.url("/file"))
    assert failed.value.message == message


@pytest.mark.parametrize(
    ("code", "message"), [(404, "the page answered 404 Not Found"), (503, "the page answered 503 Service Unavailable")]
)
async def test_an_error_status_fails_with_its_status(site: Site, code: int, message: str) -> None:
    site.pages["/page"] = plain("<h1>" + "error " * 10_000 + "</h1>", "text/html", status=code)
    async with Fetcher(settings()) as fetcher:
        with pytest.raises(FetchError) as failed:
            await fetcher.fetch(site.url("/page"))
    assert (failed.value.message, failed.value.status) == (message, code)


async def test_no_cookies_are_kept(site: Site) -> None:
    """Under a name (aiohttp's cookie jar would ignore cookies from a bare IP address anyway)."""

    async def sets_cookie(request: web.Request) -> web.StreamResponse:
        response = web.Response(status=302, headers={"Location": "/next"})
        response.set_cookie("session", "tenant-a")
        return response

    site.pages["/login"] = sets_cookie
    site.pages["/next"] = html("next")
    guard = GuardedResolver(allow_private=True, resolver=StaticDNS({"cookies.test": [["127.0.0.1"]]}))
    async with Fetcher(settings(), resolver=guard) as fetcher:
        await fetcher.fetch(f"http://cookies.test:{site.port}/login")
        await fetcher.fetch(f"http://cookies.test:{site.port}/next")
    assert site.hits == ["/login", "/next", "/next"]
    assert all("Cookie" not in headers for headers in site.headers)


# --- a website ------------------------------------------------------------------------------------


async def crawled(
    site: Site,
    start: str = "/",
    *,
    max_pages: int = 50,
    max_depth: int = 3,
    fetcher_settings: KnowledgeConfig | None = None,
) -> tuple[list[str], list[PageFailure]]:
    """The paths a crawl yields, in order, and its failures."""
    async with Fetcher(fetcher_settings or settings()) as fetcher:
        website = crawl(site.url(start), fetcher, max_pages=max_pages, max_depth=max_depth, user_agent=USER_AGENT)
        paths = [page.url.removeprefix(site.url("")) async for page in website]
    return paths, website.failures


def page_requests(site: Site) -> list[str]:
    return [hit for hit in site.hits if hit not in ("/robots.txt", "/sitemap.xml")]


async def test_crawl_reads_breadth_first_in_document_order_every_time(site: Site) -> None:
    """No robots.txt (404) allows everything; no sitemap adds nothing."""
    site.pages["/"] = linking("/b", "/a")
    site.pages["/b"] = linking("/b/deep", "/")
    site.pages["/a"] = linking("/a/deep", "/b")
    site.pages["/a/deep"] = html("a deep")
    site.pages["/b/deep"] = html("b deep")
    first, _ = await crawled(site)
    again, _ = await crawled(site)
    assert first == again == ["/", "/b", "/a", "/b/deep", "/a/deep"]


async def test_crawl_honours_robots_txt_for_its_user_agent(site: Site) -> None:
    site.pages["/robots.txt"] = plain(
        "User-agent: OtherBot\nDisallow: /\n\nUser-agent: ChatsparkBot\nDisallow: /private\n"
    )
    site.pages["/"] = linking("/public", "/private", "/private/page")
    site.pages["/public"] = html("public")
    site.pages["/private"] = html("private")
    paths, failures = await crawled(site)
    assert paths == ["/", "/public"]
    assert failures == []
    assert not any(hit.startswith("/private") for hit in site.hits)


async def test_a_start_page_robots_txt_disallows_fails_the_crawl(site: Site) -> None:
    site.pages["/robots.txt"] = plain("User-agent: *\nDisallow: /\n")
    site.pages["/"] = linking("/a")
    with pytest.raises(FetchError) as failed:
        await crawled(site)
    assert failed.value.message == "the site's robots.txt does not allow reading this page"
    assert site.hits == ["/robots.txt"]


async def test_a_robots_txt_that_fails_stops_the_crawl(site: Site) -> None:
    """RFC 9309: a 5xx robots.txt means the site's wishes are unknown, so nothing is read."""
    site.pages["/robots.txt"] = status(503)
    site.pages["/"] = linking("/a")
    with pytest.raises(FetchError) as failed:
        await crawled(site)
    assert failed.value.message == "could not read the site's robots.txt (the page answered 503 Service Unavailable)"
    assert site.hits == ["/robots.txt"]


async def test_the_sitemap_seeds_pages_no_link_reaches(site: Site) -> None:
    site.pages["/"] = linking("/linked")
    site.pages["/linked"] = html("linked")
    site.pages["/orphan"] = html("only in the sitemap")
    site.pages["/sitemap.xml"] = plain(
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{site.url('/orphan')}</loc></url><url><loc>{site.url('/linked')}</loc></url>"
        "<url><loc>http://elsewhere.example/page</loc></url></urlset>",
        "application/xml",
    )
    paths, _ = await crawled(site)
    assert paths == ["/", "/linked", "/orphan"]  # links first, then the sitemap, each page once


async def test_a_sitemap_index_named_in_robots_txt_is_read_one_level_deep(site: Site) -> None:
    def sitemap(kind: str, entry: str, *paths: str) -> Handler:
        entries = "".join(f"<{entry}><loc>{site.url(path)}</loc></{entry}>" for path in paths)
        return plain(f'<{kind} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</{kind}>', "text/xml")

    site.pages["/robots.txt"] = plain(f"User-agent: *\nAllow: /\nSitemap: {site.url('/maps/index.xml')}\n")
    site.pages["/maps/index.xml"] = sitemap("sitemapindex", "sitemap", "/maps/pages.xml", "/maps/nested.xml")
    site.pages["/maps/pages.xml"] = sitemap("urlset", "url", "/from-sitemap")
    site.pages["/maps/nested.xml"] = sitemap("sitemapindex", "sitemap", "/maps/too-deep.xml")
    site.pages["/"] = html("start")
    site.pages["/from-sitemap"] = html("found")
    paths, _ = await crawled(site)
    assert paths == ["/", "/from-sitemap"]
    assert "/maps/too-deep.xml" not in site.hits
    assert "/sitemap.xml" not in site.hits  # robots.txt named the sitemap


async def test_crawl_stays_on_the_start_pages_host_and_port(site: Site, other_site: Site) -> None:
    site.pages["/"] = linking(
        f"http://localhost:{site.port}/other-name",  # the same server under another name
        other_site.url("/other-port"),
        "https://127.0.0.1/other-scheme",
        "/same",
    )
    site.pages["/same"] = html("same site")
    paths, failures = await crawled(site)
    assert paths == ["/", "/same"]
    assert failures == []
    assert "/other-name" not in site.hits
    assert other_site.hits == []


async def test_crawl_takes_the_site_the_start_page_redirects_to(site: Site, other_site: Site) -> None:
    site.pages["/"] = redirect(other_site.url("/home"))  # like http:// → https:// or example.com → www.
    other_site.pages["/home"] = linking("/next", site.url("/old-site-page"))
    other_site.pages["/next"] = html("next")
    paths, _ = await crawled(site)
    assert paths == [other_site.url("/home"), other_site.url("/next")]
    assert site.hits == ["/robots.txt", "/"]


async def test_crawl_stops_at_max_pages(site: Site) -> None:
    site.pages["/"] = linking(*(f"/p{n}" for n in range(10)))
    for n in range(10):
        site.pages[f"/p{n}"] = html(f"page {n}")
    paths, _ = await crawled(site, max_pages=3)
    assert paths == ["/", "/p0", "/p1"]
    assert page_requests(site) == ["/", "/p0", "/p1"]


async def test_crawl_stops_at_max_depth(site: Site) -> None:
    site.pages["/"] = linking("/1")
    site.pages["/1"] = linking("/2")
    site.pages["/2"] = linking("/3")
    site.pages["/3"] = html("too deep")
    paths, _ = await crawled(site, max_depth=2)
    assert paths == ["/", "/1", "/2"]
    assert "/3" not in site.hits
    only_start, _ = await crawled(site, max_depth=0)
    assert only_start == ["/"]


async def test_a_page_that_fails_is_skipped_and_reported(site: Site) -> None:
    site.pages["/"] = linking("/gone", "/image-without-extension", "/ok")
    site.pages["/image-without-extension"] = plain(b"\x89PNG", "image/png")
    site.pages["/ok"] = html("fine")
    paths, failures = await crawled(site)
    assert paths == ["/", "/ok"]
    assert failures == [
        PageFailure(url=site.url("/gone"), error="the page answered 404 Not Found"),
        PageFailure(url=site.url("/image-without-extension"), error="the page's type (image/png) is not one we read"),
    ]


async def test_the_start_page_failing_fails_the_crawl(site: Site) -> None:
    site.pages["/"] = status(500)
    with pytest.raises(FetchError) as failed:
        await crawled(site)
    assert (failed.value.message, failed.value.status) == ("the page answered 500 Internal Server Error", 500)


async def test_a_refused_start_url_fails_the_crawl_before_any_request(site: Site) -> None:
    site.pages["/"] = html("secret")
    with pytest.raises(FetchError) as failed:
        await crawled(site, fetcher_settings=settings(allow_private_urls=False))
    assert failed.value.message == "127.0.0.1 is a loopback address, which may not be fetched"
    assert site.hits == []


async def test_links_are_read_once_in_their_canonical_form(site: Site) -> None:
    port = site.port
    site.pages["/"] = linking(
        "/a#top", "/a", f"http://127.0.0.1:{port}/a", f"HTTP://127.0.0.1:{port}/b/../a", "a?x=1", "/a?x=1#f",
        "#top", "mailto:someone@example.com", "javascript:void(0)", "tel:+100", "/logo.png", "/files/archive.zip",
        "/style.css",
    )
    site.pages["/a"] = html("a")
    paths, failures = await crawled(site)
    assert paths == ["/", "/a", "/a?x=1"]
    assert failures == []
    assert page_requests(site) == ["/", "/a", "/a?x=1"]


async def test_base_href_resolves_relative_links(site: Site) -> None:
    site.pages["/"] = html('<base href="/docs/"><a href="intro">intro</a>')
    site.pages["/docs/intro"] = html("intro")
    paths, _ = await crawled(site)
    assert paths == ["/", "/docs/intro"]
